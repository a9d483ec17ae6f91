"""clonusd installs under its own namespace, so generic names on the path cannot break it.

PyPI's python-daemon installs a top-level `daemon`; before the namespace, installing it
beside clonusd broke every `clonusd` command. This builds a fresh venv as a user would,
installs clonusd (not editable) and python-daemon into it, and runs the commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import EXAMPLE, ROOT


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False, env=env
    )
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with clonusd and python-daemon installed; its third-party
    dependencies come from the test's own environment (a .pth line), not from clonusd."""
    base = tmp_path_factory.mktemp("venv")
    env_dir = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], base)
    site = Path(
        sysconfig.get_path("purelib", vars={"base": str(env_dir), "platbase": str(env_dir)})
    )
    # Only the third-party packages of this environment: a .pth line adds the folder,
    # but the editable-install hook of the developer's clonusd is not run from there.
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
    _run([*pip, "install", "-q", "--no-deps", str(ROOT), "python-daemon"], base)
    return env_dir


def test_nothing_generic_in_site_packages(venv: Path) -> None:
    site = next((venv / "lib").glob("python*/site-packages"))
    record = next(site.glob("clonusd-*.dist-info")) / "RECORD"
    tops = {line.split("/", 1)[0] for line in record.read_text().splitlines()}
    assert "clonusd" in tops
    assert not tops & {"daemon", "dsp"}, tops
    # python-daemon's own `daemon` is there, beside ours
    assert (site / "daemon" / "__init__.py").is_file()


def test_commands_work_beside_python_daemon(venv: Path, tmp_path: Path) -> None:
    clonusd = str(venv / "bin" / "clonusd")
    assert _run([clonusd, "--version"], tmp_path).startswith("clonusd ")
    events = [
        json.loads(line)
        for line in _run([clonusd, "replay", str(EXAMPLE)], tmp_path).split("\n")
        if line
    ]
    assert [e["beats"] for e in events if e["event"] == "clonus.end"] == [20, 30, 8]


def test_a_foreign_daemon_folder_on_pythonpath_breaks_nothing(venv: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-tool"
    (other / "daemon").mkdir(parents=True)
    (other / "daemon" / "__init__.py").write_text("raise ImportError('not clonusd')\n")
    (other / "dsp").mkdir()
    (other / "dsp" / "__init__.py").write_text("raise ImportError('not clonusd')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(other)}
    out = _run([str(venv / "bin" / "python"), "-m", "clonusd.daemon", "--version"], tmp_path, env)
    assert out.startswith("clonusd ")


def test_payload_schemas_ship_in_the_package(venv: Path, tmp_path: Path) -> None:
    code = (
        "from clonusd.daemon.mqtt import topics\n"
        "print(';'.join(topics.payload_schema(k)['title'] for k in topics.PAYLOADS))"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code], tmp_path)
    kinds = ("event", "state", "status", "availability", "history", "evidence")
    assert out.strip().split(";") == [f"clonusd/2 {k}" for k in kinds]


def test_the_central_station_page_is_package_data(venv: Path) -> None:
    """`clonusd web` serves its page from the installed package: no CDN, no checkout."""
    site = next((venv / "lib").glob("python*/site-packages"))
    static = site / "clonusd" / "daemon" / "web" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "station.css", "station.js"}
