"""The MQTT topic tree (documented in the README).

{prefix}/daemon/{daemon}/availability   retained  {"state": online/offline, "reason"}, last will
{prefix}/daemon/{daemon}/event          QoS 1     the daemon's own technical alarms
{prefix}/{bed}/{sensor}/event           QoS 1     clonus.onset / update / end, sensor.stall
{prefix}/{bed}/{sensor}/state           retained  is clonus happening now, beats so far
{prefix}/{bed}/{sensor}/status          retained  link, rate, loss, battery, quality, stall
"""

from __future__ import annotations

from typing import Any

SCHEMA = "clonusd/2"


def availability(prefix: str, daemon: str) -> str:
    return f"{prefix}/daemon/{daemon}/availability"


def availability_payload(daemon_id: str, online: bool, reason: str) -> dict[str, Any]:
    """`reason`: "connected" when online; offline: "shutdown" (clean stop),
    "connection_lost" (the last will) or why the daemon stopped ("storage_failed", ...)."""
    return {
        "schema": SCHEMA,
        "daemon": daemon_id,
        "state": "online" if online else "offline",
        "reason": reason,
    }


def default_client_id(daemon_id: str) -> str:
    """Unique per daemon, so two daemons on one broker never take each other's session."""
    return f"clonusd-{daemon_id}"


def daemon_event(prefix: str, daemon: str) -> str:
    return f"{prefix}/daemon/{daemon}/event"


def event(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/event"


def state(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/state"


def status(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/status"
