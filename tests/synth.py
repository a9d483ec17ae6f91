"""Generated episodes for tests: the daemon's own simulated band (not patient data)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from clonusd.daemon.sources.simulation import Episode, SimulatedBand

# The axis the test gyroscopes turn about: no band axis of its own, so mounting is tested.
AXIS = np.array([0.6, -0.64, 0.48])


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


def stretch_then_clonus(
    beats: int, freq: float, fs: float, stretch_deg: float, stretch_s: float, beat_deg: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], list[float], float]:
    """A second model of an elicited episode, a gyroscope only (deg/s), not patient data.

    The ankle is dorsiflexed by `stretch_deg` over `stretch_s` and let go as the first
    contraction begins: no pause between the stretch and the beats, so the stretch's
    end and the first contraction move the same way. Each cycle is a quick fall from the
    peak (the contraction) and a slower return. Returns (t, x with six IMU columns,
    contraction times: each cycle's peak, where its contraction starts, episode end)."""
    lead_s = 3.0
    t = np.arange(int((lead_s + beats / freq + 3.0) * fs)) / fs
    angle = np.zeros_like(t)
    up = (t >= lead_s - stretch_s) & (t < lead_s)
    angle[up] = stretch_deg * (1 - np.cos(np.pi * (t[up] - lead_s + stretch_s) / stretch_s)) / 2
    after = t >= lead_s
    angle[after] = stretch_deg * np.exp(-(t[after] - lead_s) / 1.5)
    starts = lead_s + np.arange(beats) / freq
    for s in starts:
        m = (t >= s) & (t < s + 1 / freq)
        ph = 2 * np.pi * (t[m] - s) * freq
        angle[m] += beat_deg * (np.sin(ph) + 0.3 * np.sin(2 * ph) * (1 - np.cos(ph)) / 2)
    x = _still_imu(np.gradient(angle, 1 / fs))
    return t, x, [float(s) + 0.22 / freq for s in starts], float(starts[-1]) + 1 / freq


def jerk_train(
    sizes: list[float],
    freq: float,
    fs: float,
    n: int,
    peak_dps: float = 150.0,
    intervals: list[float] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A gyroscope (six IMU columns, deg/s) seeing `n` quick jerks of the foot `1/freq`
    apart from 3 s on, each a 30 ms turn out and back whose speed peaks at `sizes[k] *
    peak_dps` (`sizes` repeated), on a still limb. Equal sizes are a rhythm of even
    contractions; very unequal ones are steps and the small knocks between them.
    `intervals` (s, repeated) spaces the jerks unevenly instead."""
    t, at = _pulse_times(intervals or [1.0 / freq], n, fs)
    rate = np.zeros_like(t)
    for k, size in enumerate(np.resize(np.asarray(sizes, dtype=np.float64), n)):
        u = (t - at[k]) / 0.03
        rate -= size * peak_dps * u * np.exp(0.5 - 0.5 * u**2)
    return t, _still_imu(rate)


def rock_train(
    intervals: list[float], fs: float, n: int, peak_dps: float = 150.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A gyroscope seeing `n` brief turns of the foot one way (20 ms, peaking at
    `peak_dps`), `intervals` (s, repeated) apart from 3 s on: a foot that rocks twice in
    each shuffling step when the intervals go short and long in turn."""
    t, at = _pulse_times(intervals, n, fs)
    rate = peak_dps * np.exp(-0.5 * ((t[:, None] - at[None, :]) / 0.02) ** 2).sum(axis=1)
    return t, _still_imu(rate)


def _pulse_times(
    intervals: list[float], n: int, fs: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Sample times (3 s of stillness either side) and the times of `n` pulses spaced
    by `intervals` (repeated) from 3 s on."""
    spacing = np.resize(np.asarray(intervals, dtype=np.float64), n)
    at = 3.0 + np.concatenate(([0.0], np.cumsum(spacing[:-1])))
    return np.arange(int((3.0 + spacing.sum() + 3.0) * fs)) / fs, at


def _still_imu(rate: NDArray[np.float64]) -> NDArray[np.float64]:
    """Six IMU columns for a limb turning at `rate` (deg/s) about `AXIS`, gravity on z
    and 1 deg/s of gyroscope noise (seeded)."""
    x = np.zeros((rate.size, 6))
    x[:, :3] = [0.0, 0.0, 9.81]
    x[:, 3:6] = np.outer(rate, AXIS) + np.random.default_rng(0).normal(0.0, 1.0, (rate.size, 3))
    return x
