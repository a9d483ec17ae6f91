"""Reading `clonus-recording/1` files: a CSV of samples and a JSON sidecar saying what it is."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clonusd.dsp.sites import SENSORS, SITES

FORMAT = "clonus-recording/1"
MAX_SIDECAR_BYTES = 1 << 20
MAX_CSV_BYTES = 512 << 20
MAX_FS_HZ = 4000.0
MAX_T_S = 1e7  # 115 days of signal time
MAX_ABS_VALUE = 1e6  # far beyond any band's range in its unit (deg/s, m/s^2, mV, counts)
SENSOR_COLUMNS = {
    "imu6": ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"],
    "acc3": ["acc_x", "acc_y", "acc_z"],
}


class RecordingError(Exception):
    """A recording that cannot be used, with a one-line reason naming the problem."""


@dataclass
class Recording:
    path: Path
    sensor: str
    fs: float
    site: str
    side: str
    t: NDArray[np.float64]
    x: NDArray[np.float64]  # (n, channels) in the detector's column order
    columns: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if self.t.size else 0.0


def load_recording(
    path: str | Path,
    sensor: str | None = None,
    fs: float | None = None,
    site: str | None = None,
) -> Recording:
    """Load a recording; `sensor`, `fs` and `site` override (or stand in for) the sidecar."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    sidecar = path.with_suffix(".json")
    meta: dict[str, Any] = {}
    if sidecar.is_file():
        meta = _read_sidecar(sidecar)
        if not isinstance(meta, dict):
            raise RecordingError(f"{sidecar}: expected a JSON object")
        if meta.get("format", FORMAT) != FORMAT:
            raise RecordingError(f"{sidecar}: format {meta.get('format')!r} is not {FORMAT!r}")
    sensor = sensor or meta.get("sensor")
    site = site or meta.get("site")
    fs_val = fs if fs is not None else meta.get("fs_hz")
    for name, value, flag in (
        ("sensor", sensor, "--sensor"),
        ("site", site, "--site"),
        ("fs_hz", fs_val, "--fs"),
    ):
        if value is None:
            raise RecordingError(f"{path}: {name} unknown (no sidecar {sidecar.name}; give {flag})")
    if sensor not in SENSORS:
        raise RecordingError(f"unknown sensor {sensor!r}; expected one of {', '.join(SENSORS)}")
    if site not in SITES:
        raise RecordingError(f"unknown site {site!r}; expected one of {', '.join(SITES)}")
    if isinstance(fs_val, bool) or not isinstance(fs_val, int | float | str):
        raise RecordingError(f"sample rate {str(fs_val)[:40]!r} is not a number")
    try:
        fs_f = float(fs_val)
    except (TypeError, ValueError, OverflowError):
        raise RecordingError(f"sample rate {str(fs_val)[:40]!r} is not a number") from None
    if not (math.isfinite(fs_f) and 0 < fs_f <= MAX_FS_HZ):
        raise RecordingError(f"sample rate {fs_f} Hz is not in (0, {MAX_FS_HZ:g}]")
    for name in ("side",):
        if name in meta and not isinstance(meta[name], str):
            raise RecordingError(f"{sidecar}: {name} must be a string")
    t, x, columns = _read_csv(path, str(sensor))
    _check_samples(path, t, x, fs_f)
    return Recording(
        path, str(sensor), fs_f, str(site), str(meta.get("side", "unknown")), t, x, columns, meta
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_sidecar(sidecar: Path) -> Any:
    try:
        with sidecar.open("rb") as fh:
            data = fh.read(MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise RecordingError(f"{sidecar}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_SIDECAR_BYTES:
        raise RecordingError(f"{sidecar}: larger than {MAX_SIDECAR_BYTES // 1024} KiB")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{sidecar}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise RecordingError(f"{sidecar}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a number of 5000 digits
        raise RecordingError(f"{sidecar}: not valid JSON ({str(exc)[:120]})") from None


def _check_samples(path: Path, t: NDArray[np.float64], x: NDArray[np.float64], fs: float) -> None:
    if not np.all(np.isfinite(t)):
        raise RecordingError(f"{path}: column t has a value that is not a finite number")
    if t[0] < 0 or t[-1] > MAX_T_S:
        raise RecordingError(f"{path}: column t must lie in [0, {MAX_T_S:g}] s")
    if t.size > 1:
        # Equal neighbours are allowed: a CSV written with 7 significant digits repeats
        # the time of 2 kHz samples past 100 s. Going back in time is not.
        dt = np.diff(t)
        if not np.all(dt >= 0):
            row = int(np.argmax(dt < 0)) + 3  # 1-based, after the header
            raise RecordingError(f"{path}: column t goes back in time (line {row})")
        spacing = float(t[-1] - t[0]) / (t.size - 1)
        if not 0.5 / fs <= spacing <= 2.0 / fs:
            rate = f"{1 / spacing:.4g} Hz" if spacing > 0 else "no time"
            raise RecordingError(
                f"{path}: samples are {rate} apart on average, the sample rate says {fs:g} Hz"
            )
    bad = np.isinf(x) | (np.abs(np.nan_to_num(x)) > MAX_ABS_VALUE)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1))) + 2
        raise RecordingError(
            f"{path}: a sample beyond +-{MAX_ABS_VALUE:g} or infinite (line {row});"
            " NaN marks an invalid sample"
        )


def _read_csv(
    path: Path, sensor: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise RecordingError(f"{path}: {size >> 20} MiB, more than {MAX_CSV_BYTES >> 20} MiB")
    try:
        return _parse_csv(path, sensor)
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None


def _parse_csv(
    path: Path, sensor: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    with path.open(encoding="utf-8") as fh:
        header_line = fh.readline(65536)
        header = [h.strip() for h in header_line.strip().split(",")]
        if not header_line.strip() or "t" not in header:
            raise RecordingError(f"{path}: first line must be a header with a 't' column")
        if sensor == "emg":
            wanted = [h for h in header if h.startswith("emg")]
            if not wanted:
                raise RecordingError(f"{path}: EMG recording has no 'emg' column")
        else:
            wanted = SENSOR_COLUMNS[sensor]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise RecordingError(
                    f"{path}: {sensor} recording lacks column(s) {', '.join(missing)}"
                )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "no data": reported below
                data = np.loadtxt(fh, delimiter=",", ndmin=2, dtype=np.float64)
        except UnicodeDecodeError:
            raise
        except (ValueError, OverflowError) as exc:
            raise RecordingError(f"{path}: malformed CSV: {str(exc)[:200]}") from None
    if data.shape[0] == 0:
        raise RecordingError(f"{path}: no samples")
    if data.shape[1] != len(header):
        raise RecordingError(f"{path}: rows have {data.shape[1]} fields, header has {len(header)}")
    t = data[:, header.index("t")]
    x = data[:, [header.index(c) for c in wanted]]
    return t, x, wanted
