"""Generated episodes for tests: the daemon's own simulated band (not patient data)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clonusd.daemon.sources.simulation import Episode, SimulatedBand


def clonus_band(
    sensor: str,
    beats: int,
    freq: float = 5.5,
    fs: float = 200.0,
    amp: float = 60.0,
    noise: float = 2.0,
    stretch: float = 2.0,
    lead_s: float = 3.0,
    tail_s: float = 3.0,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[float]]:
    """(t, x in `sensor`'s columns, beat times) for one episode of `beats` contractions."""
    band = SimulatedBand(sensor, fs, amplitude=amp, noise=noise, seed=seed)
    ep = Episode.make(lead_s, beats, freq, stretch, seed)
    band.add(ep)
    n = int((ep.end_s + tail_s) * fs)
    t, x = band.next_chunk(n)
    return t, x, ep.beat_times
