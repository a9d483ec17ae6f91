"""The interface every source speaks: simulated, replayed and BLE bands alike.

A source is an async stream of `SampleChunk` (timestamped samples, as one notification
delivers them) and `LinkStatus` (connection, battery) items. The pipeline does not care
which kind it is, as bleak's backends sit behind one client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


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


def last_data_at(source: Source) -> float | None:
    """Host monotonic time the source last heard from its band, samples or not (None for
    sources that cannot tell)."""
    at = getattr(source, "last_data_at", None)
    return float(at) if at is not None else None


def force_reconnect(source: Source, reason: str) -> bool:
    """Ask a source with a link to tear it down and reconnect; False if it has none."""
    hook = getattr(source, "force_reconnect", None)
    if hook is None:
        return False
    hook(reason)
    return True
