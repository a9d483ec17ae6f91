"""Statistics on the small arrays of the beat stage (a few to a hundred values).

`np.median` costs about 20 µs a call whatever the size, and the beat stage takes medians
at every hop and lobe; the standard library's median of a short Python list gives the
same value in a few µs.
"""

from __future__ import annotations

import statistics
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable

import numpy as np


def median(values: np.ndarray | Iterable[float]) -> float:
    """The median, equal to `float(np.median(values))`; raises ValueError when empty."""
    items = values.ravel().tolist() if isinstance(values, np.ndarray) else list(values)
    return float(statistics.median(items))


class RunningMedian:
    """The median of the last `capacity` values pushed, equal to `median` of them.

    The noise floor takes a value at every hop; keeping the window sorted as values come
    and go costs far less than sorting it again each time."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._window: deque[float] = deque()
        self._sorted: list[float] = []

    def push(self, value: float) -> float:
        """Add `value` (dropping the oldest once `capacity` are held); the median now."""
        if len(self._window) == self.capacity:
            del self._sorted[bisect_left(self._sorted, self._window.popleft())]
        self._window.append(value)
        insort(self._sorted, value)
        held, mid = len(self._sorted), len(self._sorted) // 2
        if held % 2:
            return self._sorted[mid]
        return (self._sorted[mid - 1] + self._sorted[mid]) / 2
