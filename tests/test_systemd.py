"""systemd integration: READY once samples flow, a watchdog fed only by real progress,
STOPPING on SIGTERM; and the unit's hardening as systemd-analyze scores it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from broker import Mosquitto, Subscriber, write_config
from conftest import ROOT


def test_ready_watchdog_stall_and_stopping(broker: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(broker.port)
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "state", [])
    cfg.write_text(
        cfg.read_text().replace('kind = "simulated"', 'kind = "simulated"\nstall_at_s = 3.0')
    )
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clonusd.daemon.cli", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    got: list[tuple[float, str]] = []
    start = time.monotonic()

    def listen(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until and (not got or proc.poll() is None):
            with contextlib.suppress(TimeoutError):
                got.append((time.monotonic() - start, sock.recv(256).decode()))

    try:
        listen(11.0)
        proc.send_signal(signal.SIGTERM)
        listen(10.0)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    ready = [t for t, m in got if m == "READY=1"]
    pings = [t for t, m in got if m == "WATCHDOG=1"]
    assert ready and ready[0] < 3.0
    assert any(t < 3.0 for t in pings)
    # Samples stop at 3 s; the stall is declared after stall_after_s (3 s): no more pings.
    assert not [t for t in pings if t > 6.6], pings
    assert any(m == "STOPPING=1" for _, m in got)
    assert sub.wait_for(lambda: any(e["event"] == "sensor.stall" for e in sub.events()), 5)
    stall = next(e for e in sub.events() if e["event"] == "sensor.stall")
    assert stall["priority"] == "technical_alarm"
    assert sub.wait_for(lambda: any(s.get("stalled") for s in sub.on("/status")), 5)
    sub.close()


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
