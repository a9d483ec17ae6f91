"""Causal IIR filters that carry their state between calls.

Feeding a signal in chunks of any size gives the same output as one call on the whole
signal, to rounding (about 1e-15 of its size): the live path receives one BLE
notification at a time, replay whole files.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal

FloatArray = NDArray[np.float64]


def bandpass_sos(low_hz: float, high_hz: float, fs: float, order: int = 2) -> FloatArray:
    """Butterworth band-pass in second-order sections; `order` 2 gives 4 poles.

    The upper edge is clipped below Nyquist so a low-rate band still gets a valid filter.
    """
    nyq = fs / 2.0
    high = min(high_hz, 0.9 * nyq)
    if not 0 < low_hz < high:
        raise ValueError(f"band {low_hz}-{high_hz} Hz is not valid at fs={fs} Hz")
    return np.asarray(signal.butter(order, [low_hz, high], btype="bandpass", fs=fs, output="sos"))


def lowpass_sos(cutoff_hz: float, fs: float, order: int = 2) -> FloatArray:
    """Butterworth low-pass in second-order sections, cutoff clipped below Nyquist."""
    cutoff = min(cutoff_hz, 0.45 * fs)
    return np.asarray(signal.butter(order, cutoff, btype="lowpass", fs=fs, output="sos"))


def notch_sos(freq_hz: float, fs: float, q: float = 30.0) -> FloatArray:
    """A mains-hum notch as one second-order section."""
    b, a = signal.iirnotch(freq_hz, q, fs=fs)
    return np.asarray(signal.tf2sos(b, a))


class StreamingSOS:
    """An SOS filter over one or more channels whose state survives between calls.

    The state starts as the steady state for the first sample, so a DC offset (gravity on
    an accelerometer) does not ring through a band-pass at start-up or after a reset.
    """

    def __init__(self, sos: FloatArray, n_channels: int = 1) -> None:
        self.sos = np.ascontiguousarray(sos, dtype=np.float64)
        self.n_channels = n_channels
        self._zi_unit = signal.sosfilt_zi(self.sos)  # (n_sections, 2) for a unit step
        self._zi: FloatArray | None = None
        self._steps: dict[int, FloatArray] = {}  # chunk length -> `_step_matrix`

    def reset(self) -> None:
        """Forget the state; the next sample re-initialises it (after a gap or saturation)."""
        self._zi = None

    def process(self, x: FloatArray) -> FloatArray:
        """Filter `x` of shape (n,) or (n, n_channels) along time; returns the same shape."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[0] == 0:
            return x.copy()
        two_d = x.reshape(x.shape[0], -1)
        if self._zi is None:
            self._zi = self._zi_unit[:, :, None] * two_d[0][None, None, :]
        if two_d.shape[0] <= self.small_chunk:
            return self._process_small(two_d).reshape(x.shape)
        y, self._zi = signal.sosfilt(self.sos, two_d, axis=0, zi=self._zi)
        return np.asarray(y).reshape(x.shape)

    # A live band hands over a few samples at a time (a BLE notification, or the
    # detector's 50 ms hold). sosfilt's set-up costs far more than filtering them, so
    # chunks up to this long go through one precomputed matrix instead.
    small_chunk = 32

    def _process_small(self, x: FloatArray) -> FloatArray:
        """The filter over `n` samples as one linear map of (its state, the samples) to
        (the outputs, the new state): the same filter, up to rounding (about 1e-15 of the
        signal), at the cost of one small matrix product."""
        zi = self._zi
        assert zi is not None
        n, sections = x.shape[0], zi.shape[0]
        step = self._steps.get(n)
        if step is None:
            step = self._steps[n] = self._step_matrix(n)
        out = step @ np.concatenate((zi.reshape(2 * sections, -1), x))
        self._zi = out[n:].reshape(zi.shape)
        return out[:n]

    def _step_matrix(self, n: int) -> FloatArray:
        """[[outputs from state, outputs from input], [state from state, state from
        input]] for `n` samples, found by running sosfilt on unit states and impulses."""
        sections = self.sos.shape[0]
        width = 2 * sections + n
        step = np.empty((n + 2 * sections, width))
        for j in range(width):
            zi = np.zeros(2 * sections)
            u = np.zeros(n)
            if j < 2 * sections:
                zi[j] = 1.0
            else:
                u[j - 2 * sections] = 1.0
            y, zf = signal.sosfilt(self.sos, u, zi=zi.reshape(sections, 2))
            step[:n, j] = y
            step[n:, j] = np.asarray(zf).reshape(-1)
        return step
