"""The shipped JSON Schemas describe what the real daemon publishes, key for key."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from broker import Daemon, Mosquitto, Subscriber, write_config

from clonusd.daemon.mqtt import topics


def _kind(topic: str) -> str:
    return "evidence" if "/evidence/" in topic else topic.rsplit("/", 1)[1]


def _check(payload: Any, kind: str) -> None:
    schema = topics.payload_schema(kind)
    jsonschema.validate(payload, schema, format_checker=jsonschema.FormatChecker())
    undocumented = set(payload) - set(schema["properties"])
    assert not undocumented, f"{kind} keys missing from the schema: {undocumented}"
    if "time" in payload:
        assert datetime.fromisoformat(payload["time"]).utcoffset() is not None


def test_every_payload_the_daemon_publishes_matches_its_schema(
    broker: Mosquitto, tmp_path: Path
) -> None:
    source = 'kind = "simulated"\nepisodes = [{at_s = 2, beats = 30}]\nstall_at_s = 9'
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "state", [], source=source)
    sub = Subscriber(broker.port)
    daemon = Daemon(cfg, 3.0)
    try:
        daemon.start()
        assert sub.wait_for(lambda: "sensor.stall" in [e["event"] for e in sub.events()], 30), (
            daemon.logs()
        )
        assert daemon.terminate() == 0  # availability "offline", reason "shutdown"
        daemon.start()
        assert sub.wait_for(lambda: sub.availability()[-1:] == ["online"], 15)
        daemon.kill()  # the last will: "offline", reason "connection_lost"
        assert sub.wait_for(lambda: sub.availability()[-1:] == ["offline"], 15)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        sub.close()
    with sub._lock:
        messages = [(t, p) for _, t, p, _ in sub.messages]
    seen: dict[str, set[str]] = {}
    for topic, payload in messages:
        kind = _kind(topic)
        assert kind in topics.PAYLOADS, topic
        if payload == "":
            continue  # a retained topic cleared
        _check(payload, kind)
        tag = (
            payload.get("event")
            or payload.get("reason")
            or str(payload.get("clonus", payload.get("final", len(payload.get("episodes", [])))))
        )
        seen.setdefault(kind, set()).add(tag)
    assert seen["event"] >= {"clonus.onset", "clonus.update", "clonus.end", "sensor.stall"}
    assert seen["availability"] == {"connected", "shutdown", "connection_lost"}
    assert seen["state"] == {"True", "False"} and "status" in seen
    assert seen["evidence"] == {"False", "True"}  # while the episode lasts, and final
    assert "1" in seen["history"]  # the ended episode


_WHO = {
    "schema": "clonusd/2",
    "daemon": "pi",
    "time": "2026-01-01T00:00:00+00:00",
    "bed": "b",
    "sensor": "s",
    "site": "ankle",
    "side": "left",
}


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("availability", {"schema": "clonusd/2", "daemon": "pi", "state": "up", "reason": "x"}),
        ("availability", {"schema": "clonusd/2", "daemon": "a/b", "state": "online"}),
        (
            "availability",
            {"schema": "clonusd/2", "daemon": "pi", "state": "online", "reason": "connection_lost"},
        ),
        ("state", {**_WHO, "schema": "clonusd/1", "clonus": False}),  # the old tree
        ("state", {**_WHO, "clonus": True}),  # clonus without the episode's figures
        (
            "evidence",
            {
                **_WHO,
                "episode": 1,
                "episode_id": "e",
                "final": True,
                "signal": "s",
                "unit": "u",
                "fs_hz": 64.0,
                "t0": 0.0,
                "onset_s": 2.0,
                "last_beat_s": 3.0,
                "scale": 0.1,
                "samples": [0, 1000],
                "beats_s": [2.0],
                "beats_total": 1,
                "truncated": False,
            },
        ),  # a sample past full scale
        ("history", {**_WHO, "window_s": 86400.0, "episodes": [{"episode_id": "e"}]}),
    ],
)
def test_schemas_refuse_what_a_monitor_could_not_use(kind: str, payload: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(payload, topics.payload_schema(kind))


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="one of event"):
        topics.payload_schema("events")
