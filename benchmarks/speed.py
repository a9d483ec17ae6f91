"""Detector speed: replay (whole file) and the live path (BLE-sized chunks), beside the cost
of a plain `scipy.signal.sosfilt` over the same samples.

    python benchmarks/speed.py [RECORDING.csv]

Figures are CPU time of this process (time.process_time), best of several runs, so other
load on a shared machine inflates them less than wall time would; compare the ratios.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from clonusd.daemon.commands.replay import make_detector
from clonusd.daemon.sources.recording import RecordingError, load_recording
from clonusd.dsp.filters import bandpass_sos

DEFAULT = Path(__file__).resolve().parents[1] / "daemon" / "examples" / "ankle-imu6-demo.csv"


def best_cpu(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    try:
        rec = load_recording(path)
    except RecordingError as exc:
        sys.exit(f"speed.py: {exc} (usage: python benchmarks/speed.py [RECORDING.csv])")
    duration = rec.duration_s
    print(
        f"recording: {path.name}  {rec.sensor} {rec.fs:g} Hz  {duration:.1f} s  "
        f"{rec.t.size} samples"
    )

    sos = bandpass_sos(*make_detector(rec).params.band_hz, rec.fs)
    axes = min(3, rec.x.shape[1])  # the motion axes counted on, or the EMG channels
    plain = best_cpu(lambda: signal.sosfilt(sos, rec.x[:, -axes:], axis=0))
    print(
        f"plain sosfilt ({axes} axes, whole file):   {plain * 1e3:8.2f} ms  "
        f"({duration / plain:10.0f}x real time)"
    )

    def replay() -> None:
        det = make_detector(rec)
        det.process(rec.t, rec.x)
        det.flush()

    whole = best_cpu(replay)
    print(
        f"replay (whole file in one call):      {whole * 1e3:8.2f} ms  "
        f"({duration / whole:10.0f}x real time, {whole / plain:5.1f}x plain sosfilt)"
    )

    for chunk in (1, 4, 10, 40):

        def live(chunk: int = chunk) -> None:
            det = make_detector(rec)
            for s in range(0, rec.t.size, chunk):
                det.process(rec.t[s : s + chunk], rec.x[s : s + chunk])

        def plain_live(chunk: int = chunk) -> None:
            zi = signal.sosfilt_zi(sos)[:, :, None] * np.ones((1, 1, axes))
            for s in range(0, rec.t.size, chunk):
                _, zi = signal.sosfilt(sos, rec.x[s : s + chunk, -axes:], axis=0, zi=zi)

        cost = best_cpu(live, repeat=3)
        base = best_cpu(plain_live, repeat=3)
        per_band = 100.0 * cost / duration * (200.0 / rec.fs)
        print(
            f"live, {chunk:2d}-sample chunks:             {cost * 1e3:8.1f} ms  "
            f"= {per_band:5.2f} % of one core per 200 Hz band  "
            f"(plain sosfilt in the same chunks: {100.0 * base / duration:5.2f} %)"
        )


if __name__ == "__main__":
    main()
