"""The bedside monitor: a real daemon, broker and `clonusd monitor --plain` process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from broker import Daemon, Monitor, Mosquitto, write_config

from clonusd.daemon.commands.monitor import Board


def test_monitor_shows_the_alarm_with_beats_and_frequency(
    broker: Mosquitto, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.toml", broker.port, tmp_path / "state", [{"at_s": 2, "beats": 12}]
    )
    daemon = Daemon(cfg, 2.0)
    daemon.start()
    # Read the monitor's lines until the episode has ended, however long a busy machine
    # takes to get there; a timer ends a monitor that never shows it.
    mon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clonusd.daemon.cli",
            "monitor",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--plain",
            "--duration",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    guard = threading.Timer(120, mon.kill)
    guard.start()
    lines: list[str] = []
    try:
        assert mon.stdout is not None
        for line in mon.stdout:
            lines.append(line.rstrip("\n"))
            if "ended:" in line:
                break
    finally:
        guard.cancel()
        mon.terminate()
        mon.communicate(timeout=30)
        daemon.terminate()
    alarm = [ln for ln in lines if "ALARM sustained clonus" in ln]
    assert len(alarm) == 1 and "bed-12 left ankle" in alarm[0] and "6 beats at" in alarm[0]
    ended = [ln for ln in lines if "ended:" in ln]
    assert ended and ("12 beats" in ended[0] or "11 beats" in ended[0] or "13 beats" in ended[0])


def test_full_screen_view_shows_an_alarm_that_was_already_on() -> None:
    board = Board("clonusd")
    online = {"schema": "clonusd/2", "daemon": "pi-3", "state": "online", "reason": "connected"}
    board.update("clonusd/daemon/pi-3/availability", json.dumps(online).encode())
    state = {
        "daemon": "pi-3",
        "bed": "bed-3",
        "sensor": "wrist-r",
        "site": "wrist",
        "side": "right",
        "clonus": True,
        "beats": 9,
        "frequency_hz": 6.4,
    }
    status = {
        "daemon": "pi-3",
        "side": "right",
        "site": "wrist",
        "sensor_kind": "acc3",
        "link": "connected",
        "rate_hz": 99.8,
        "nominal_rate_hz": 100.0,
        "packet_loss": 0.02,
        "battery_pct": 71,
        "quality": "ok",
        "stalled": True,
    }
    board.update("clonusd/bed-3/wrist-r/state", json.dumps(state).encode())
    board.update("clonusd/bed-3/wrist-r/status", json.dumps(status).encode())
    screen = board.render("localhost:1883")
    assert "daemons: 1/1 online" in screen and "OFFLINE" not in screen
    assert "SUSTAINED CLONUS  9 beats at 6.4 Hz" in screen
    assert "loss 2.0 %" in screen and "battery 71 %" in screen and "STALLED" in screen
    board.update("clonusd/bed-3/wrist-r/state", json.dumps({**state, "clonus": False}).encode())
    assert "no clonus" in board.render("localhost:1883")
    will = {**online, "state": "offline", "reason": "connection_lost"}
    line = board.update("clonusd/daemon/pi-3/availability", json.dumps(will).encode())
    assert line == "daemon pi-3 offline (connection_lost): beds bed-3 unwatched"
    screen = board.render("localhost:1883")
    assert "DAEMON pi-3 OFFLINE (connection_lost)" in screen and "daemons: 0/1 online" in screen


def test_an_event_the_broker_sends_again_is_shown_once(broker: Mosquitto) -> None:
    # QoS 1 is at least once: a bridge whose link fails between a PUBLISH and its PUBACK
    # sends the event again, and may do so after newer ones. The same id is the same event.
    where = {"schema": "clonusd/2", "daemon": "pi-3", "bed": "bed-3", "sensor": "ankle-r",
             "site": "ankle", "side": "right"}  # fmt: skip
    onset = {**where, "id": "e-onset", "event": "clonus.onset", "beats": 6, "frequency_hz": 6.1}
    end = {**where, "id": "e-end", "event": "clonus.end", "beats": 14, "duration_s": 2.3,
           "frequency_hz": 6.0}  # fmt: skip
    tech = {"schema": "clonusd/2", "daemon": "pi-3", "id": "e-tech", "event": "storage.failed",
            "priority": "technical_alarm", "detail": "disk full"}  # fmt: skip
    later = {**onset, "id": "e-later", "beats": 7}
    sensor, daemon = "clonusd/bed-3/ankle-r/event", "clonusd/daemon/pi-3/event"
    sent = [(sensor, onset), (sensor, onset), (sensor, end), (daemon, tech), (sensor, onset),
            (daemon, tech), (sensor, end), (sensor, later)]  # fmt: skip
    monitor = Monitor(broker.port)
    try:
        monitor.until("connected to", 30)
        _publish_all(broker.port, [(t, json.dumps(p).encode()) for t, p in sent], retain=False)
        monitor.until("[e-later]", 30)  # the last one sent: all before it have come
    finally:
        monitor.stop()
    assert monitor.event_ids() == ["e-onset", "e-end", "e-tech", "e-later"], monitor.lines
    assert sum("ALARM sustained clonus" in ln for ln in monitor.lines) == 2
    # The full-screen view counts what it did not show again.
    board = Board("clonusd")
    for topic, payload in sent:
        board.update(topic, json.dumps(payload).encode())
    assert board.repeats == 4 and board.malformed == 0
    assert "4 repeated event(s) shown once" in board.render("localhost:1883")


def test_a_bed_whose_status_stops_is_shown_as_not_watched() -> None:
    """A bridged Pi that loses power sends no last will to the ward: its status stops."""
    board = Board("clonusd")
    online = {"schema": "clonusd/2", "daemon": "pi-7", "state": "online", "reason": "connected"}
    board.update("clonusd/daemon/pi-7/availability", json.dumps(online).encode())
    status = {"daemon": "pi-7", "side": "left", "site": "ankle", "link": "connected"}
    board.update("clonusd/bed-7/ankle-l/status", json.dumps(status).encode())
    now = time.monotonic()
    assert board.newly_silent(now + 5) == []
    assert "NO STATUS" not in board.render("b", now + 5)
    assert board.newly_silent(now + 16) == ["NO STATUS from bed-7 (ankle-l) for 16 s: not watched"]
    assert board.newly_silent(now + 20) == []  # said once
    assert "NO STATUS FOR 20 s: this bed is not watched" in board.render("b", now + 20)
    line = board.update("clonusd/bed-7/ankle-l/status", json.dumps(status).encode())
    assert line == "status again from bed-7 (ankle-l)"
    # A daemon that said it went offline is shown as that, not as silent.
    offline = {**online, "state": "offline", "reason": "shutdown"}
    board.update("clonusd/daemon/pi-7/availability", json.dumps(offline).encode())
    assert board.newly_silent(time.monotonic() + 60) == []
    screen = board.render("b", time.monotonic() + 60)
    assert "DAEMON pi-7 OFFLINE (shutdown)" in screen and "NO STATUS" not in screen


MALFORMED: list[tuple[str, bytes]] = (
    [
        (topic, payload)
        for topic in (
            "clonusd/bed-9/ankle-l/event",
            "clonusd/bed-9/ankle-l/state",
            "clonusd/bed-9/ankle-l/status",
            "clonusd/daemon/pi-9/availability",
            "clonusd/daemon/pi-9/event",
        )
        for payload in (b"[1, 2]", b'"text"', b"42", b"null", b"true", b"\xff\xfe", b"{")
    ]
    + [
        ("clonusd/bed-9/ankle-l/event", json.dumps(p).encode())
        for p in (
            {"event": "clonus.onset"},
            {"event": "clonus.onset", "beats": "six", "frequency_hz": None},
            {"event": "clonus.end", "beats": 8, "frequency_hz": 5.0},
            {"event": "clonus.end", "beats": [], "duration_s": {}, "frequency_hz": True},
            {"event": 7},
            {"event": "sensor.stall", "side": ["x"], "site": {"a": 1}},
        )
    ]
    + [
        ("clonusd/bed-9/ankle-l/state", b'{"clonus": true, "beats": "x", "confidence": []}'),
        ("clonusd/bed-9/ankle-l/status", b'{"packet_loss": "lots", "battery_pct": 1e400}'),
    ]
)


def _publish_all(port: int, messages: list[tuple[str, bytes]], retain: bool) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bad-{retain}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    for topic, payload in messages:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


@pytest.mark.parametrize("view", ["plain", "full_screen"])
def test_monitor_survives_malformed_messages_and_says_so(
    broker: Mosquitto, tmp_path: Path, view: str
) -> None:
    import os
    import pty
    import threading
    import time

    assert len(MALFORMED) >= 35
    _publish_all(broker.port, MALFORMED, retain=True)  # there when the monitor subscribes
    args = [
        sys.executable,
        "-m",
        "clonusd.daemon.cli",
        "monitor",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--duration",
        "6",
    ]
    if view == "plain":
        args.append("--plain")
        master, slave = None, subprocess.PIPE
    else:
        master, slave_fd = pty.openpty()  # a terminal: the full-screen view
        slave = slave_fd
    proc = subprocess.Popen(args, stdout=slave, stderr=subprocess.PIPE)
    screen = bytearray()
    if master is not None:
        os.close(slave)
        fd = master
    else:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()

    def read() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # Live messages only once the monitor is subscribed (it shows the retained ones).
    seen = b"connected to" if view == "plain" else b"malformed message(s) ignored"
    deadline = time.monotonic() + 30
    while seen not in screen and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    _publish_all(broker.port, MALFORMED, retain=False)  # and while it runs
    try:
        _, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    out = bytes(screen)
    text, errors = out.decode(errors="replace"), err.decode(errors="replace")
    assert proc.returncode == 0, errors
    assert "Traceback" not in errors and "Traceback" not in text
    if view == "plain":
        assert text.count("MALFORMED") >= 35, text
        assert "ALARM sustained clonus" in text and "figures unreadable" in text
    else:
        assert "malformed message(s) ignored" in text and "SUSTAINED CLONUS" in text
