"""The service `clonusd run`: each sensor's pipeline (source -> detector -> publisher, with
its health), the supervisor that runs them (`run`), and systemd's notify protocol."""
