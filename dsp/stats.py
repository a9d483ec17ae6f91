"""Statistics on the small arrays of the beat stage (a few to a hundred values).

`np.median` costs about 20 µs a call whatever the size, and the beat stage takes medians
at every hop and lobe; sorting a short Python list gives the same value in a few µs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def median(values: np.ndarray | Iterable[float]) -> float:
    """The median, equal to `float(np.median(values))`; raises ValueError when empty."""
    items = sorted(values.ravel().tolist() if isinstance(values, np.ndarray) else values)
    n = len(items)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return float(items[mid]) if n % 2 else (items[mid - 1] + items[mid]) / 2.0
