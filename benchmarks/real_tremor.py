"""Alarms on real wrist and hand motion with tremor or shaking in it, and no clonus.

    python benchmarks/real_tremor.py CLONE [CLONE ...]

Each CLONE is a git clone of one of these public repositories (not shipped here; their
licences are theirs):

- `alexzhang13/TremorWear` (MIT; `data/{Emily,Sarah,Shirley,Healthy}/*.txt`): a tremor-
  stabilising wearable's 6-axis IMU (MPU9250) while three people with a hand tremor
  drink, eat, hold a book or an object, rest, sign a form and write, and one healthy
  person rests, turns the wrist and fakes a tremor. About 21 s each at the rate on the
  file's first line (450-480 Hz); then rows of time (ms), acceleration (m/s^2) and
  rotation (rad/s). Replayed twice: as a 6-axis band, and as an accelerometer-only one.
- `Denis-Svichkarev/tremor-detection` (no licence stated;
  `web/iOS/Simulation/data*/*.csv`, `web/iOS/All/T-*.csv`): an iPhone held in the
  hand, 100 Hz, acceleration in g with gravity: a healthy person shaking the hand on
  purpose to imitate a tremor (`data1`-`data12`), moving it (`data13`-`data15`), holding
  it still (`data16`), and tremor tests (`All/T-*`). Replayed as an accelerometer-only
  band.

Every recording is replayed as a band on the wrist, its samples evenly spaced at the
recording's own rate (as a band's clock spaces them). None of these people has clonus,
so every alarm is false: prints each, and the alarms per group of recordings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.clones import Signal, replay_clones

G = 9.80665


def tremorwear(root: Path) -> Iterator[Signal]:
    for person in ("Emily", "Sarah", "Shirley", "Healthy"):
        for path in sorted((root / "data" / person).glob("*.txt")):
            lines = path.read_text().split("\n", 1)
            fs = float(lines[0])
            rows = np.loadtxt(lines[1].splitlines(), ndmin=2)
            imu = np.column_stack([rows[:, 1:4], np.degrees(rows[:, 4:7])])
            group = "healthy" if person == "Healthy" else "tremor"
            yield group, path.stem, "imu6", fs, "wrist", imu
            yield group, path.stem, "acc3", fs, "wrist", imu[:, :3]


def tremor_detection(root: Path) -> Iterator[Signal]:
    ios = root / "web" / "iOS"
    groups = {f"data{k}": "shaking" for k in range(1, 13)}
    groups |= {f"data{k}": "moving" for k in range(13, 16)}
    groups |= {"data16": "still"}
    paths = [(groups[d.name], p) for d in (ios / "Simulation").iterdir() for p in d.glob("*.csv")]
    paths += [("tremor tests", p) for p in (ios / "All").glob("T-*.csv")]
    for group, path in sorted(paths):
        rows = np.loadtxt(path, delimiter=";", skiprows=1, usecols=(0, 1, 2, 3), ndmin=2)
        fs = 1.0 / float(np.median(np.diff(rows[:, 0])))
        yield group, path.stem, "acc3", fs, "wrist", rows[:, 1:4] * G


SOURCES = {
    "data/Sarah": tremorwear,
    "web/iOS/Simulation": tremor_detection,
}


def main() -> None:
    replay_clones(SOURCES, "python benchmarks/real_tremor.py CLONE [CLONE ...]")


if __name__ == "__main__":
    main()
