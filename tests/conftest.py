"""Shared fixtures: the labelled development recordings beside the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The project's shared material (recordings, generator, protocol notes) sits beside the
# repository as ../shared, or wherever CLONUSD_SHARED points.
SHARED = Path(os.environ.get("CLONUSD_SHARED", ROOT.parent / "shared"))
DEV = SHARED / "recordings" / "dev"
EXAMPLE = ROOT / "daemon" / "examples" / "ankle-imu6-demo.csv"


def clonusd(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`clonusd ARGS...` run to completion as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "clonusd.daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    if not DEV.is_dir():
        pytest.fail(
            f"development recordings not found at {DEV}: put shared/ beside the "
            "repository as ../shared, or set CLONUSD_SHARED"
        )
    return DEV


@pytest.fixture(autouse=True)
def _end_processes():  # type: ignore[no-untyped-def]
    """Every daemon and subscriber a test started ends with the test, pass or fail."""
    yield
    from broker import Daemon, Subscriber

    Daemon.reap()
    Subscriber.reap()


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    from broker import Mosquitto

    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()


FAKEBLUEZ_BIN = Path(__file__).resolve().parent / "fakebluez" / "bin"


@pytest.fixture
def fake_bluez(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A private system bus with a fake bluetoothd; the daemon subprocess inherits the
    environment (DBUS_SYSTEM_BUS_ADDRESS, and the bluetoothctl version shim on PATH)."""
    from fakebluez.bus import PrivateBus
    from fakebluez.runner import FakeBluezThread

    bus = PrivateBus()
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
    monkeypatch.setenv("PATH", f"{FAKEBLUEZ_BIN}:{os.environ['PATH']}")
    fake = FakeBluezThread(bus.address)
    yield fake
    fake.close()
    bus.close()
