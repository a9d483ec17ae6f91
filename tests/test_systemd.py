"""systemd integration: READY once samples flow, a watchdog fed only by real progress,
STOPPING on SIGTERM; and the unit's hardening as systemd-analyze scores it."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from broker import Mosquitto, Subscriber, write_config
from conftest import ROOT

from clonusd.daemon.service.run import supervise

SO_TIMESTAMPNS = 35  # Linux: the kernel stamps each datagram with the time it was sent


def _recv_stamped(sock: socket.socket) -> tuple[float, str] | None:
    """One notify datagram and the wall-clock time the daemon sent it (not when this test,
    perhaps starved of CPU, got round to reading it)."""
    try:
        data, ancillary, _, _ = sock.recvmsg(256, socket.CMSG_SPACE(16))
    except TimeoutError:
        return None
    for level, kind, raw in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", raw[:16])
            return sec + nsec / 1e9, data.decode()
    raise AssertionError("no kernel timestamp on the notify datagram")


def test_ready_watchdog_stall_and_stopping(broker: Mosquitto, tmp_path: Path) -> None:
    """READY once samples flow, pings while they do, none once the stall is declared.

    Every time compared is stamped where it happened: the notify datagrams by the kernel
    when the daemon sent them, the stall by the daemon in its event, so a loaded machine
    delays the test's reading but cannot reorder what it reads."""
    sub = Subscriber(broker.port)
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "state", [])
    cfg.write_text(
        cfg.read_text().replace('kind = "simulated"', 'kind = "simulated"\nstall_at_s = 3.0')
    )
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}  # ping every 1 s
    proc = subprocess.Popen(
        [sys.executable, "-m", "clonusd.daemon.cli", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    got: list[tuple[float, str]] = []

    def stalls() -> list[dict[str, object]]:
        return [e for e in sub.events() if e["event"] == "sensor.stall"]

    def listen_until(done: Callable[[], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        while not done() and time.monotonic() < deadline and proc.poll() is None:
            if (item := _recv_stamped(sock)) is not None:
                got.append(item)

    try:
        listen_until(lambda: bool(stalls()), 60)
        assert stalls(), "no sensor.stall event"
        stall_at = datetime.fromisoformat(str(stalls()[0]["time"])).timestamp()
        # Keep listening for three watchdog intervals past the stall (daemon time).
        listen_until(lambda: (bool(got) and got[-1][0] > stall_at + 3.0) or _quiet(got, 3.0), 30)
        proc.send_signal(signal.SIGTERM)
        listen_until(lambda: any(m == "STOPPING=1" for _, m in got), 30)
        code = proc.wait(timeout=30)
        # On failure, what the daemon said on its way out (its log is JSON on stderr).
        said = [m for _, m in got if m.startswith("STATUS")]
        assert code == 0, (code, said, proc.stderr.read()[-3000:] if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        sub.close()
    ready = [t for t, m in got if m == "READY=1"]
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    assert ready and ready[0] < stall_at, (ready, stall_at)
    assert [t for t in pings if ready[0] <= t < stall_at], "no ping while samples flowed"
    # The event's time has millisecond resolution; nothing may be fed after it.
    assert not [t for t in pings if t > stall_at + 0.001], (pings, stall_at)
    assert any(m == "STOPPING=1" for _, m in got)
    stall = stalls()[0]
    assert stall["priority"] == "technical_alarm"
    assert any(s.get("stalled") for s in sub.on("/status"))


def _quiet(got: list[tuple[float, str]], seconds: float) -> bool:
    """Nothing has arrived for `seconds` of wall-clock time since the last datagram."""
    return bool(got) and time.time() - got[-1][0] > seconds


def test_unit_hardening_scores_ok() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd)"
    unit = ROOT / "systemd" / "clonusd.service"
    proc = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert "Overall exposure level" in proc.stdout


def test_a_task_that_ends_with_the_stop_is_no_failure() -> None:
    """The health loop returns once asked to stop. When it finishes in the same turn of
    the event loop as the stop itself (a busy machine), the SIGTERM exited 1 with
    "task health failed: None" and a daemon.failed alarm. A task that ends on its own
    before any stop is still a failure."""

    async def stopping_with(ends_by_itself: bool) -> tuple[str | None, str]:
        stop, storage = asyncio.Event(), asyncio.Event()
        ended = asyncio.Event()
        health = asyncio.create_task((ended if ends_by_itself else stop).wait(), name="health")
        mqtt = asyncio.create_task(asyncio.Event().wait(), name="mqtt")
        supervised = asyncio.create_task(supervise([], [health, mqtt], stop, storage))
        await asyncio.sleep(0)  # supervise is waiting
        (ended if ends_by_itself else stop).set()  # health and the stop wake together
        try:
            return await asyncio.wait_for(supervised, timeout=10)
        finally:
            mqtt.cancel()

    assert asyncio.run(stopping_with(ends_by_itself=False)) == (None, "")
    failed, what = asyncio.run(stopping_with(ends_by_itself=True))
    assert failed == "task_failed" and "task health failed" in what
