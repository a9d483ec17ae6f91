"""Bad input as a user or a careless script makes it: `check-config` on mutated configs,
`replay` on malformed recordings. Each must end in bounded time and memory with exit 2
and a one-line `clonusd: error:` naming the problem, never a traceback; and a config that
`check-config` passes must be one that `run` can run."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE

MEMORY_LIMIT = 3 << 30  # numpy and scipy need ~1 GiB of address space; 447 GiB is a bug


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


# Cases that once hung, allocated without bound or overflowed the stack run as a real
# process under a memory limit; the rest call the same entry point in this process.
IN_A_PROCESS = {"record_huge", "fs_1e9", "sidecar_nested", "nested_arrays", "nested_tables"}


def run_cli(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    if name in IN_A_PROCESS or args[0] == "run":
        return cli(*args)
    import contextlib
    import io

    from clonusd.daemon.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clonusd.daemon.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_limited,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith("clonusd: error:"), proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr


BASE = """
[daemon]
state_dir = "{state}"
[mqtt]
host = "127.0.0.1"
port = 1
[[sensors]]
id = "s1"
bed = "b1"
site = "ankle"
[sensors.source]
{source}
[sensors.detector]
{detector}
"""

GENERIC = """kind = "ble"
profile = "generic"
name = "DIY"
rate_hz = 100
[sensors.source.generic]
sensor = "imu6"
notify = ["7a1c0002-5d0a-4c1e-9a43-2b8f6f1d0c00"]
record = "{record}"
fields = ["ax", "ay", "az", "gx", "gy", "gz"]
"""

CONFIGS: dict[str, tuple[str, str, str]] = {
    # name: (source block, detector block, words the error must name)
    "fs_tiny": ('kind = "simulated"\nfs_hz = 1e-300', "", "fs_hz"),
    "fs_nan": ('kind = "simulated"\nfs_hz = nan', "", "fs_hz"),
    "fs_inf": ('kind = "simulated"\nfs_hz = inf', "", "fs_hz"),
    "band_absurd": ('kind = "simulated"', "band_hz = [1e-300, 1e300]", "band_hz"),
    "band_above_nyquist": ('kind = "simulated"\nfs_hz = 50', "band_hz = [30.0, 40.0]", "detector"),
    "rate_absurd": ('kind = "simulated"', "rate_hz = [1e-300, 1e300]", "rate_hz"),
    "record_huge": (GENERIC.format(record="<1000000000h"), "", "record"),
    "record_bad": (GENERIC.format(record="<6q?!"), "", "record"),
    "amplitude_huge": ('kind = "simulated"\namplitude = 1e300', "", "amplitude"),
    "random_every_tiny": ('kind = "simulated"\nrandom_every_s = 1e-300', "", "random_every_s"),
    "episode_far": ('kind = "simulated"\nepisodes = [{at_s = 1e300, beats = 8}]', "", "at_s"),
    "replay_missing": ('kind = "replay"\nfile = "/nonexistent/rec.csv"', "", "no such file"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_check_config_rejects_what_run_cannot_run(tmp_path: Path, name: str) -> None:
    source, detector, words = CONFIGS[name]
    cfg = tmp_path / "c.toml"
    cfg.write_text(BASE.format(state=tmp_path / "state", source=source, detector=detector))
    _one_line_error(run_cli(name, "check-config", str(cfg)), words)
    if name in ("band_above_nyquist", "replay_missing"):  # pydantic alone let these through
        _one_line_error(cli("run", "--config", str(cfg)), words)


@pytest.mark.parametrize(
    "name", ["non_utf8", "nested_arrays", "nested_tables", "huge", "nul_bytes", "a_directory"]
)
def test_check_config_on_files_that_are_not_configs(tmp_path: Path, name: str) -> None:
    cfg = tmp_path / "c.toml"
    if name == "non_utf8":
        cfg.write_bytes(b'[mqtt]\nhost = "\xff\xfe"\n')
    elif name == "nested_arrays":
        cfg.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    elif name == "nested_tables":
        cfg.write_text("a = " + "{b = " * 20_000 + "1" + "}" * 20_000 + "\n")
    elif name == "huge":
        cfg.write_text("# " + "x" * (3 << 20) + "\n")
    elif name == "nul_bytes":
        cfg.write_bytes(b"\0" * 4096)
    else:
        cfg.mkdir()
    _one_line_error(run_cli(name, "check-config", str(cfg)), str(cfg))


def _recording(
    tmp_path: Path, csv: bytes | None = None, meta: dict[str, object] | str | bytes | None = None
) -> Path:
    path = tmp_path / "r.csv"
    if csv is None:
        csv = EXAMPLE.read_bytes()
    path.write_bytes(csv)
    if meta is None:
        meta = json.loads(EXAMPLE.with_suffix(".json").read_text())
    if isinstance(meta, dict):
        meta = json.dumps(meta)
    if isinstance(meta, str):
        meta = meta.encode()
    path.with_suffix(".json").write_bytes(meta)
    return path


def _example_meta(**changes: object) -> dict[str, object]:
    meta: dict[str, object] = json.loads(EXAMPLE.with_suffix(".json").read_text())
    meta.update(changes)
    return meta


def _rows(ts: list[str], value: str = "0.0") -> bytes:
    lines = ["t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"]
    lines += [f"{t},{value},{value},9.81,{value},{value},{value}" for t in ts]
    return ("\n".join(lines) + "\n").encode()


REGULAR = [f"{i / 200:.4f}" for i in range(400)]
META = {"format": "clonus-recording/1", "sensor": "imu6", "site": "ankle", "fs_hz": 200}

RECORDINGS: dict[str, tuple[bytes | None, dict[str, object] | str | bytes | None, str]] = {
    "csv_not_utf8": (b"t,acc_x\n\xff\xfe\x00,1\n", META, "UTF-8"),
    "sidecar_not_utf8": (None, b'{"fs_hz": "\xff"}', "UTF-8"),
    "sidecar_nested": (None, "[" * 100_000 + "]" * 100_000, "JSON"),
    "sidecar_5000_digits": (None, '{"fs_hz": ' + "9" * 5000 + "}", "JSON"),
    "fs_infinity": (None, '{"sensor": "imu6", "site": "ankle", "fs_hz": Infinity}', "JSON"),
    "fs_nan_string": (None, _example_meta(fs_hz="nan"), "sample rate"),
    "fs_1e9": (None, _example_meta(fs_hz=1e9), "sample rate"),
    "fs_1e300": (None, _example_meta(fs_hz=1e300), "sample rate"),
    "fs_list": (None, _example_meta(fs_hz=[200]), "sample rate"),
    "fs_bool": (None, _example_meta(fs_hz=True), "sample rate"),
    "values_1e300": (_rows(REGULAR, "1e300"), META, "beyond"),
    "values_inf": (_rows(REGULAR, "inf"), META, "infinite"),
    "t_nan": (_rows([*REGULAR[:10], "nan", *REGULAR[11:]]), META, "finite"),
    "t_inf": (_rows([*REGULAR[:-1], "inf"]), META, "finite"),
    "t_decreasing": (_rows([*REGULAR[:10], "0.01", *REGULAR[11:]]), META, "goes back in time"),
    "t_negative": (_rows([f"{i / 200 - 1:.4f}" for i in range(400)]), META, "column t"),
    "t_wrong_rate": (_rows([f"{i / 20:.4f}" for i in range(400)]), META, "Hz apart"),
    "t_standing_still": (_rows(["1.0"] * 400), META, "no time apart"),
    "header_only": (b"t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z\n", META, "no samples"),
    "empty": (b"", META, "header"),
    "sidecar_a_list": (None, "[1, 2]", "JSON object"),
}


@pytest.mark.parametrize("name", sorted(RECORDINGS))
def test_replay_rejects_malformed_recordings(tmp_path: Path, name: str) -> None:
    csv, meta, words = RECORDINGS[name]
    path = _recording(tmp_path, csv, meta)
    proc = run_cli(name, "replay", str(path))
    _one_line_error(proc, words)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""
