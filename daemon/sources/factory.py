"""The one place that turns a sensor's config into its source."""

from __future__ import annotations

from clonusd.daemon.config import ReplaySource as ReplayConfig
from clonusd.daemon.config import SensorConfig
from clonusd.daemon.config import SimulatedSource as SimulatedConfig
from clonusd.daemon.sources.base import Source
from clonusd.daemon.sources.replay import ReplaySource
from clonusd.daemon.sources.simulation import SimulatedSource


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
