"""The commands that are not the service: scan, monitor, replay and evaluate."""
