"""A second opinion beside the dev set: the detector on the daemon's own simulated band.

    python benchmarks/simulated.py [imu6|acc3]

The dev recordings come from one generator; tuning on them alone can fit that generator
instead of clonus. `daemon.simulation` is a separate model built from the physiology
notes (a 45 % contraction and a 55 % return, a longer first cycle, a stretch pulse). This
sweeps it over clonus rates (4-8.5 Hz), sample rates (52-200 Hz), beat counts (4-20) and
stretch sizes (0-3x the beats) and prints, per stretch size, how many episodes were
decided right (one onset between the sixth beat and one period after the last, or none
for five beats or fewer) and how often the end event's count is within one beat.
A detector change should not lower these. Synthetic data, not patients.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synth import clonus_band  # type: ignore[import-not-found]

from clonusd.dsp import ClonusDetector, site_params

FREQS = (4.0, 5.5, 7.0, 8.5)
RATES = (52.0, 104.0, 200.0)
BEATS = (4, 5, 6, 8, 12, 20)
STRETCHES = (0.0, 0.5, 1.5, 3.0)


def decide(
    beats: int, freq: float, fs: float, stretch: float, seed: int, sensor: str = "imu6"
) -> tuple[bool, bool]:
    """(decided right, end count within one beat or no end expected)."""
    t, x, bt = clonus_band(sensor, beats, freq=freq, fs=fs, stretch=stretch, seed=seed)
    det = ClonusDetector(sensor, site_params("ankle"), fs)
    events = []
    for s in range(0, t.size, 8):
        events += det.process(t[s : s + 8], x[s : s + 8])
    events += det.flush()
    onsets = [e.t for e in events if e.event == "clonus.onset"]
    ends = [e.beats for e in events if e.event == "clonus.end"]
    if beats <= 5:
        return not onsets, True
    right = len(onsets) == 1 and bt[5] <= onsets[0] <= bt[-1] + 1.0 / freq
    return right, bool(ends) and abs(ends[0] - beats) <= 1


def main() -> None:
    sensor = sys.argv[1] if len(sys.argv) > 1 else "imu6"
    print(f"sensor {sensor}")
    print(f"{'stretch':>8}  {'decided right':>14}  {'count within 1':>15}")
    for stretch in STRETCHES:
        results = [
            (beats, *decide(beats, freq, fs, stretch, seed + 10 * beats, sensor))
            for freq in FREQS
            for fs in RATES
            for beats in BEATS
            for seed in range(2)
        ]
        right = sum(ok for _, ok, _ in results)
        counted = [within for beats, _, within in results if beats > 5]
        print(f"{stretch:>7.1f}x  {right:>6}/{len(results):<7}  {np.mean(counted):>14.2f}")


if __name__ == "__main__":
    main()
