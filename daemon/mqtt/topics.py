"""The MQTT topic tree (documented in the README).

{prefix}/daemon/{daemon}/availability   retained  {"state": online/offline, "reason"}, last will
{prefix}/daemon/{daemon}/event          QoS 1     the daemon's own technical alarms
{prefix}/{bed}/{sensor}/event           QoS 1     clonus.onset / update / end, sensor.stall
{prefix}/{bed}/{sensor}/state           retained  is clonus happening now, beats so far
{prefix}/{bed}/{sensor}/status          retained  link, rate, loss, battery, quality, stall
"""

from __future__ import annotations

import json

SCHEMA = "clonusd/2"


def availability(prefix: str, daemon: str) -> str:
    return f"{prefix}/daemon/{daemon}/availability"


def availability_payload(daemon: str, state: str, reason: str) -> str:
    return json.dumps({"schema": SCHEMA, "daemon": daemon, "state": state, "reason": reason})


def daemon_event(prefix: str, daemon: str) -> str:
    return f"{prefix}/daemon/{daemon}/event"


def event(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/event"


def state(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/state"


def status(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/status"
