"""End to end: simulated band -> `clonusd run` (a real process) -> real Mosquitto -> subscriber."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from broker import Daemon, Mosquitto, Subscriber, wait_for, write_config
from conftest import clonusd

SPEED = 4.0  # simulated seconds per real second


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def test_sustained_episode_reaches_subscriber_and_short_one_reaches_no_one(
    broker: Mosquitto, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port)
    cfg = write_config(
        tmp_path / "c.toml",
        broker.port,
        tmp_path / "state",
        [{"at_s": 2, "beats": 10}, {"at_s": 6, "beats": 4}, {"at_s": 9, "beats": 8}],
    )
    daemon = Daemon(cfg, SPEED)
    daemon.start()
    try:
        assert sub.wait_for(lambda: _kinds(sub.events()).count("clonus.end") >= 2), daemon.logs()
        assert sub.wait_for(lambda: "online" in sub.availability())
        sub.wait_for(lambda: False, timeout=1.5)  # the 4-beat episode is long over by now
    finally:
        assert daemon.terminate() == 0
    events = [e for e in sub.events() if e["event"].startswith("clonus.")]
    onsets = [e for e in events if e["event"] == "clonus.onset"]
    ends = [e for e in events if e["event"] == "clonus.end"]
    assert len(onsets) == 2 and len(ends) == 2
    for onset, end, beats in zip(onsets, ends, (10, 8), strict=True):
        assert end["episode"] == onset["episode"]
        assert abs(end["beats"] - beats) <= 1
        assert onset["priority"] == "physiological_alarm" and end["priority"] == "information"
        for key in (
            "schema",
            "daemon",
            "id",
            "time",
            "t",
            "bed",
            "sensor",
            "site",
            "side",
            "frequency_hz",
        ):
            assert key in onset
    assert len({e["id"] for e in events}) == len(events)
    assert sub.wait_for(lambda: sub.availability()[-1:] == ["offline"], 5)
    assert sub.on("/availability")[-1]["reason"] == "shutdown"
    assert {e["daemon"] for e in events} == {sub.on("/availability")[-1]["daemon"]}
    *_, status, goodbye = sub.on("/status")
    assert status["link"] == "connected" and status["nominal_rate_hz"] == 200.0
    # Once the daemon is gone its retained status must not say the link is up.
    assert goodbye["link"] == "disconnected" and goodbye["link_detail"] == "daemon stopped"
    sub.close()


def test_broker_outage_mid_episode_loses_no_event(tmp_path: Path) -> None:
    # The subscriber's session outlives the outage (the broker keeps it on disk), so what
    # the daemon sends after the restart reaches it however soon the daemon reconnects:
    # a subscriber that subscribed only after the restart could miss the backlog.
    store = tmp_path / "broker"
    store.mkdir()
    user = "user root\n" if os.geteuid() == 0 else ""  # else it drops to "mosquitto"
    broker = Mosquitto(store, extra=f"{user}persistence true\npersistence_location {store}/\n")
    broker.start()
    sub = Subscriber(broker.port, session=f"test-outage-{os.getpid()}")
    cfg = write_config(
        tmp_path / "c.toml",
        broker.port,
        tmp_path / "state",
        [{"at_s": 2, "beats": 40}, {"at_s": 16, "beats": 10}],
    )
    daemon = Daemon(cfg, 2.0)
    try:
        daemon.start()
        assert sub.wait_for(lambda: "clonus.onset" in _kinds(sub.events())), daemon.logs()
        before = {e["id"] for e in sub.events()}
        broker.stop(graceful=True)  # mid-episode: the end and the second episode happen offline
        sub.wait_for(lambda: False, timeout=8.0)
        broker.start()
        assert sub.wait_for(lambda: _kinds(sub.events()).count("clonus.end") >= 2, 30), (
            daemon.logs()
        )
        assert daemon.terminate() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        sub.close()
        broker.stop()
    # Every event, each once and in the order sent (a redelivered duplicate counts where
    # it first came).
    events = list({e["id"]: e for e in sub.events()}.values())
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    kinds = [e["event"] for e in events if e["event"] != "clonus.update"]
    assert kinds == ["clonus.onset", "clonus.end", "clonus.onset", "clonus.end"]
    # An update decided during the outage was held and delivered.
    assert any(e["event"] == "clonus.update" and e["id"] not in before for e in events)
    assert "mqtt_unavailable" in daemon.logs()


def test_event_stored_before_a_sigkill_is_delivered_after_restart(
    broker: Mosquitto, tmp_path: Path
) -> None:
    broker.stop()  # detect while the broker is unreachable: events wait in the outbox
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 2, "beats": 12}])
    daemon = Daemon(cfg, SPEED)
    daemon.start()
    outbox = state / "outbox.sqlite3"

    def stored() -> list[tuple[int, str]]:
        # Read-only, and the daemon may not have created its table yet.
        try:
            with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
                return list(db.execute("SELECT seq, payload FROM outbox ORDER BY seq"))
        except sqlite3.OperationalError:
            return []

    assert wait_for(lambda: len(stored()) >= 2, 30), daemon.logs()
    daemon.kill()  # SIGKILL: no chance to flush anything
    ids = [__import__("json").loads(p)["id"] for _, p in stored()]
    broker.start()
    sub = Subscriber(broker.port)
    restarted = Daemon(write_config(tmp_path / "c2.toml", broker.port, state, []), SPEED)
    restarted.start()
    try:
        assert sub.wait_for(lambda: {e["id"] for e in sub.events()} >= set(ids), 30), (
            restarted.logs()
        )
    finally:
        assert restarted.terminate() == 0
    delivered = [e["id"] for e in sub.events() if e["id"] in ids]
    assert delivered == ids  # in order
    assert stored() == []
    sub.close()


def test_late_subscriber_sees_the_alarm_that_is_already_on(
    broker: Mosquitto, tmp_path: Path
) -> None:
    early = Subscriber(broker.port)
    cfg = write_config(
        tmp_path / "c.toml", broker.port, tmp_path / "state", [{"at_s": 2, "beats": 80}]
    )
    daemon = Daemon(cfg, 2.0)
    daemon.start()
    try:
        assert early.wait_for(lambda: "clonus.onset" in _kinds(early.events())), daemon.logs()
        # The onset event may leave before the retained state that follows it: connect
        # the late subscriber only once the broker holds the alarm's state.
        assert early.wait_for(lambda: any(s["clonus"] for s in early.on("/state")), 10)
        late = Subscriber(broker.port)
        assert late.wait_for(lambda: bool(late.on("/state")), 10)
        with late._lock:
            retained = [(p, r) for _, t, p, r in late.messages if t.endswith("/state")]
        state, was_retained = retained[0]
        assert was_retained and state["clonus"] is True and state["beats"] >= 6
        assert late.wait_for(lambda: "online" in late.availability(), 5)
    finally:
        assert daemon.terminate() == 0
    assert early.wait_for(lambda: early.on("/state")[-1]["clonus"] is False, 5)
    early.close()
    late.close()


def test_last_will_marks_a_killed_daemon_offline(broker: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "state", [])
    daemon = Daemon(cfg, SPEED)
    daemon.start()
    assert sub.wait_for(lambda: "online" in sub.availability()), daemon.logs()
    daemon.kill()
    assert sub.wait_for(lambda: sub.availability()[-1:] == ["offline"], 15)
    assert sub.on("/availability")[-1]["reason"] == "connection_lost"  # the last will
    sub.close()


def test_replay_source_feeds_a_recording_through_the_live_path(
    broker: Mosquitto, tmp_path: Path
) -> None:
    """A clinician's file at 20x real time: the same episodes as `clonusd replay` finds."""
    from conftest import EXAMPLE

    sub = Subscriber(broker.port)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[daemon]
state_dir = "{tmp_path / "state"}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[[sensors]]
id = "file"
bed = "review"
site = "ankle"
side = "right"
[sensors.source]
kind = "replay"
file = "{EXAMPLE}"
speed = 20
""")
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert sub.wait_for(lambda: _kinds(sub.events()).count("clonus.end") >= 3, 30), (
            daemon.logs()
        )
        assert sub.wait_for(
            lambda: any(s.get("link") == "disconnected" for s in sub.on("/status")), 10
        )
    finally:
        assert daemon.terminate() == 0
    ends = [e for e in sub.events() if e["event"] == "clonus.end"]
    assert [e["beats"] for e in ends] == [20, 30, 8]  # the demo's labelled episodes
    assert all(e["sensor_kind"] == "imu6" for e in ends)
    sub.close()


def test_run_with_a_bad_config_exits_non_zero_without_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[[sensors]]\nid = "x"\nbed = "b"\nsite = "hip"\n[sensors.source]\nkind = "simulated"\n'
    )
    proc = clonusd("run", "--config", str(cfg), timeout=60)
    assert proc.returncode == 2
    assert "sensors.0.site" in proc.stderr and "Traceback" not in proc.stderr
