"""EMG detection in electrode noise: sensitivity as white noise is added.

    python benchmarks/emg_noise.py DIR [SNR_DB ...]

DIR holds labelled recordings (`clonus-recording/1`, e.g. from the generator beside
`recordings/FORMAT.md`); the EMG ones with a labelled clonus episode are used, clean and
copied with white noise
added at each signal-to-noise ratio (default 20, 12, 6 and 0 dB): the noise's RMS is the
recording's RMS over its labelled clonus episodes, lowered by that many dB (the same
seeded noise for every run). Prints, per ratio, what `clonusd evaluate` reports for EMG:
sensitivity, false alarms and tremor false alarms. Synthetic recordings, synthetic noise:
a measure of how the burst stage holds up, not of any real electrode.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from clonusd.daemon.commands.evaluate import evaluate


def noisy_copy(src: Path, dst: Path, snr_db: float, rng: np.random.Generator) -> None:
    """Write `src` (an EMG recording with a labelled episode) with noise added into `dst`
    (`snr_db` infinite: as it is)."""
    meta = json.loads(src.with_suffix(".json").read_text())
    rows = np.loadtxt(src, delimiter=",", skiprows=1, ndmin=2)
    t, x = rows[:, 0], rows[:, 1]
    if np.isfinite(snr_db):
        inside = np.zeros(t.size, dtype=bool)
        for lab in meta["labels"]:
            inside |= (t >= lab["onset_s"]) & (t <= lab["end_s"])
        rms = float(np.std(x[inside]))
        x = x + rng.normal(scale=rms / 10 ** (snr_db / 20), size=x.size)
    out = dst / src.name
    np.savetxt(out, np.column_stack([t, x]), delimiter=",", header="t,emg", comments="", fmt="%.6g")
    out.with_suffix(".json").write_text(json.dumps(meta))


def main() -> None:
    if len(sys.argv) < 2 or not Path(sys.argv[1]).is_dir():
        sys.exit("usage: python benchmarks/emg_noise.py DIR [SNR_DB ...]")
    try:
        ratios = [float(a) for a in sys.argv[2:]] or [20.0, 12.0, 6.0, 0.0]
    except ValueError:
        sys.exit("SNR_DB must be numbers (dB)")
    sources = []
    for csv in sorted(Path(sys.argv[1]).rglob("*.csv")):
        meta = csv.with_suffix(".json")
        if not meta.is_file():
            continue
        info = json.loads(meta.read_text())
        if info.get("sensor") == "emg" and info.get("labels"):
            sources.append(csv)
    if not sources:
        sys.exit(f"no EMG recordings with a labelled episode in {sys.argv[1]}")
    print("snr_db  sustained  sensitivity  false_alarms  tremor_false_alarms")
    for snr in [np.inf, *ratios]:
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(7)
            for i, csv in enumerate(sources):
                folder = Path(tmp) / str(i)
                folder.mkdir()
                noisy_copy(csv, folder, snr, rng)
            emg = evaluate(Path(tmp)).summary()["by_sensor"].get("emg", {})
        label = "clean" if np.isinf(snr) else f"{snr:g}"
        print(
            f"{label:>6}  {emg.get('sustained_episodes', 0):9d}  "
            f"{emg.get('sensitivity') or 0:11.3f}  {emg.get('false_alarms', 0):12d}  "
            f"{emg.get('tremor_false_alarms', 0):19d}"
        )


if __name__ == "__main__":
    main()
