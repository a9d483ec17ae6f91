"""Replaying public recordings of people without clonus (the `real_*.py` benchmarks that
take git clones of data sets): every alarm on them is false."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from clonusd.daemon.commands.replay import replay_events
from clonusd.daemon.sources.recording import Recording

# (group, name, sensor, fs, site, samples (n, channels) in the detector's units)
Signal = tuple[str, str, str, float, str, np.ndarray]
Reader = Callable[[Path], Iterator[Signal]]
COLUMNS = {"imu6": ["ax", "ay", "az", "gx", "gy", "gz"], "acc3": ["ax", "ay", "az"]}


def replay_clones(sources: Mapping[str, Reader], usage: str) -> None:
    """Replay every recording of each clone named on the command line, as a band of the
    recording's sensor at its site, its samples evenly spaced at the recording's rate (as
    a band's clock spaces them); print each alarm, the alarms per group of recordings and
    in all. A clone is recognised by a path only its data set has (`sources`' keys).
    Exits with a one-line message on a bad argument or an unreadable clone."""
    roots = [Path(p) for p in sys.argv[1:]]
    if not roots or not all(r.is_dir() for r in roots):
        sys.exit(f"usage: {usage}")
    readers = []
    for root in roots:
        reader = next((read for mark, read in sources.items() if (root / mark).exists()), None)
        if reader is None:
            sys.exit(f"{root}: not one of the data sets this script reads")
        readers.append((root, reader))
    total_h, total_alarms = 0.0, 0
    for root, reader in readers:
        tally: dict[str, list[float]] = {}  # group (and sensor) -> [recordings, hours, alarms]
        try:
            for group, name, sensor, fs, site, x in reader(root):
                t = np.arange(x.shape[0]) / fs
                cols = COLUMNS.get(sensor) or [f"emg{i + 1}" for i in range(x.shape[1])]
                rec = Recording(root / name, sensor, fs, site, "right", t, x, cols)
                where = "/".join(filter(None, (reader.__name__, group)))
                row = tally.setdefault(f"{where} ({sensor})", [0, 0.0, 0])
                row[0] += 1
                row[1] += x.shape[0] / fs / 3600
                for ev in replay_events(rec, chunk=max(1, round(fs / 50))):
                    if ev["event"] == "clonus.onset":
                        row[2] += 1
                        print(
                            f"{where}/{name} ({sensor}): alarm at {ev['t']:.2f} s "
                            f"({ev['beats']} beats, {ev['frequency_hz']:.1f} Hz)"
                        )
        except (OSError, ValueError, KeyError, IndexError) as exc:
            sys.exit(f"{root}: cannot read it ({type(exc).__name__}: {exc})")
        if not tally:
            sys.exit(f"{root}: no recordings in it")
        for key, (files, hours, alarms) in tally.items():
            print(
                f"{key}: {files:.0f} recordings, {hours * 60:.1f} min, "
                f"{alarms:.0f} false alarms, {alarms / hours:.1f} per hour"
            )
            total_h += hours
            total_alarms += int(alarms)
    rate = total_alarms / total_h
    print(f"all: {total_h * 60:.1f} min, {total_alarms} false alarms, {rate:.1f} per hour")
