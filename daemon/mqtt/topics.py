"""The MQTT topic tree (documented in the README).

{prefix}/daemon/availability            retained  "online" / "offline" (last will)
{prefix}/{bed}/{sensor}/event           QoS 1     clonus.onset / update / end
{prefix}/{bed}/{sensor}/state           retained  is clonus happening now, beats so far
{prefix}/{bed}/{sensor}/status          retained  link, rate, loss, battery, quality, stall
"""

from __future__ import annotations

SCHEMA = "clonusd/2"


def availability(prefix: str) -> str:
    return f"{prefix}/daemon/availability"


def event(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/event"


def state(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/state"


def status(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/status"
