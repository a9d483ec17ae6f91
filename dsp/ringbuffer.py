"""A fixed-capacity ring buffer of multichannel samples: the last seconds of a signal."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class RingBuffer:
    """Holds the newest `capacity` rows of an (n, n_channels) float stream.

    Memory is allocated once, so a long-running daemon does not grow; `latest` returns a
    copy in time order, for context windows and event snippets.
    """

    def __init__(self, capacity: int, n_channels: int = 1) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.n_channels = n_channels
        self._data = np.zeros((capacity, n_channels), dtype=np.float64)
        self._head = 0  # index of the next write
        self.total = 0  # rows ever pushed

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    def push(self, rows: NDArray[np.float64]) -> None:
        """Append rows of shape (n,) (one channel) or (n, n_channels)."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, self.n_channels)
        n = rows.shape[0]
        if n == 0:
            return
        if n >= self.capacity:
            self._data[:] = rows[-self.capacity :]
            self._head = 0
        else:
            end = self._head + n
            if end <= self.capacity:
                self._data[self._head : end] = rows
            else:
                split = self.capacity - self._head
                self._data[self._head :] = rows[:split]
                self._data[: n - split] = rows[split:]
        self._head = (self._head + n) % self.capacity
        self.total += n

    def back(self, k: int) -> NDArray[np.float64]:
        """The row pushed `k` rows ago (1 is the newest), without copying the rest."""
        if not 1 <= k <= len(self):
            raise IndexError(f"{k} rows back: {len(self)} held")
        row: NDArray[np.float64] = self._data[(self._head - k) % self.capacity]
        return row

    def between(self, first: int, end: int) -> NDArray[np.float64]:
        """Rows at stream positions `first` to `end - 1` (the k-th row ever pushed is at
        position k), from the oldest still held if `first` is older; oldest first."""
        first = max(first, self.total - len(self))
        return self.latest(self.total - first)[: max(0, end - first)]

    def latest(self, n: int | None = None) -> NDArray[np.float64]:
        """The newest `n` rows (all held rows by default), oldest first."""
        held = len(self)
        n = held if n is None else min(n, held)
        if n == 0:
            return np.empty((0, self.n_channels))
        idx = (self._head - n + np.arange(n)) % self.capacity
        return self._data[idx]
