"""Polar bands under radio loss, without a radio: the virtual band's own frames, whole
frames dropped at random, through the Polar profile's parsers and ACC/GYRO pairing and
then the pipeline's signal meter and detector; against the detector on the same samples
with nothing lost (what a replay of the original decides).

    python benchmarks/ble_loss.py

Per run: episodes the reference alarms and how many of them the lossy path alarms too,
onsets outside any episode, the true and the reported loss, and the measured rate.
Simulated bands (not patient data): ten episodes of 8-44 beats at 4.5-7.5 Hz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

from fakebluez.bands import VirtualPolar  # type: ignore[import-not-found]  # noqa: E402

from clonusd.daemon.config import BleSource, parse_config  # noqa: E402
from clonusd.daemon.service.health import SignalMeter  # noqa: E402
from clonusd.daemon.sources.base import SampleChunk  # noqa: E402
from clonusd.daemon.sources.ble.bands import polar  # noqa: E402
from clonusd.daemon.sources.ble.profiles import PolarProfile  # noqa: E402
from clonusd.daemon.sources.simulation import Episode, SimulatedBand  # noqa: E402
from clonusd.dsp import ClonusDetector, site_params  # noqa: E402

CASES = [("Verity", 30, p) for p in (0.09, 0.22)] + [("H10", 38, p) for p in (0.16, 0.39)]
Episodes = list[tuple[float, int, float]]  # start s, beats, Hz


def _band(
    sensor: str, fs: int, episodes: list[tuple[float, int, float]], seed: int
) -> SimulatedBand:
    band = SimulatedBand(sensor, fs, seed=seed)
    for i, (at, beats, freq) in enumerate(episodes):
        band.add(Episode.make(at, beats, freq, seed=i))
    return band


def run(model: str, frame: int, p: float, seed: int) -> str:
    sensor, fs = ("imu6", 52) if model == "Verity" else ("acc3", 100)
    rng = np.random.default_rng(seed)
    episodes: Episodes = []
    at = 3.0
    while len(episodes) < 10:
        beats = int(rng.integers(8, 45))
        episodes.append((at, beats, float(rng.uniform(4.5, 7.5))))
        at += beats / 5.5 + float(rng.uniform(4, 9))
    n = int(at * fs) // frame * frame
    t, x = _band(sensor, fs, episodes, seed).next_chunk(n)
    ref = ClonusDetector(sensor, site_params("ankle"), fs)
    ref_events = ref.process(t, x) + ref.flush()
    spans = list(
        zip(
            [e.onset_t for e in ref_events if e.event == "clonus.onset"],
            [e.last_beat_t for e in ref_events if e.event == "clonus.end"],
            strict=True,
        )
    )

    virtual = VirtualPolar(_band(sensor, fs, episodes, seed), model, frame=frame)
    virtual.started = {polar.ACC: fs, polar.GYRO: fs} if model == "Verity" else {polar.ACC: fs}
    name = "Polar Sense B5E1F002" if model == "Verity" else "Polar H10 0A1B2C3D"
    cfg = (
        parse_config(
            f'[[sensors]]\nid = "a"\nbed = "b"\nsite = "ankle"\n[sensors.source]\nkind = "ble"\n'
            f'profile = "polar"\nname = "{name}"\nrate_hz = {fs}\n'
        )
        .sensors[0]
        .source
    )
    assert isinstance(cfg, BleSource)
    profile = PolarProfile(cfg)
    factors = {polar.ACC: virtual.ACC_FACTOR, polar.GYRO: virtual.GYRO_FACTOR}
    for mtype, parser in profile.parsers.items():
        parser.restart(factors[mtype] if model == "Verity" else None)
    chunks: list[SampleChunk] = []
    profile._emit = chunks.append  # what the BLE source's queue would get
    loss = np.random.default_rng(seed + 7)
    lost = 0
    for s in range(0, n, frame):
        frames = virtual._frames(t[s : s + frame], x[s : s + frame])
        dropped = [loss.random() < p for _ in frames]
        for (_uuid, data), drop in zip(frames, dropped, strict=True):
            if not drop:
                profile._on_data(None, bytearray(data))
        lost += frame if any(dropped) else 0

    det = ClonusDetector(sensor, site_params("ankle"), fs)
    meter = SignalMeter(fs)
    events = []
    for c in chunks:
        meter.add(c.t)
        events += det.process(c.t, c.x)
    events += det.flush()
    assert profile.device_clock._offset is not None
    to_band = profile.device_clock._offset + virtual.EPOCH_NS / 1e9  # host axis -> band's
    onsets = [e.onset_t - to_band for e in events if e.event == "clonus.onset"]
    missed = [b - a for a, b in spans if not any(a - 0.6 <= o <= b + 0.3 for o in onsets)]
    hit = len(spans) - len(missed)
    outside = sum(not any(a - 0.6 <= o <= b + 0.3 for a, b in spans) for o in onsets)
    rate = meter.rate_hz() or 0.0
    missed_s = ", ".join(f"{d:.1f}" for d in missed)
    return (
        f"{model:6} {p:4.0%} lost, seed {seed}: {hit}/{len(spans)} episodes alarmed, "
        f"{outside} onsets outside; loss {lost / n:.3f} true, {meter.loss:.3f} reported; "
        f"rate {rate:.2f} Hz" + (f"; missed episodes of {missed_s} s" if missed else "")
    )


if __name__ == "__main__":
    for model, frame, p in CASES:
        for seed in (1, 2):
            print(run(model, frame, p, seed), flush=True)
