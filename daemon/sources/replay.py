"""A recording played through the live path, at real-time speed or faster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from clonusd.daemon.config import ReplaySource as ReplayConfig
from clonusd.daemon.config import SensorConfig
from clonusd.daemon.sources.base import LinkStatus, SampleChunk, SourceItem
from clonusd.daemon.sources.recording import load_recording


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
                await asyncio.sleep(max(0.0, due - time.monotonic()))  # yields even when behind
                yield SampleChunk(t + offset, rec.x[s : s + step], time.monotonic())
            if not self.cfg.loop:
                yield LinkStatus(connected=False, detail="replay finished")
                return
            offset += float(rec.t[-1] - t0) + 1.0 / self.fs
