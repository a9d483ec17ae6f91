"""Band profiles: each band's byte protocol, turned into timestamped samples in SI units.

Parsers are pure (bytes in, samples out) and never raise on bad input: a malformed or
truncated notification is counted in `malformed` and skipped, so a glitching band cannot
crash the daemon. The BLE transport (bleak) sits elsewhere.
"""
