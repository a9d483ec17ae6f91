"""Alarms on real freezing of gait: ankle accelerometers of people with Parkinson's disease.

    python benchmarks/real_fog.py PATH/TO/dataset_fog_release/dataset

The Daphnet Freezing of Gait data set (Bachlin et al. 2010; UCI, CC BY 4.0; not shipped
here): 10 people with Parkinson's disease walk, turn and go through doorways in a lab,
with a 3-axis accelerometer on the shank just above the ankle (64 Hz, in mg). Freezing of
gait often comes with a trembling of the legs at 3-8 Hz, in the clonus band, and each
episode is annotated. Each file's ankle accelerometer is replayed as an accelerometer-
only ankle band (acc3), fed 8 samples at a time as a band's notifications would bring
them. Every alarm is false: prints each, and the alarms per hour for the whole run, for
the annotated walking (no freeze) and for the freezes. Real patients, but no clonus.

Reads the files as released (space-separated: time in ms, ankle x y z, thigh, trunk,
annotation 0 outside the experiment, 1 no freeze, 2 freeze) or converted to CSV with a
header line of those columns.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from clonusd.daemon.commands.replay import replay_events
from clonusd.daemon.sources.recording import Recording

FS = 64.0
MG = 9.80665e-3  # m/s^2 per mg
PARTS = {0: "outside the experiment", 1: "walking, no freeze", 2: "freezing of gait"}


def load(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t in s, ankle acceleration (n, 3) in m/s^2, annotation per sample)."""
    with path.open() as f:
        first = f.readline()
    csv = "," in first
    rows = np.loadtxt(path, delimiter="," if csv else None, skiprows=1 if csv else 0, ndmin=2)
    if rows.shape[0] < 2 or rows.shape[1] != 11:
        raise ValueError(f"{rows.shape[1]} columns, not 11" if rows.size else "no samples")
    return rows[:, 0] / 1000.0, rows[:, 1:4] * MG, rows[:, 10].astype(int)


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python benchmarks/real_fog.py PATH/TO/dataset_fog_release/dataset")
    files = sorted(Path(sys.argv[1]).glob("S[0-9][0-9]R[0-9][0-9].txt"))
    if not files:
        sys.exit(f"no Daphnet recordings (S01R01.txt ...) in {sys.argv[1]}")
    hours = dict.fromkeys(PARTS, 0.0)
    alarms = dict.fromkeys(PARTS, 0)
    for path in files:
        try:
            t, acc, part = load(path)
        except (OSError, ValueError) as exc:
            sys.exit(f"{path}: not a Daphnet recording ({exc})")
        for k in PARTS:
            hours[k] += np.count_nonzero(part == k) / FS / 3600
        rec = Recording(path, "acc3", FS, "ankle", "left", t, acc, ["ax", "ay", "az"])
        for ev in replay_events(rec, chunk=8):
            if ev["event"] != "clonus.onset":
                continue
            k = int(part[min(np.searchsorted(t, ev["t"]), t.size - 1)])
            alarms[k] += 1
            print(
                f"{path.stem}: alarm at {ev['t']:.2f} s ({ev['beats']} beats, "
                f"{ev['frequency_hz']:.1f} Hz) during {PARTS[k]}"
            )
    total = sum(hours.values())
    print(f"{len(files)} recordings, {total:.2f} h")
    for k, name in PARTS.items():
        rate = f"{alarms[k] / hours[k]:.1f} per hour" if hours[k] else "-"
        print(f"{name}: {hours[k]:.2f} h, {alarms[k]} false alarms, {rate}")
    print(f"all: {sum(alarms.values())} false alarms, {sum(alarms.values()) / total:.1f} per hour")


if __name__ == "__main__":
    main()
