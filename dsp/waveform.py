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
    x: FloatArray,
    fs: float,
    freq: float,
    derivative: bool = False,
    band: float = 0.25,
    keep: np.ndarray | None = None,
    times: FloatArray | None = None,
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
    by 1/k^2, so one threshold serves both. `keep` leaves rows out of the fit (samples
    filled in over lost packets: a straight line is no shape of the limb's), and `times`
    are the rows' sample times when they are not evenly spaced (a gap in the signal: the
    rhythm's phase runs on in time across it, not in samples). What the band's noise
    alone puts at each harmonic is taken off. Returns 0.0 for a pure sine, inf when there
    is nothing to compare (no harmonic in band, too few samples, no fundamental).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    harmonics = min(HARMONICS, int(band * fs / freq)) if freq > 0 else 0
    if harmonics < 2 or n < 2 * harmonics + 3:
        return float("inf")
    t = (np.arange(n) - (n - 1) / 2) / fs if times is None else times - np.mean(times)
    if keep is not None:
        x, t = x[keep], t[keep]
        if t.size < 2 * harmonics + 3:
            return float("inf")
    power, noise = max((_harmonic_powers(x, t, f, harmonics) for f in freq * SEARCH), key=_total)
    if power[0] <= 0:
        return float("inf")
    weight = 2 if derivative else 0
    # Without this, a small clean sine in a noisy band measured a few thousandths: as
    # much as the line between a sine and a clonic cycle (SiteParams.min_harmonic_ratio).
    shape = sum(max(0.0, p - noise) / k**weight for k, p in enumerate(power[1:], start=2))
    return float(shape / power[0])


def _total(fit: tuple[list[float], float]) -> float:
    return sum(fit[0])


def _harmonic_powers(
    x: FloatArray, t: FloatArray, freq: float, harmonics: int
) -> tuple[list[float], float]:
    """Power (summed over columns) of each harmonic of `freq` in a least-squares fit, and
    the power noise alone is expected to give one harmonic: its two coefficients each
    vary by 2 sigma^2 / n, sigma^2 being the fit's residual variance in each column."""
    cols = [np.ones(t.size), t]
    for k in range(1, harmonics + 1):
        w = 2 * np.pi * k * freq * t
        cols += [np.cos(w), np.sin(w)]
    design = np.column_stack(cols)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    dof = max(1, t.size - design.shape[1])
    sigma2 = np.sum((x - design @ coef) ** 2, axis=0) / dof
    noise = float(np.sum(4.0 * sigma2 / t.size))
    return [float(np.sum(coef[2 * k : 2 * k + 2] ** 2)) for k in range(1, harmonics + 1)], noise
