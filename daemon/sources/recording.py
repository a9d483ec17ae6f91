"""Reading `clonus-recording/1` files: a CSV of samples and a JSON sidecar saying what it is."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from clonusd.dsp.sites import SENSORS, SITES

FORMAT = "clonus-recording/1"
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
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RecordingError(f"{sidecar}: not valid JSON ({exc})") from None
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
    try:
        fs_f = float(fs_val)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RecordingError(f"sample rate {fs_val!r} is not a number") from None
    if not fs_f > 0:
        raise RecordingError(f"sample rate {fs_f} must be positive")
    t, x, columns = _read_csv(path, str(sensor))
    return Recording(
        path, str(sensor), fs_f, str(site), str(meta.get("side", "unknown")), t, x, columns, meta
    )


def _read_csv(
    path: Path, sensor: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[str]]:
    with path.open() as fh:
        header_line = fh.readline()
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
        except ValueError as exc:
            raise RecordingError(f"{path}: malformed CSV: {exc}") from None
    if data.shape[0] == 0:
        raise RecordingError(f"{path}: no samples")
    if data.shape[1] != len(header):
        raise RecordingError(f"{path}: rows have {data.shape[1]} fields, header has {len(header)}")
    t = data[:, header.index("t")]
    x = data[:, [header.index(c) for c in wanted]]
    return t, x, wanted
