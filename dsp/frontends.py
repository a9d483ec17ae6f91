"""Sensor front-ends: raw samples in, one orientation-free oscillation signal out.

Every front-end turns its input (3-axis gyro or accelerometer, or EMG channels) into a
single band-passed signal whose cycles are the limb's contractions, so one beat stage
serves every sensor. Each is causal, keeps its state, and is exactly chunk-invariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonusd.dsp.filters import (
    FloatArray,
    StreamingSOS,
    bandpass_sos,
    lowpass_sos,
    notch_sos,
)


@dataclass(frozen=True)
class FrontEndOutput:
    """One chunk of front-end output at the beat-stage rate.

    `osc` is the band-passed oscillation and `index` the position, within the input
    chunk, of the sample each output sample came from.
    """

    osc: FloatArray
    index: np.ndarray
    envelope: FloatArray | None = None  # EMG: the burst envelope `osc` was band-passed from


class PrincipalAxisProjector:
    """Projects 3-axis band-passed motion onto its dominant axis.

    The band's orientation on the limb is unknown, so the axis is the first principal
    component of a running covariance (time constant `tau_s`), recomputed every `hop`
    samples at fixed sample indices (which keeps the output chunk-invariant), with its
    sign kept continuous so that cycles do not flip polarity.
    """

    def __init__(self, fs: float, tau_s: float = 1.5, hop: int | None = None) -> None:
        self.alpha = float(np.exp(-1.0 / (tau_s * fs)))
        self.hop = hop or max(1, round(fs / 20))
        self.cov = np.eye(3) * 1e-12
        self.axis = np.array([1.0, 0.0, 0.0])
        self._count = 0  # samples since the last axis update

    def process(self, x: FloatArray) -> FloatArray:
        out = np.empty(x.shape[0])
        start = 0
        n = x.shape[0]
        while start < n:
            take = min(self.hop - self._count, n - start)
            block = x[start : start + take]
            out[start : start + take] = block @ self.axis
            # Exponentially weighted covariance over the block, weights newest-heaviest.
            w = self.alpha ** np.arange(take - 1, -1, -1)
            self.cov = self.alpha**take * self.cov + (1 - self.alpha) * (block.T * w) @ block
            self._count += take
            start += take
            if self._count == self.hop:
                self._count = 0
                _, vecs = np.linalg.eigh(self.cov)
                v = vecs[:, -1]
                self.axis = v if float(v @ self.axis) >= 0 else -v
        return out

    def reset(self) -> None:
        self.cov = np.eye(3) * 1e-12
        self._count = 0


class MotionFrontEnd:
    """Gyroscope or accelerometer (3 axes) to the dominant-axis clonus-band signal."""

    def __init__(self, fs: float, band_hz: tuple[float, float]) -> None:
        self.fs = fs
        self.band = StreamingSOS(bandpass_sos(band_hz[0], band_hz[1], fs), n_channels=3)
        self.projector = PrincipalAxisProjector(fs)

    def process(self, x: FloatArray) -> FrontEndOutput:
        y3 = self.band.process(x)
        osc = self.projector.process(y3)
        return FrontEndOutput(osc=osc, index=np.arange(x.shape[0]))

    def reset(self) -> None:
        self.band.reset()
        self.projector.reset()


class EmgFrontEnd:
    """Surface EMG (one or more channels) to the clonus-band oscillation of its envelope.

    Band-pass 20 Hz to 0.45*fs (SENIAM/De Luca), mains notches, Teager-Kaiser energy,
    rectify, 20 Hz low-pass (fast enough to keep 5-9 Hz bursts apart), sum over channels,
    decimate to about 200 Hz, then the same clonus band-pass as the motion signals.
    """

    target_rate = 200.0

    def __init__(
        self,
        fs: float,
        band_hz: tuple[float, float],
        n_channels: int = 1,
        mains_hz: tuple[float, ...] = (50.0, 60.0),
    ) -> None:
        self.fs = fs
        self.n_channels = n_channels
        hp = bandpass_sos(20.0, min(450.0, 0.45 * fs), fs)
        notches = [notch_sos(f, fs) for f in mains_hz if f < 0.45 * fs]
        self.pre = StreamingSOS(np.vstack([hp, *notches]), n_channels)
        self.env = StreamingSOS(lowpass_sos(20.0, fs), n_channels)
        self.q = max(1, round(fs / self.target_rate))
        self.out_fs = fs / self.q
        self.band = StreamingSOS(bandpass_sos(band_hz[0], band_hz[1], self.out_fs), 1)
        self._tail = np.zeros((2, n_channels))  # last two pre-filtered samples, for TKEO
        self._n = 0  # input samples seen

    def process(self, x: FloatArray) -> FrontEndOutput:
        x = x.reshape(x.shape[0], self.n_channels)
        pre = self.pre.process(x)
        ext = np.vstack([self._tail, pre])
        # TKEO for the sample before each new one: x[n-1]^2 - x[n-2]*x[n].
        tk = ext[1:-1] ** 2 - ext[:-2] * ext[2:]
        self._tail = ext[-2:]
        env = self.env.process(np.abs(tk)).sum(axis=1)
        keep = np.flatnonzero((self._n + np.arange(x.shape[0])) % self.q == 0)
        self._n += x.shape[0]
        envelope = env[keep]
        osc = self.band.process(envelope)
        return FrontEndOutput(osc=osc, index=keep, envelope=envelope)

    def reset(self) -> None:
        self.pre.reset()
        self.env.reset()
        self.band.reset()
        self._tail = np.zeros((2, self.n_channels))
