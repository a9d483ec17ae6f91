"""The MQTT topic tree "clonusd/2" (documented in the README; payload schemas in schemas/).

{prefix}/daemon/{daemon_id}/availability  retained  {"state": "online" | "offline", ...}
                                                    (the offline one is the last will)
{prefix}/daemon/{daemon_id}/event         QoS 1     the daemon's own technical alarms
{prefix}/{bed}/{sensor}/event             QoS 1     clonus.onset / update / end, stalls
{prefix}/{bed}/{sensor}/state             retained  is clonus happening now, beats so far
{prefix}/{bed}/{sensor}/status            retained  link, rate, loss, battery, quality, stall
{prefix}/{bed}/{sensor}/history           retained  the episodes of the last 24 h, newest first
{prefix}/{bed}/{sensor}/evidence/{id}     retained  the signal around one episode, its beats

Many daemons share one broker (a ward): each has its own availability topic and last
will, and every sensor payload names its `daemon`, so a monitor can tell which beds a
crashed daemon leaves unwatched.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA = "clonusd/2"
PAYLOADS = ("event", "state", "status", "availability", "history", "evidence")


def availability(prefix: str, daemon_id: str) -> str:
    return f"{prefix}/daemon/{daemon_id}/availability"


def daemon_event(prefix: str, daemon_id: str) -> str:
    return f"{prefix}/daemon/{daemon_id}/event"


def event(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/event"


def state(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/state"


def status(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/status"


def default_client_id(daemon_id: str) -> str:
    """Unique per daemon, so two daemons on one broker never take each other's session."""
    return f"clonusd-{daemon_id}"


def availability_payload(daemon_id: str, online: bool, reason: str) -> dict[str, Any]:
    """`reason`: "connected" when online; offline: "shutdown" (clean stop),
    "connection_lost" (the last will: crash, power or network loss), or why the daemon
    stopped: "storage_unusable", "storage_failed", "task_failed"."""
    return {
        "schema": SCHEMA,
        "daemon": daemon_id,
        "state": "online" if online else "offline",
        "reason": reason,
    }


def payload_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one payload kind, as shipped in the package."""
    if kind not in PAYLOADS:
        raise ValueError(f"no schema {kind!r}; one of {', '.join(PAYLOADS)}")
    text = resources.files(__package__).joinpath("schemas", f"{kind}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema
