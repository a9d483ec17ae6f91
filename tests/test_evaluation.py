"""The interval arithmetic behind `clonusd evaluate`, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np

from clonusd.daemon.commands.evaluate import garwood, quantile_ci, wilson


def test_wilson_interval_matches_the_closed_form() -> None:
    k, n, z = 93, 100, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson(k, n) or (0.0, 0.0)
    assert math.isclose(low, centre - half, rel_tol=1e-9)
    assert math.isclose(high, centre + half, rel_tol=1e-9)
    assert wilson(0, 0) is None


def test_garwood_interval_for_no_events_and_for_some() -> None:
    low, high = garwood(0, 1.0) or (1.0, 0.0)
    assert low == 0.0 and math.isclose(high, 3.6889, abs_tol=1e-3)  # -ln(0.025)
    low, high = garwood(10, 2.0) or (0.0, 0.0)
    assert math.isclose(low, 4.7954 / 2, abs_tol=1e-3)
    assert math.isclose(high, 18.3904 / 2, abs_tol=1e-3)


def test_quantile_interval_brackets_the_quantile_and_needs_enough_values() -> None:
    rng = np.random.default_rng(3)
    values = list(rng.uniform(0, 1, size=400))
    low, high = quantile_ci(values, 0.5) or (1.0, 0.0)
    assert low < float(np.median(values)) < high and high - low < 0.15
    # 20 values cannot bound a 95th percentile from above: 0.95^20 > 0.025.
    assert quantile_ci(values[:20], 0.95) is None
