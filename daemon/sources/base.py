"""Where samples come from: one interface for simulated, replayed and (later) BLE bands.

A source is an async stream of `SampleChunk` (timestamped samples, as one notification
delivers them) and `LinkStatus` (connection, battery) items. The pipeline does not care
which kind it is, as bleak's backends sit behind one client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from clonusd.daemon.config import ReplaySource as ReplayConfig
from clonusd.daemon.config import SensorConfig
from clonusd.daemon.config import SimulatedSource as SimulatedConfig
from clonusd.daemon.sources.recording import load_recording
from clonusd.daemon.sources.simulation import Episode, SimulatedBand


@dataclass(frozen=True)
class SampleChunk:
    t: NDArray[np.float64]  # sensor time of each sample, s
    x: NDArray[np.float64]  # (n, channels)
    received: float  # host monotonic time of arrival


@dataclass(frozen=True)
class LinkStatus:
    connected: bool
    battery_pct: int | None = None
    detail: str = ""


SourceItem = SampleChunk | LinkStatus


class Source(Protocol):
    sensor: str
    fs: float
    n_channels: int

    def stream(self) -> AsyncIterator[SourceItem]: ...


def malformed_packets(source: Source) -> int:
    """Notifications the source's parser rejected (0 for sources without one)."""
    return int(getattr(source, "malformed", 0))


def reconnects(source: Source) -> int:
    """Times the source's link was lost and set up again (0 for sources without one)."""
    return int(getattr(source, "reconnects", 0))


def force_reconnect(source: Source, reason: str) -> bool:
    """Ask a source with a link to tear it down and reconnect; False if it has none."""
    hook = getattr(source, "force_reconnect", None)
    if hook is None:
        return False
    hook(reason)
    return True


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
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield SampleChunk(t, x, time.monotonic())


class ReplaySource:
    """A recording played at real-time speed (or faster), through the live path."""

    def __init__(self, cfg: ReplayConfig, sensor_cfg: SensorConfig) -> None:
        self.cfg = cfg
        self.rec = load_recording(cfg.file, site=sensor_cfg.site)
        self.sensor = self.rec.sensor
        self.fs = self.rec.fs
        self.n_channels = self.rec.x.shape[1]

    async def stream(self) -> AsyncIterator[SourceItem]:
        yield LinkStatus(connected=True, detail=f"replay {self.cfg.file.name}")
        rec, step = self.rec, self.cfg.chunk
        offset = 0.0
        while True:
            start = time.monotonic()
            t0 = float(rec.t[0])
            for s in range(0, rec.t.size, step):
                t = rec.t[s : s + step]
                due = start + (float(t[-1]) - t0) / self.cfg.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                yield SampleChunk(t + offset, rec.x[s : s + step], time.monotonic())
            if not self.cfg.loop:
                yield LinkStatus(connected=False, detail="replay finished")
                return
            offset += float(rec.t[-1] - t0) + 1.0 / self.fs


def make_source(cfg: SensorConfig, speed: float = 1.0) -> Source:
    src = cfg.source
    if isinstance(src, SimulatedConfig):
        return SimulatedSource(src, speed)
    if isinstance(src, ReplayConfig):
        return ReplaySource(src, cfg)
    from clonusd.daemon.sources.ble.link import (
        BleSource,  # bleak is only imported when a band is configured
    )

    return BleSource(src)
