"""`clonusd replay` and `clonusd evaluate` as a user runs them: a real process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import EXAMPLE, clonusd


def test_replay_prints_one_json_event_per_line() -> None:
    proc = clonusd("replay", str(EXAMPLE))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    sustained = [lab for lab in meta["labels"] if lab["sustained"]]
    onsets = [e for e in events if e["event"] == "clonus.onset"]
    ends = [e for e in events if e["event"] == "clonus.end"]
    assert len(onsets) == len(sustained) == len(ends)
    for onset, end, lab in zip(onsets, ends, sustained, strict=True):
        assert lab["beat_times_s"][5] <= onset["t"] <= lab["end_s"]
        assert end["episode"] == onset["episode"]
        assert abs(end["beats"] - lab["beats"]) <= 1
        assert abs(end["frequency_hz"] - lab["frequency_hz"]) < 0.5
        for key in ("amplitude", "regularity", "duration_s", "site", "sensor"):
            assert key in end
    updates = [e for e in events if e["event"] == "clonus.update"]
    assert updates and all(u["episode"] in {o["episode"] for o in onsets} for u in updates)
    # Logs went to stderr, not into the event stream.
    assert "replay_done" in proc.stderr


def test_replay_without_sidecar_takes_overrides(tmp_path: Path) -> None:
    csv = tmp_path / "bare.csv"
    shutil.copy(EXAMPLE, csv)
    proc = clonusd("replay", str(csv))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("clonusd: error:")
    assert "--sensor" in proc.stderr
    ok = clonusd("replay", str(csv), "--sensor", "imu6", "--site", "ankle", "--fs", "200")
    assert ok.returncode == 0 and ok.stdout.count("clonus.onset") >= 3


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        (None, [], "no such file"),
        (
            "t,acc_x,acc_y,acc_z\n0,1,2,3\n0.01,1,x,3\n",
            ["--sensor", "acc3", "--site", "ankle", "--fs", "100"],
            "malformed CSV",
        ),
        (
            "t,acc_x,acc_y\n0,1,2\n",
            ["--sensor", "acc3", "--site", "ankle", "--fs", "100"],
            "lacks column(s) acc_z",
        ),
        (
            "t,acc_x,acc_y,acc_z\n0,1,2,3\n",
            ["--sensor", "acc3", "--site", "elbow", "--fs", "100"],
            "unknown site 'elbow'",
        ),
        (
            "t,acc_x,acc_y,acc_z\n0,1,2,3\n",
            ["--sensor", "ecg", "--site", "ankle", "--fs", "100"],
            "unknown sensor 'ecg'",
        ),
        (
            "t,acc_x,acc_y,acc_z\n",
            ["--sensor", "acc3", "--site", "ankle", "--fs", "100"],
            "no samples",
        ),
    ],
)
def test_replay_errors_are_one_line_and_non_zero(
    tmp_path: Path, content: str | None, args: list[str], expected: str
) -> None:
    path = tmp_path / "rec.csv"
    if content is not None:
        path.write_text(content)
    proc = clonusd("replay", str(path), *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_sample_rate_is_rejected() -> None:
    proc = clonusd("replay", str(EXAMPLE), "--fs", "-5")
    assert proc.returncode == 2 and "must be positive" in proc.stderr


def test_evaluate_scores_a_folder(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "a.csv")
    shutil.copy(EXAMPLE.with_suffix(".json"), tmp_path / "a.json")
    proc = clonusd("evaluate", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["recordings"] == 1
    assert summary["sensitivity"] == 1.0
    assert summary["unsustained_rejected"] == 1.0
    assert summary["false_alarms"] == 0
    imu6 = summary["by_sensor"]["imu6"]
    assert imu6["sensitivity"] == 1.0
    low, high = imu6["ci95"]["sensitivity"]
    assert low < 1.0 == high  # one episode proves little: the interval says so
    assert summary["false_alarms_by_confounder"]["quiet"]["false_alarms"] == 0


def test_evaluate_prints_a_table_with_intervals_and_reads_subfolders(tmp_path: Path) -> None:
    seed = tmp_path / "seed1"
    seed.mkdir()
    shutil.copy(EXAMPLE, seed / "a.csv")
    shutil.copy(EXAMPLE.with_suffix(".json"), seed / "a.json")
    proc = clonusd("evaluate", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = next(line for line in lines if line.startswith("sensitivity"))
    assert "1 [" in row and "target >= 0.99" in row
    assert any("1 rec" in line for line in lines)


def test_evaluate_says_which_line_refused_a_missed_episode(tmp_path: Path) -> None:
    """A gyroscope swinging as an even 6 Hz sine for 3 s, labelled as a 18-beat episode:
    the detector counts its beats and the cycle-shape line refuses them (a clean sine is
    vibration, not a reflex). The miss is reported with that line as its cause."""
    import numpy as np

    fs, f = 100.0, 6.0
    t = np.arange(int(8 * fs)) / fs
    on = (t >= 3.0) & (t < 6.0)
    rate = np.where(on, 60.0 * np.sin(2 * np.pi * f * (t - 3.0)), 0.0)
    zero = np.zeros_like(t)
    columns = np.column_stack([t, zero, zero, zero + 9.81, rate, zero, zero])
    header = "t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"
    np.savetxt(tmp_path / "sine.csv", columns, "%.4f", ",", header=header, comments="")
    beats = [round(3.0 + (k + 0.25) / f, 4) for k in range(18)]
    label = {"onset_s": 3.0, "end_s": 6.0, "beats": 18, "frequency_hz": f, "sustained": True}
    meta = {
        "format": "clonus-recording/1",
        "sensor": "imu6",
        "fs_hz": fs,
        "site": "ankle",
        "labels": [{**label, "triggered": False, "beat_times_s": beats}],
        "confounders": [],
    }
    (tmp_path / "sine.json").write_text(json.dumps(meta))
    proc = clonusd("evaluate", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sensitivity"] == 0.0
    assert summary["misses_by_cause"] == {"min_harmonic_ratio": 1}
    proc = clonusd("evaluate", str(tmp_path), "--verbose")
    assert proc.returncode == 0, proc.stderr
    (miss,) = [line for line in proc.stderr.splitlines() if "missed 18-beat" in line]
    assert "refused by min_harmonic_ratio" in miss
    assert "imu6: min_harmonic_ratio 1" in proc.stdout


def test_evaluate_report_writes_a_picture_per_case(tmp_path: Path) -> None:
    import matplotlib  # noqa: F401  (the [report] extra, part of [dev]: never skipped)

    data = tmp_path / "data"
    data.mkdir()
    meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    # Drop the labels: every onset the detector raises is then a false alarm to review.
    onsets = sum(lab["sustained"] for lab in meta["labels"])
    meta["labels"] = []
    shutil.copy(EXAMPLE, data / "a.csv")
    (data / "a.json").write_text(json.dumps(meta))
    out = tmp_path / "report"
    proc = clonusd("evaluate", str(data), "--report", str(out))
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == onsets > 0
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    index = (out / "index.html").read_text()
    assert all(p.name in index for p in pngs)


def test_evaluate_report_without_matplotlib_is_a_one_line_error(tmp_path: Path) -> None:
    import os

    fake = tmp_path / "nompl" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    proc = clonusd("evaluate", str(tmp_path), "--report", str(tmp_path / "r"), env=env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "clonusd[report]" in lines[0], proc.stderr


def test_scan_without_a_system_bus_is_a_one_line_error() -> None:
    import os

    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/clonusd-bus"}
    proc = clonusd("scan", "--seconds", "1", env=env, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach BlueZ" in lines[0], proc.stderr


def test_monitor_that_never_reaches_its_broker_fails() -> None:
    from broker import free_port

    proc = clonusd(
        "monitor", "--broker", f"127.0.0.1:{free_port()}", "--plain", "--duration", "1.5"
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("monitor: never reached the broker")
    assert "Traceback" not in proc.stderr
    bad = clonusd("monitor", "--broker", "localhost:abc")
    assert bad.returncode == 2 and "port is not a number" in bad.stderr
