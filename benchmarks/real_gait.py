"""Alarms on real walking: foot IMUs of healthy people, where every alarm is false.

    git clone https://github.com/CyrilVoisard/ipol_dataset_1   # AGPL-3.0; not shipped here
    python benchmarks/real_gait.py ipol_dataset_1/GaitData

The data set (Voisard et al.): 19 healthy adults stand, walk 10 m, turn, walk back and
stop, with an XSens MTw IMU on each foot (100 Hz; acceleration in m/s^2, rotation in
rad/s). Each foot's recording is replayed as an ankle band, with its gyroscope (imu6)
and, with the gyroscope left out, as an accelerometer-only band (acc3). Prints each
alarm and the alarms per hour for each kind. Real people, but no clonus and no patient.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from clonusd.dsp import ClonusDetector, site_params

FS = 100.0


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(t in s, (n, 6): acc xyz in m/s^2 and gyr xyz in deg/s) of one foot's recording.
    Time is the IMU's packet counter (16 bits, unwrapped): lost packets stay gaps."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty file: said below, not warned about
        rows = np.loadtxt(path, skiprows=2, usecols=range(7), ndmin=2)
    if rows.shape[0] < 2:
        raise ValueError("fewer than two samples")
    steps = np.diff(rows[:, 0])
    steps[steps <= 0] += 65536
    t = np.concatenate(([0.0], np.cumsum(steps))) / FS
    x = rows[:, 1:7].copy()
    x[:, 3:6] = np.degrees(x[:, 3:6])
    return t, x


def onsets(sensor: str, t: np.ndarray, x: np.ndarray) -> list[tuple[float, int, float]]:
    """(time, beats, rate) of each onset a fresh ankle detector raises, fed 8 samples at
    a time as a band's notifications would bring them."""
    cols = x if sensor == "imu6" else x[:, :3]
    det = ClonusDetector(sensor, site_params("ankle"), FS)
    events = []
    for s in range(0, t.size, 8):
        events += det.process(t[s : s + 8], cols[s : s + 8])
    events += det.flush()
    return [(e.t, e.beats, e.frequency_hz) for e in events if e.event == "clonus.onset"]


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python benchmarks/real_gait.py PATH/TO/ipol_dataset_1/GaitData")
    files = sorted(Path(sys.argv[1]).glob("*_[lr]f.txt"))
    if not files:
        sys.exit(f"no foot recordings (*_lf.txt, *_rf.txt) in {sys.argv[1]}")
    hours = 0.0
    alarms = {"imu6": 0, "acc3": 0}
    for path in files:
        try:
            t, x = load(path)
        except (OSError, ValueError) as exc:
            sys.exit(f"{path}: not an XSens export of the data set ({exc})")
        hours += float(t[-1]) / 3600
        for sensor in alarms:
            for at, beats, rate in onsets(sensor, t, x):
                alarms[sensor] += 1
                print(f"{path.stem} {sensor}: alarm at {at:.2f} s ({beats} beats, {rate:.1f} Hz)")
    print(f"{len(files)} foot recordings, {hours:.2f} h of walking, turning and standing")
    for sensor, n in alarms.items():
        print(f"{sensor}: {n} false alarms, {n / hours:.1f} per hour")


if __name__ == "__main__":
    main()
