"""Sensor front-ends: raw samples in, one orientation-free oscillation signal out.

Motion front-ends turn 3-axis gyroscope or accelerometer samples into one band-passed,
orientation-free signal whose cycles are the limb's contractions (counted by
`dsp.lobes`); the EMG front-end turns EMG channels into the muscle's amplitude envelope,
whose peaks are the contractions' bursts (counted by `dsp.bursts`). Each is causal,
keeps its state, and is exactly chunk-invariant.
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

    `osc` is the signal beats are counted on (motion: the band-passed oscillation; EMG:
    the amplitude envelope) and `index` the position, within the input chunk, of the
    sample each output sample came from. Motion can also give `along`: the raw motion
    along the axis `osc` was projected on at that sample, before the band-pass took out
    the slow movement of a stretch.
    """

    osc: FloatArray
    index: np.ndarray
    along: FloatArray | None = None


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
        self._w_hop = self.alpha ** np.arange(self.hop - 1, -1, -1)  # a whole hop's weights
        self._decay_hop = self.alpha**self.hop

    def process(
        self, x: FloatArray, raw: FloatArray | None = None
    ) -> tuple[FloatArray, FloatArray | None]:
        """`x` projected on the axis, and `raw` (the same samples before the band-pass),
        when given, projected on the same axis, sample by sample."""
        takes: list[int] = []
        axes: list[FloatArray] = []
        start = 0
        n = x.shape[0]
        while start < n:
            whole = (n - start) // self.hop
            if self._count == 0 and whole >= 2:
                # A replay's long chunk: its whole hops in one pass (same arithmetic).
                axes += self._whole_hops(x[start : start + whole * self.hop])
                takes += [self.hop] * whole
                start += whole * self.hop
                continue
            take = min(self.hop - self._count, n - start)
            block = x[start : start + take]
            takes.append(take)
            axes.append(self.axis)
            # Exponentially weighted covariance over the block, weights newest-heaviest.
            if take == self.hop:
                w, decay = self._w_hop, self._decay_hop
            else:
                w, decay = self.alpha ** np.arange(take - 1, -1, -1), self.alpha**take
            self.cov = decay * self.cov + (1 - self.alpha) * (block.T * w) @ block
            self._count += take
            start += take
            if self._count == self.hop:
                self._count = 0
                _, vecs = np.linalg.eigh(self.cov)
                v = vecs[:, -1]
                self.axis = v if float(v @ self.axis) >= 0 else -v
        if not takes:
            return np.empty(0), None if raw is None else np.empty(0)
        # On the axis each block was projected on, in one pass each.
        per_sample = np.repeat(np.array(axes), takes, axis=0)
        along = None if raw is None else np.einsum("ij,ij->i", raw, per_sample)
        return np.einsum("ij,ij->i", x, per_sample), along

    def _whole_hops(self, x: FloatArray) -> list[FloatArray]:
        """The axis each of the whole hops in `x` is projected on, updating the
        covariance and the axis after each hop as `process` does one hop at a time: the
        hops' weighted products and the eigenvectors are computed for all at once, which
        is what a replay's long chunks spend most of their time on otherwise."""
        blocks = x.reshape(-1, self.hop, x.shape[1])
        products = (1 - self.alpha) * (blocks.transpose(0, 2, 1) * self._w_hop) @ blocks
        covs = np.empty_like(products)
        cov = self.cov
        for i, product in enumerate(products):
            cov = self._decay_hop * cov + product
            covs[i] = cov
        self.cov = cov
        axes = [self.axis]
        for v in np.linalg.eigh(covs)[1][:, :, -1]:
            axes.append(v if float(v @ axes[-1]) >= 0 else -v)
        self.axis = axes.pop()
        return axes

    def reset(self) -> None:
        self.cov = np.eye(3) * 1e-12
        self._count = 0


class MotionFrontEnd:
    """Gyroscope or accelerometer (3 axes) to the dominant-axis clonus-band signal; with
    `along`, also the raw motion along that axis (`FrontEndOutput.along`)."""

    def __init__(self, fs: float, band_hz: tuple[float, float], along: bool = False) -> None:
        self.fs = fs
        self.along = along
        self.band = StreamingSOS(bandpass_sos(band_hz[0], band_hz[1], fs), n_channels=3)
        self.projector = PrincipalAxisProjector(fs)

    def process(self, x: FloatArray) -> FrontEndOutput:
        y3 = self.band.process(x)
        osc, along = self.projector.process(y3, x if self.along else None)
        return FrontEndOutput(osc=osc, index=np.arange(x.shape[0]), along=along)

    def reset(self) -> None:
        self.band.reset()
        self.projector.reset()


class EmgFrontEnd:
    """Surface EMG (one or more channels) to the amplitude envelope its bursts are found on.

    Band-pass 20 Hz to 0.45*fs (SENIAM/De Luca), mains notches, square, 12 Hz low-pass
    (smooths a burst's noise-like carrier into one hump, yet keeps 9 Hz bursts apart), sum
    over channels, decimate to about 200 Hz, square root: the root-mean-square amplitude,
    in the recording's unit, given as the output's `osc`.
    """

    target_rate = 200.0
    smooth_hz = 12.0

    def __init__(
        self,
        fs: float,
        n_channels: int = 1,
        mains_hz: tuple[float, ...] = (50.0, 60.0),
    ) -> None:
        self.fs = fs
        self.n_channels = n_channels
        hp = bandpass_sos(20.0, min(450.0, 0.45 * fs), fs)
        notches = [notch_sos(f, fs) for f in mains_hz if f < 0.45 * fs]
        self.pre = StreamingSOS(np.vstack([hp, *notches]), n_channels)
        self.env = StreamingSOS(lowpass_sos(self.smooth_hz, fs), n_channels)
        self.q = max(1, round(fs / self.target_rate))
        self.out_fs = fs / self.q
        self._n = 0  # input samples seen
        self._last = 0.0  # the newest envelope value

    def process(self, x: FloatArray) -> FrontEndOutput:
        x = x.reshape(x.shape[0], self.n_channels)
        power = self.env.process(self.pre.process(x) ** 2).sum(axis=1)
        keep = self._kept(x.shape[0])
        envelope = np.sqrt(np.maximum(power[keep], 0.0))
        if envelope.size:
            self._last = float(envelope[-1])
        return FrontEndOutput(osc=envelope, index=keep)

    def hold(self, n: int) -> FrontEndOutput:
        """Output for `n` samples lost in a short gap: the envelope held at its last value.

        Nothing is known of the muscle meanwhile. Samples filled in by interpolation would
        be near silence, which would split a burst the gap falls in into two."""
        keep = self._kept(n)
        return FrontEndOutput(osc=np.full(keep.size, self._last), index=keep)

    def _kept(self, n: int) -> np.ndarray:
        """Which of the next `n` input samples the decimation keeps."""
        keep = np.flatnonzero((self._n + np.arange(n)) % self.q == 0)
        self._n += n
        return keep

    def reset(self) -> None:
        self.pre.reset()
        self.env.reset()
