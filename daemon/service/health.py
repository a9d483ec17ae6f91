"""What a sensor's sample times say about its signal: the band's rate and what was lost.

Both are read off the sample clock (the band's own where it has one), not off arrival
times: a lost notification leaves a hole in the times, and the samples that would have
filled it are the loss. A link outage is not packet loss (it is reported as the link
being down), so the reference is dropped when the link goes down.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.typing import NDArray


class SignalMeter:
    """Samples delivered and lost, and the band's rate over the last `window_s`."""

    window_s = 5.0

    def __init__(self, fs: float) -> None:
        self.fs = float(fs)
        self.delivered = 0
        self.lost = 0
        self.gaps = 0  # places where samples went missing while the link was up
        self._last_t: float | None = None
        # (sample time of a chunk's last sample, sample periods since the previous chunk's)
        self._window: deque[tuple[float, int]] = deque()

    def add(self, t: NDArray[np.float64]) -> None:
        if t.size == 0:
            return
        prev = self._last_t
        steps = np.diff(t if prev is None else np.concatenate(([prev], t))) * self.fs
        holes = steps[steps >= 1.5]
        missing = int(np.sum(np.round(holes))) - holes.size if holes.size else 0
        self.gaps += int(holes.size)
        self.lost += missing
        self.delivered += int(t.size)
        self._last_t = float(t[-1])
        periods = int(t.size if prev is not None else t.size - 1) + missing
        self._window.append((self._last_t, periods))
        while len(self._window) > 2 and self._last_t - self._window[0][0] > self.window_s:
            self._window.popleft()

    def link_down(self) -> None:
        """The link is gone: the outage to come is not loss, nor part of the rate."""
        self._last_t = None
        self._window.clear()

    @property
    def loss(self) -> float:
        """Share of the band's samples that never arrived while the link was up."""
        expected = self.delivered + self.lost
        return self.lost / expected if expected else 0.0

    def rate_hz(self) -> float | None:
        """The band's sample rate over the window (lost samples included), if measurable."""
        if len(self._window) < 2:
            return None
        span = self._window[-1][0] - self._window[0][0]
        periods = sum(p for _, p in list(self._window)[1:])
        return periods / span if span > 0 else None
