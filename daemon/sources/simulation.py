"""A virtual band: realistic clonus episodes in IMU or EMG, generated sample by sample.

This is a physiological model for demos and tests, not patient data. An episode is a
stretch (a smooth dorsiflexion velocity pulse) followed by N clonic cycles, each a quick
plantarflexion (45 % of the period) and a slower return (55 %), the first cycle longer,
with a few per cent of period jitter. Motion is rotated into a fixed random sensor frame
(the band's orientation on the limb is unknown to the detector); EMG is one burst of
band-limited noise per contraction on a noisy baseline with mains hum.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from clonusd.daemon.config import SimulatedSource as SimulatedConfig
from clonusd.daemon.sources.base import LinkStatus, SampleChunk, SourceItem

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Episode:
    start_s: float  # stretch onset
    beats: int
    frequency_hz: float = 5.5
    stretch: float = 0.5  # stretch pulse size relative to the beats
    seed: int = 0
    periods: tuple[float, ...] = field(default=(), compare=False)

    @staticmethod
    def make(
        start_s: float, beats: int, frequency_hz: float = 5.5, stretch: float = 0.5, seed: int = 0
    ) -> Episode:
        rng = np.random.default_rng(seed)
        p = rng.normal(1.0 / frequency_hz, 0.03 / frequency_hz, size=beats)
        p[0] *= 1.15  # the first cycle is longer
        return Episode(start_s, beats, frequency_hz, stretch, seed, tuple(float(x) for x in p))

    pulse_s = 0.15

    @property
    def beat_times(self) -> list[float]:
        first = self.start_s + self.pulse_s
        return [first + float(x) for x in np.concatenate(([0.0], np.cumsum(self.periods[:-1])))]

    @property
    def end_s(self) -> float:
        return self.beat_times[-1] + self.periods[-1]

    def velocity(self, t: FloatArray) -> FloatArray:
        """Limb angular velocity (unit amplitude) of this episode at times t."""
        w = np.zeros_like(t)
        m = (t >= self.start_s) & (t < self.start_s + self.pulse_s)
        w[m] += self.stretch * np.sin(np.pi * (t[m] - self.start_s) / self.pulse_s)
        for bt, p in zip(self.beat_times, self.periods, strict=True):
            pf = 0.45 * p
            a = (t >= bt) & (t < bt + pf)
            w[a] -= np.sin(np.pi * (t[a] - bt) / pf)
            b = (t >= bt + pf) & (t < bt + p)
            w[b] += 0.8 * np.sin(np.pi * (t[b] - bt - pf) / (p - pf))
        return w

    def bursts(self, t: FloatArray) -> FloatArray:
        """EMG burst envelope (0..1): one ~70 ms burst at each contraction."""
        env = np.zeros_like(t)
        for bt in self.beat_times:
            a = (t >= bt - 0.03) & (t < bt + 0.04)
            env[a] = np.maximum(env[a], np.sin(np.pi * (t[a] - bt + 0.03) / 0.07))
        return env


class SimulatedBand:
    """Produces sample chunks of a band with scheduled clonus episodes, in any chunk sizes.

    `sensor` is "imu6" (acc xyz m/s^2, gyr xyz deg/s), "acc3" or "emg" (one channel, mV).
    """

    def __init__(
        self, sensor: str, fs: float, amplitude: float = 60.0, noise: float = 2.0, seed: int = 0
    ) -> None:
        self.sensor = sensor
        self.fs = fs
        self.amplitude = amplitude
        self.noise = noise
        self.episodes: list[Episode] = []
        self.rotation = Rotation.random(random_state=seed)
        self._rng = np.random.default_rng(seed + 1)
        self._n = 0
        self.n_channels = {"imu6": 6, "acc3": 3}.get(sensor, 1)

    def add(self, episode: Episode) -> None:
        self.episodes.append(episode)
        self.episodes.sort(key=lambda e: e.start_s)

    def skip(self, n: int) -> None:
        """Let n samples pass unseen (a band keeps its clock running while unheard)."""
        self._n += max(0, n)

    @property
    def samples(self) -> int:
        return self._n

    def next_chunk(self, n: int) -> tuple[FloatArray, FloatArray]:
        """The next n samples: (t, x)."""
        t = (self._n + np.arange(n)) / self.fs
        self._n += n
        # Episodes that are over are dropped, so the cost of a chunk does not grow with
        # the hours a band has run (episodes are kept in start order).
        while self.episodes and self.episodes[0].end_s + 1 < t[0]:
            self.episodes.pop(0)
        live = []
        for e in self.episodes:
            if e.start_s - 1 > t[-1]:
                break
            if e.end_s + 1 >= t[0]:
                live.append(e)
        rng = self._rng
        if self.sensor == "emg":
            env = sum((e.bursts(t) for e in live), np.zeros(n))
            x = (
                0.01 * rng.normal(size=n)
                + 0.02 * np.sin(2 * np.pi * 50 * t)
                + self.amplitude / 60.0 * env * rng.normal(size=n)
            )
            return t, x[:, None]
        w = self.amplitude * sum((e.velocity(t) for e in live), np.zeros(n))
        limb = np.column_stack([w, 0.15 * w, np.zeros(n)])
        gyro = self.rotation.apply(limb) + rng.normal(0, self.noise, size=(n, 3))
        # Tangential acceleration of a sensor ~10 cm from the joint, plus gravity.
        alpha = np.gradient(np.deg2rad(w), 1.0 / self.fs) * 0.1 if n > 1 else np.zeros(n)
        acc_limb = np.column_stack([np.zeros(n), alpha, np.full(n, 9.81)])
        acc = self.rotation.apply(acc_limb) + rng.normal(0, 0.05, size=(n, 3))
        if self.sensor == "acc3":
            return t, acc
        return t, np.hstack([acc, gyro])


class SimulatedSource:
    """A virtual band producing IMU or EMG in real time, with scheduled or random episodes."""

    def __init__(self, cfg: SimulatedConfig, speed: float = 1.0) -> None:
        self.cfg = cfg
        self.sensor: str = cfg.sensor
        self.fs = cfg.fs_hz
        self.speed = speed
        self.band = SimulatedBand(cfg.sensor, cfg.fs_hz, cfg.amplitude, cfg.noise, cfg.seed)
        self.n_channels = self.band.n_channels
        for i, ep in enumerate(cfg.episodes):
            self.band.add(Episode.make(ep.at_s, ep.beats, ep.frequency_hz, seed=cfg.seed + i))
        self._rng = np.random.default_rng(cfg.seed + 7)
        self._next_random = self._draw_random(0.0)

    def _draw_random(self, now: float) -> float | None:
        if self.cfg.random_every_s is None:
            return None
        return now + float(self._rng.exponential(self.cfg.random_every_s)) + 2.0

    def _maybe_add_random(self, t_end: float) -> None:
        while self._next_random is not None and self._next_random < t_end + 5.0:
            beats = int(self._rng.choice([3, 4, 5, 8, 12, 20]))
            freq = float(self._rng.uniform(4.5, 7.5))
            self.band.add(
                Episode.make(self._next_random, beats, freq, seed=int(self._rng.integers(1 << 30)))
            )
            self._next_random = self._draw_random(self._next_random + beats / freq + 2.0)

    async def stream(self) -> AsyncIterator[SourceItem]:
        yield LinkStatus(connected=True, battery_pct=100, detail="simulated")
        start = time.monotonic()
        produced = 0
        while True:
            t, x = self.band.next_chunk(self.cfg.chunk)
            produced += self.cfg.chunk
            if self.cfg.stall_at_s is not None and t[0] >= self.cfg.stall_at_s:
                # A band whose link claims to be up but that sends nothing (a dead
                # bluetoothd looks like this to bleak): the pipeline must notice.
                await asyncio.Event().wait()
            self._maybe_add_random(float(t[-1]))
            due = start + produced / self.fs / self.speed
            # Behind schedule (a loaded machine), it still yields to the loop at every chunk,
            # so catching up never starves the other sensors, the publisher and health.
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            yield SampleChunk(t, x, time.monotonic())
