"""Streaming filters: chunked output must equal one call on the whole signal."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from clonusd.dsp.filters import StreamingSOS, bandpass_sos
from clonusd.dsp.frontends import PrincipalAxisProjector
from clonusd.dsp.ringbuffer import RingBuffer
from clonusd.dsp.stats import RunningMedian, median


def _split(n: int, sizes: list[int]) -> list[slice]:
    out, start, i = [], 0, 0
    while start < n:
        step = sizes[i % len(sizes)]
        out.append(slice(start, min(n, start + step)))
        start += step
        i += 1
    return out


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
    channels=st.integers(min_value=1, max_value=3),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_chunked_filtering_equals_whole_signal(sizes: list[int], channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(500, channels)) * 10 + rng.normal(size=channels) * 50
    sos = bandpass_sos(2.5, 10.0, 200.0)
    whole = StreamingSOS(sos, channels).process(x)
    chunked_filter = StreamingSOS(sos, channels)
    chunked = np.vstack([chunked_filter.process(x[s]) for s in _split(len(x), sizes)])
    np.testing.assert_allclose(chunked, whole, rtol=1e-10, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_the_dominant_axis_does_not_depend_on_chunks(sizes: list[int], seed: int) -> None:
    """A long chunk takes its whole hops in one pass: it must give, bit for bit, what the
    same samples fed one hop at a time give, and any chunking must agree closely."""
    rng = np.random.default_rng(seed)
    # An oscillation whose axis turns half-way, under noise: the axis must follow it.
    t = np.arange(1200) / 200.0
    swing = np.sin(2 * np.pi * 6.0 * t)[:, None]
    axis = np.where(t[:, None] < 3.0, [1.0, 0.2, 0.0], [0.0, -0.3, 1.0])
    x = 20.0 * swing * axis + rng.normal(size=(1200, 3))
    whole, _ = PrincipalAxisProjector(200.0).process(x)
    stepwise = PrincipalAxisProjector(200.0)
    hop = stepwise.hop
    by_hop = np.concatenate([stepwise.process(x[i : i + hop])[0] for i in range(0, 1200, hop)])
    np.testing.assert_array_equal(whole, by_hop)
    chunked_projector = PrincipalAxisProjector(200.0)
    chunked = np.concatenate([chunked_projector.process(x[s])[0] for s in _split(len(x), sizes)])
    np.testing.assert_allclose(chunked, whole, rtol=1e-9, atol=1e-9)
    # After the turn the projection carries the oscillation, not just the noise.
    assert np.std(whole[-200:]) > 10.0


def test_matches_scipy_with_steady_state_start() -> None:
    rng = np.random.default_rng(1)
    x = 9.81 + rng.normal(size=1000)
    sos = bandpass_sos(2.5, 10.0, 100.0)
    ours = StreamingSOS(sos).process(x)
    ref, _ = signal.sosfilt(sos, x, zi=signal.sosfilt_zi(sos) * x[0])
    np.testing.assert_allclose(ours, ref)
    # A constant offset (gravity) does not ring through the band-pass at start-up.
    assert abs(ours[:20]).max() < 5 * abs(ours[200:]).std()


def test_ring_buffer_keeps_the_newest_rows_in_order() -> None:
    rb = RingBuffer(5, 2)
    rows = np.arange(24, dtype=float).reshape(12, 2)
    rb.push(rows[:3])
    rb.push(rows[3:7])
    np.testing.assert_array_equal(rb.latest(), rows[2:7])
    rb.push(rows[7:12])
    np.testing.assert_array_equal(rb.latest(), rows[7:12])
    np.testing.assert_array_equal(rb.latest(2), rows[10:12])
    assert len(rb) == 5 and rb.total == 12
    # By stream position (row k is the k-th pushed): from the oldest held, to before `end`.
    np.testing.assert_array_equal(rb.between(8, 10), rows[8:10])
    np.testing.assert_array_equal(rb.between(0, 9), rows[7:9])
    assert rb.between(10, 9).shape == (0, 2)
    rb.push(np.arange(40.0).reshape(20, 2))  # longer than capacity
    np.testing.assert_array_equal(rb.latest(), np.arange(40.0).reshape(20, 2)[-5:])


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    capacity=st.integers(min_value=1, max_value=40),
)
def test_the_running_median_is_the_median_of_the_last_values(
    values: list[float], capacity: int
) -> None:
    """The noise floor's window, kept sorted as values come and go: at every push, the
    same figure as the median of the last `capacity` values, ties and repeats included."""
    window = RunningMedian(capacity)
    rounded = [round(v, 1) for v in values]  # repeats, so ties are exercised
    for i, v in enumerate(rounded):
        assert window.push(v) == median(rounded[max(0, i + 1 - capacity) : i + 1])
