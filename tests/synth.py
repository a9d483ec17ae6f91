"""A small synthetic clonus generator for tests (a physiological model, not patient data).

A stretch (a smooth dorsiflexion velocity pulse) is followed by N clonic cycles: each a
quick plantarflexion (45 % of the period) and a slower return (55 %), the first cycle
longer, with a little period jitter. The motion is rotated into a random sensor frame
and noise is added, so the detector cannot rely on which axis is which.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation


def clonus_gyro(
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
    """(t, x imu6 columns, beat times) for one episode of `beats` contractions."""
    rng = np.random.default_rng(seed)
    periods = rng.normal(1.0 / freq, 0.03 / freq, size=beats)
    periods[0] *= 1.15
    t_stretch = lead_s
    pulse_len = 0.15
    beat_t = t_stretch + pulse_len + np.concatenate(([0.0], np.cumsum(periods[:-1])))
    n = int((beat_t[-1] + periods[-1] + tail_s) * fs)
    t = np.arange(n) / fs
    w = np.zeros(n)
    # Stretch: dorsiflexion velocity pulse (positive) before the first beat.
    m = (t >= t_stretch) & (t < t_stretch + pulse_len)
    w[m] += stretch * amp * np.sin(np.pi * (t[m] - t_stretch) / pulse_len)
    for bt, p in zip(beat_t, periods, strict=True):
        pf = 0.45 * p
        a = (t >= bt) & (t < bt + pf)
        w[a] -= amp * np.sin(np.pi * (t[a] - bt) / pf)  # quick plantarflexion
        b = (t >= bt + pf) & (t < bt + p)
        w[b] += 0.8 * amp * np.sin(np.pi * (t[b] - bt - pf) / (p - pf))  # slower return
    gyro_limb = np.column_stack([w, 0.15 * w, np.zeros(n)])
    rot = Rotation.random(random_state=seed)
    gyro = rot.apply(gyro_limb) + rng.normal(0, noise, size=(n, 3))
    acc = rot.apply(np.array([0.0, 0.0, 9.81])) + rng.normal(0, 0.05, size=(n, 3))
    return t, np.hstack([acc, gyro]), list(beat_t)
