"""Alarms on real surface EMG of voluntary muscle activity, in healthy people.

    python benchmarks/real_emg.py CLONE [CLONE ...]

Each CLONE is a git clone of one of these public repositories (not shipped here; their
licences are theirs):

- `Nikita868/PSYC9080` (`EMG/*.txt`): biceps during curls with a 10 lb weight and a
  fatiguing 20 lb hold, and a hand muscle at rest then abducting; 1000 Hz, first column.
- `federicotomat/EMG-Preprocessing` (`input/Test1.mat`, `Test2.mat`): biceps and triceps
  in repeated elbow flexion and extension, deltoid in shoulder elevation; 2000 Hz.
- `Mia1Dimit/MuscleInsight` (`Data_Acquisition/csv_data_original/*_leg_extension*.csv`):
  the thigh during leg extensions repeated to fatigue, 11 people; 800 Hz.
- `emoralesv/MuscleTracker-Hand-Movement` (`Data/Raw/Biopac/*.txt`): two forearm
  channels while 58 people hold five hand movements; 1000 Hz, read as a two-channel band.

Every recording is replayed as an EMG band (arm muscles as `wrist`, the thigh as
`knee`). None of these people has clonus, so every alarm is false: prints each, and the
alarms per hour per data set. The detector judges EMG against the recording's own
resting level, so the files' units (ADC counts, microvolts) need no conversion.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.io import loadmat

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.clones import Signal, replay_clones


def psyc9080(root: Path) -> Iterator[Signal]:
    for path in sorted((root / "EMG").glob("*.txt")):
        x = np.genfromtxt(path, dtype=float, delimiter="\t", usecols=[0])  # a blank last row
        yield "", path.stem, "emg", 1000.0, "wrist", x[np.isfinite(x), None]


def emg_preprocessing(root: Path) -> Iterator[Signal]:
    muscles = {"Test1": ["biceps", "triceps"], "Test2": ["deltoid"]}
    for test, names in muscles.items():
        matrix = loadmat(root / "input" / f"{test}.mat")[test][0, 0]["matrix"]
        for i, muscle in enumerate(names):
            x = np.asarray(matrix[:, i : i + 1], float)
            yield "", f"{test}-{muscle}", "emg", 2000.0, "wrist", x


def muscleinsight(root: Path) -> Iterator[Signal]:
    folder = root / "Data_Acquisition" / "csv_data_original"
    csv.field_size_limit(1 << 30)
    for path in sorted(folder.glob("*_leg_extension*.csv")):
        with path.open(newline="") as f:
            rows = {r[0]: r[1] for r in csv.reader(f) if len(r) == 2}
        x = np.array([float(v) for v in rows["amplitudes"].split(",")])
        yield "", path.stem, "emg", 800.0, "knee", x[:, None]


def muscletracker(root: Path) -> Iterator[Signal]:
    for path in sorted((root / "Data" / "Raw" / "Biopac").glob("*.txt")):
        yield "", path.stem, "emg", 1000.0, "wrist", np.loadtxt(path, delimiter=",", ndmin=2)


SOURCES = {
    "EMG/Carl_1.txt": psyc9080,
    "input/Test1.mat": emg_preprocessing,
    "Data_Acquisition/csv_data_original": muscleinsight,
    "Data/Raw/Biopac": muscletracker,
}


def main() -> None:
    replay_clones(SOURCES, "python benchmarks/real_emg.py CLONE [CLONE ...]")


if __name__ == "__main__":
    main()
