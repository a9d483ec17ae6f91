"""Shared fixtures: the labelled development recordings beside the project."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "recordings" / "dev"
EXAMPLE = ROOT / "daemon" / "examples" / "ankle-imu6-demo.csv"


@pytest.fixture(scope="session")
def dev_dir() -> Path:
    if not DEV.is_dir():
        pytest.fail(f"development recordings not found at {DEV} (shared/ must sit beside the repo)")
    return DEV


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    from broker import Mosquitto

    b = Mosquitto(tmp_path)
    b.start()
    yield b
    b.stop()
