"""The shape of a motion cycle: how far it is from a pure sine.

A clonic cycle is a reflex jerk (plantarflexion, about 45 % of the period) and a passive
return (55 %): an uneven swing, so its motion carries harmonics of the beat rate. An
oscillator that swings as a clean sine at the clonus rate (a vibrating frame, a limb
rocked evenly, the smoothest tremors) does not. The measure is taken on the raw signal,
before the band-pass, which would strip the harmonics it looks for.
"""

from __future__ import annotations

import numpy as np

from clonusd.dsp.filters import FloatArray

HARMONICS = 3  # fundamental plus the 2nd and 3rd harmonics


SEARCH = np.linspace(0.88, 1.12, 13)  # the beat rate from lobe timing is a few % off


def harmonic_ratio(
    x: FloatArray, fs: float, freq: float, derivative: bool = False, band: float = 0.25
) -> float:
    """Power at 2x and 3x the beat rate over power at the rate, summed over columns of `x`.

    Fitted by least squares together with an offset and a linear drift (gravity and slow
    posture changes), so the window need not hold whole cycles. The rate is refined around
    `freq` to the one the model fits best: a rate a few per cent off smears the harmonics
    more than the fundamental and would make any cycle look like a sine. Summing over axes
    makes it independent of the band's orientation (a rotation keeps the power at each
    frequency). Only harmonics below `band` * fs are used: above that a band's own output
    filter shapes them. `derivative` says `x` is the derivative of the motion whose shape
    is judged (an accelerometer seeing angular velocity): its harmonic k is then weighted
    by 1/k^2, so one threshold serves both. Returns 0.0 for a pure sine, inf when there is
    nothing to compare (no harmonic in band, too few samples, no fundamental).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    harmonics = min(HARMONICS, int(band * fs / freq)) if freq > 0 else 0
    if harmonics < 2 or n < 2 * harmonics + 3:
        return float("inf")
    t = (np.arange(n) - (n - 1) / 2) / fs
    power = max((_harmonic_powers(x, t, f, harmonics) for f in freq * SEARCH), key=sum)
    if power[0] <= 0:
        return float("inf")
    weight = 2 if derivative else 0
    return float(sum(p / k**weight for k, p in enumerate(power[1:], start=2)) / power[0])


def _harmonic_powers(x: FloatArray, t: FloatArray, freq: float, harmonics: int) -> list[float]:
    """Power (summed over columns) of each harmonic of `freq` in a least-squares fit."""
    cols = [np.ones(t.size), t]
    for k in range(1, harmonics + 1):
        w = 2 * np.pi * k * freq * t
        cols += [np.cos(w), np.sin(w)]
    coef, *_ = np.linalg.lstsq(np.column_stack(cols), x, rcond=None)
    return [float(np.sum(coef[2 * k : 2 * k + 2] ** 2)) for k in range(1, harmonics + 1)]
