"""Causal IIR filters that carry their state between calls.

Feeding a signal in chunks of any size gives the same output as one call on the whole
signal: the live path receives one BLE notification at a time, replay whole files.
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
        self._coeffs = [tuple(float(c) for c in row) for row in self.sos]

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

    small_chunk = 8

    def _process_small(self, x: FloatArray) -> FloatArray:
        """Direct form II transposed, as scipy's sosfilt computes it, without its per-call
        set-up: for the one-to-a-few samples of a single BLE notification that set-up costs
        more than the arithmetic."""
        zi = self._zi
        assert zi is not None
        y = np.empty_like(x)
        for n in range(x.shape[0]):
            cur = x[n]
            for k, (b0, b1, b2, _a0, a1, a2) in enumerate(self._coeffs):
                new = b0 * cur + zi[k, 0]
                zi[k, 0] = b1 * cur - a1 * new + zi[k, 1]
                zi[k, 1] = b2 * cur - a2 * new
                cur = new
            y[n] = cur
        return y
