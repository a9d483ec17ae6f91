"""A ward: many daemons on one broker, each with its own availability and last will."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from broker import Daemon, Mosquitto, Subscriber, can_set_hostname, write_config

SPEED = 4.0


def _ward(broker: Mosquitto, tmp_path: Path, names: list[str]) -> list[Daemon]:
    """One daemon per bed with the default config, each as if on its own Pi (its own host
    name). Where no process may have a host name of its own, the id is set in the config
    instead: the client id still comes from the daemon id."""
    own_host = can_set_hostname()
    daemons = []
    for i, name in enumerate(names):
        cfg = write_config(
            tmp_path / f"{name}.toml",
            broker.port,
            tmp_path / f"state-{name}",
            [{"at_s": 3, "beats": 10}],
            daemon_id=None if own_host else name,
            bed=f"bed-{i + 1}",
        )
        daemons.append(Daemon(cfg, SPEED, hostname=name if own_host else None))
    return daemons


def test_two_daemons_on_one_broker_keep_their_own_sessions_and_last_wills(
    broker: Mosquitto, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port)
    a, b = _ward(broker, tmp_path, ["pi-bed-1", "pi-bed-2"])
    try:
        a.start()
        b.start()
        assert sub.wait_for(
            lambda: (
                "online" in sub.availability("pi-bed-1")
                and "online" in sub.availability("pi-bed-2")
            )
        ), a.logs() + b.logs()
        # Both reach an alarm of their own bed and say whose it is.
        assert sub.wait_for(
            lambda: len([e for e in sub.events() if e["event"] == "clonus.end"]) == 2
        )
        by_bed = {(p["bed"], p["daemon"]) for p in sub.on("/event") + sub.on("/status")}
        assert by_bed == {("bed-1", "pi-bed-1"), ("bed-2", "pi-bed-2")}
        a.kill()
        assert sub.wait_for(lambda: sub.availability("pi-bed-1")[-1:] == ["offline"], 15)
        # The other daemon's retained availability is untouched: a monitor connecting now
        # sees bed 1's daemon offline (its last will) and bed 2's online.
        late = Subscriber(broker.port)
        try:
            assert late.wait_for(lambda: len(late.availability()) == 2, 5)
            assert late.availability("pi-bed-1") == ["offline"]
            assert late.availability("pi-bed-2") == ["online"]
            assert late.on("pi-bed-1/availability")[0]["reason"] == "connection_lost"
        finally:
            late.close()
        assert b.proc is not None and b.proc.poll() is None
    finally:
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        sub.close()
    log = broker.logs()
    assert "already connected" not in log, log
    assert "as clonusd-pi-bed-1" in log and "as clonusd-pi-bed-2" in log, log


def test_monitor_names_the_beds_whose_daemon_died(broker: Mosquitto, tmp_path: Path) -> None:
    a, b = _ward(broker, tmp_path, ["pi-bed-1", "pi-bed-2"])
    sub = Subscriber(broker.port)
    mon = None
    try:
        a.start()
        b.start()
        assert sub.wait_for(lambda: {p.get("bed") for p in sub.on("/status")} >= {"bed-1", "bed-2"})
        mon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clonusd.daemon.cli",
                "monitor",
                "--plain",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--duration",
                "12",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        assert mon.stdout is not None
        reader = threading.Thread(target=lambda: [lines.put(ln) for ln in mon.stdout], daemon=True)
        reader.start()
        seen = _until(lines, "daemon pi-bed-2 online", 20)
        time.sleep(0.5)  # the rest of the retained burst (bed 2's status) is in by now
        b.kill()
        mon.wait(timeout=60)
        reader.join(5)
        out = "".join(seen) + "".join(lines.queue)
        assert mon.stderr is not None
        err = mon.stderr.read()
    finally:
        if mon is not None and mon.poll() is None:
            mon.kill()
            mon.wait()
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        sub.close()
    assert mon.returncode == 0, err
    assert "daemon pi-bed-2 offline (connection_lost): beds bed-2 unwatched" in out, out
    assert "pi-bed-1 offline" not in out, out


def _until(lines: queue.Queue[str], text: str, timeout: float) -> list[str]:
    """The monitor's lines up to the first that contains `text`."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.2))
        except queue.Empty:
            continue
        if text in seen[-1]:
            return seen
    raise AssertionError(f"monitor never said {text!r}: {seen}")
