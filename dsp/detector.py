"""The streaming clonus detector: timestamped samples in, episode events out.

    samples -> gap/NaN repair -> front-end -> half-cycles -> episode state machine

    motion: band-pass, orientation-free projection -> lobes (hysteresis against the
            noise floor, `dsp.lobes`)
    EMG:    amplitude envelope -> bursts and the troughs between them (`dsp.bursts`)

It is exactly chunk-invariant: every adaptive quantity (principal axis, noise floor,
threshold) changes only at fixed sample positions, so one BLE notification at a time
gives the same events as a whole file in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from clonusd.dsp.bursts import BurstTracker
from clonusd.dsp.episodes import EpisodeTracker, rhythm_swing
from clonusd.dsp.events import EpisodeEvent
from clonusd.dsp.filters import FloatArray
from clonusd.dsp.frontends import EmgFrontEnd, MotionFrontEnd
from clonusd.dsp.lobes import LobeTracker
from clonusd.dsp.ringbuffer import RingBuffer
from clonusd.dsp.sites import SENSORS, SiteParams
from clonusd.dsp.stats import RunningMedian
from clonusd.dsp.waveform import harmonic_ratio

CHANNELS = {"imu6": 6, "acc3": 3}


@dataclass
class DetectorStats:
    """Counters a health report needs: what came in and what had to be repaired."""

    samples: int = 0
    nan_rows: int = 0
    gaps: int = 0
    missing_samples: int = 0  # filled by interpolation
    long_gaps: int = 0  # too long to fill: the chain was ended and filters reset


class ClonusDetector:
    """One detector per sensor stream.

    `sensor` is "imu6" (columns acc_x..z, gyr_x..z), "acc3" (acc_x..z) or "emg" (one
    column per EMG channel). `fs` is the nominal sample rate; the sample times passed to
    `process` are used to find lost packets.
    """

    noise_k = 4.0  # lobe threshold in noise-floor RMS units
    floor_fraction = 0.35  # lobe threshold as a share of the onset amplitude floor
    max_fill_s = 0.5  # longer gaps are not interpolated
    # A filled-in stretch at least this long may be why a rhythm stopped (it then ends as
    # a signal gap, and does not hold off a fresh alarm once the signal is back).
    min_gap_s = 0.1
    # Beats before a gap up to this long count towards the threshold after it: three lost
    # 0.38 s Polar H10 frames in a row (1.75 s) must not split an episode into pieces.
    max_bridge_s = 2.0
    # Calls bringing fewer samples than this are held and run together: Python's cost per
    # call, not per sample, dominates 1-4 sample BLE notifications. Events are decided at
    # the same signal time, up to this much later by the wall clock.
    hold_s = 0.05
    # How far up a band's output is taken to be its limb's own motion, unshaped by the
    # band's output low-pass, as a share of its rate, for the cycle shape. MEMS IMUs
    # specify noise over a bandwidth of half the rate; 0.35 of it for a gyroscope puts the
    # 2nd harmonic of clonus up to 9.1 Hz (the ankle's top rate) in reach at 52 Hz. At a
    # quarter, then at 0.3, the shape of a 52 Hz band's cycles above 6.5 and then 7.8 Hz
    # went unjudged, and most tremor alarms were there. The accelerometer stays at a
    # quarter: at 0.3 and at 0.35 the simulated band lost episodes, and at 0.35 against a
    # lower line (0.0015) the held-out seeds gained as many alarms at 104-200 Hz as they
    # lost at 52 Hz.
    harmonic_band: ClassVar[dict[str, float]] = {"imu6": 0.35, "acc3": 0.25, "emg": 0.25}
    # The most a rhythm's limb may move one way and back, slower than the rhythm, in units
    # of the rhythm's own movement (`_sway`; `EpisodeTracker._rides_on_movement`): a
    # gyroscope's in the rhythm's swings, an accelerometer's in its acceleration. Where
    # real gait alarmed, chains moved 1.5-50 (median 10) and 0.55-9 (median 1.6); clonus
    # on every synthetic split at most 1.6 and 0.42. The gyroscope's line was 4 until the
    # last gait chain left above it (3.57) was measured; no synthetic figure moves down to 2.
    max_sway: ClassVar[dict[str, float]] = {"imu6": 3.0, "acc3": 1.0}
    # Where no harmonic lies in that band (an accelerometer at 52 Hz above 6.5 Hz, where
    # every acc3 tremor and vibration alarm of the tuning and check seeds was), the band
    # reaching this far, against this share of the line: near a band's output low-pass
    # its harmonics are weakened, and an accelerometer's are already diluted by gravity
    # (the simulated band's 8.5 Hz cycles at 52 Hz measure 0.0036 at the median).
    outer_harmonic_band: ClassVar[dict[str, tuple[float, float]]] = {"acc3": (0.35, 0.375)}
    oscillation_s = 30.0  # signal the beats are counted on, kept for `oscillation`
    lead_in_s, lead_gap_s = 2.0, 0.3  # the span before a chain's first beat `_lead_in` reads
    emg_lead_in_s, emg_lead_gap_s = 1.0, 0.15  # and before a first burst, `_emg_lead_in`

    def __init__(
        self,
        sensor: str,
        params: SiteParams,
        fs: float,
        n_channels: int | None = None,
        context_s: float = 10.0,
    ) -> None:
        if sensor not in SENSORS:
            raise ValueError(f"unknown sensor {sensor!r}; expected one of {', '.join(SENSORS)}")
        if fs <= 0:
            raise ValueError("fs must be positive")
        self.sensor = sensor
        self.params = params
        self.fs = float(fs)
        self.n_channels = n_channels or CHANNELS.get(sensor, 1)
        self.stats = DetectorStats()
        self.recent = RingBuffer(max(1, round(context_s * fs)), self.n_channels)

        self.frontend: MotionFrontEnd | EmgFrontEnd
        if sensor == "emg":
            self.frontend = EmgFrontEnd(fs, self.n_channels)
            beat_fs = self.frontend.out_fs
            floor, unit, counting = 0.0, "a.u.", "positive"
            key = ""
        else:
            # A gyroscope's raw turn shows a stretch (see `_rotation`).
            self.frontend = MotionFrontEnd(fs, params.band_hz, along=sensor == "imu6")
            beat_fs = fs
            key = "gyr" if sensor == "imu6" else "acc"
            floor = params.min_amplitude.get(key, 0.0)
            unit = "deg/s" if key == "gyr" else "m/s^2"
            counting = "pairs"
        self.beat_fs = beat_fs
        self.hop = max(1, round(0.1 * beat_fs))
        self.amplitude_floor = floor
        self.lobes = LobeTracker(max_quiet=round(beat_fs / params.rate_hz[0]))
        self.bursts = BurstTracker(
            refractory=round(0.6 * beat_fs / params.rate_hz[1]),
            max_gap=round(1.6 * beat_fs / params.rate_hz[0]),
        )
        self.episodes = EpisodeTracker(
            params,
            beat_fs,
            counting,
            floor,
            unit,
            to_time=self._time_of,
            polarity="size" if sensor == "acc3" else "rise",
            shape=self._harmonics if sensor != "emg" else None,
            # Accelerometers see harmonics amplified; a gyroscope's dips are real cycles.
            wiggle_ratio=0.25 if sensor == "acc3" else None,
            envelope_floor=self._envelope_floor if sensor == "emg" else None,
            burst_time=self._burst_time if sensor == "emg" else None,
            envelope_rhythm=self._envelope_rhythm if sensor == "emg" else None,
            max_excursion=params.max_excursion.get(key, np.inf) if key else np.inf,
            excursion_power=2 if sensor == "acc3" else 1,
            # The ringing after the last beat is large enough to be counted: where it made
            # an alarm on the tuning and check seeds, it was 0.70-0.77 of the beats before
            # it on an accelerometer, 0.37-0.70 on a gyroscope; true sixth beats were under
            # these lines in 1 onset of 224 and 9 of 552 (and wait for the next beat).
            onset_beat_ratio={"acc3": 0.8, "imu6": 0.7}.get(sensor),
            max_period_cv=params.max_period_cv if sensor == "emg" else np.inf,
            alternation_ratio=(params.max_alternation or None) if sensor == "emg" else None,
            unmerge=self.bursts.unmerge if sensor == "emg" else None,
            # A gyroscope measures the stretch's rotation; an accelerometer mixes it with
            # gravity.
            rotation=self._rotation if sensor == "imu6" else None,
            sway=self._sway if sensor != "emg" else None,
            max_sway=self.max_sway.get(sensor, np.inf),
            max_beat_spread=params.max_beat_spread if sensor != "emg" else None,
            max_interval_swing=params.max_interval_swing if sensor != "emg" else None,
            lead_in=self._lead_in if sensor != "emg" else self._emg_lead_in,
        )
        # Beat-stage sample times, for reporting; long enough for a long episode.
        self._times = RingBuffer(round(900 * beat_fs), 1)
        # Raw motion at beat-stage positions, for the cycle shape (4 cycles at 3 Hz fit).
        self._raw = RingBuffer(round(3.0 * beat_fs), 3)
        # Raw motion along the counting axis, for the rotation of a stretch.
        self._along = RingBuffer(round(3.0 * beat_fs), 1)
        # EMG envelope before the clonus band-pass, for the rest between bursts.
        self._env = RingBuffer(round(3.0 * beat_fs), 1)
        self._hop_rms = RunningMedian(100)  # 10 s of quiet hops' RMS (EMG: mean envelope)
        self._pos = 0  # beat-stage samples produced
        self._hop_fill = 0
        self._hop_sum = 0.0  # of y^2 (motion) or y (EMG) over the hop
        self._threshold = np.inf
        self._sigma = 0.0  # noise floor (EMG: resting level): the median of _hop_rms
        self._last_t: float | None = None
        self._last_row: FloatArray | None = None
        self._hold = max(1, round(self.hold_s * self.fs))
        self._held: list[tuple[FloatArray, FloatArray]] = []
        self._held_n = 0
        # The band-passed signal the beats are counted on, for event snippets (evidence).
        self._osc = RingBuffer(round(self.oscillation_s * beat_fs), 1)

    # -- public --------------------------------------------------------------------------

    @property
    def threshold(self) -> float:
        return self._threshold

    def process(self, t: FloatArray, x: FloatArray) -> list[EpisodeEvent]:
        """Feed samples `x` (n, n_channels) taken at times `t` (n,); returns new events.

        Fewer than `hold_s` worth of samples are held until more arrive (or `flush`)."""
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        x = np.asarray(x, dtype=np.float64).reshape(t.size, self.n_channels)
        self._held.append((t, x))
        self._held_n += t.size
        if self._held_n < self._hold:
            return []
        return self._release()

    def oscillation(self, seconds: float) -> tuple[FloatArray, FloatArray]:
        """The newest `seconds` (at most `oscillation_s`) of the band-passed signal the
        beats are counted on, at the beat-stage rate: (signal times, values)."""
        n = min(round(seconds * self.beat_fs), len(self._osc), len(self._times))
        return self._times.latest(n)[:, 0], self._osc.latest(n)[:, 0]

    def force_end_now(self, reason: str, gap: bool = False) -> list[EpisodeEvent]:
        """End any episode in progress, e.g. because the link to the band was lost
        (`gap=True`: see `EpisodeTracker.force_end`)."""
        return self._release() + self.episodes.force_end(self._pos, reason=reason, gap=gap)

    def flush(self) -> list[EpisodeEvent]:
        """Run held samples and end any episode in progress (end of recording, shutdown)."""
        return self.force_end_now("stream_ended")

    def _release(self) -> list[EpisodeEvent]:
        if not self._held:
            return []
        if len(self._held) == 1:
            t, x = self._held[0]
        else:
            t = np.concatenate([h[0] for h in self._held])
            x = np.concatenate([h[1] for h in self._held])
        self._held.clear()
        self._held_n = 0
        good = np.all(np.isfinite(x), axis=1) & np.isfinite(t)
        self.stats.nan_rows += int(t.size - np.count_nonzero(good))
        t, x = t[good], x[good]
        events: list[EpisodeEvent] = []
        if t.size == 0:
            return events
        self.stats.samples += t.size
        self.recent.push(x)
        for seg_t, seg_x, kind, gap_s in self._segments(t, x):
            if kind == "gap":
                bridge = gap_s <= self.max_bridge_s
                events += self.episodes.force_end(self._pos, "signal_gap", gap=True, bridge=bridge)
                self.frontend.reset()
                self.lobes.reset()
                self.bursts.reset()
            if kind == "fill":
                # Told before the fill runs: the rhythm may be found stopped inside it.
                n_fill = round(seg_t.size * self.beat_fs / self.fs)
                long = seg_t.size >= self.min_gap_s * self.fs
                self.episodes.add_fill(self._pos, self._pos + n_fill, long)
            events += self._run(seg_t, seg_x, filled=kind == "fill")
        return events

    # -- gaps ----------------------------------------------------------------------------

    def _segments(
        self, t: FloatArray, x: FloatArray
    ) -> list[tuple[FloatArray, FloatArray, str, float]]:
        """Split at lost packets: short gaps are filled linearly ("fill"), long ones split
        ("gap", an empty segment before the samples after it, with the gap's length in
        seconds); the rest is "data"."""
        prev_t = self._last_t
        all_t = t if prev_t is None else np.concatenate(([prev_t], t))
        steps = np.diff(all_t) * self.fs
        gap_idx = np.flatnonzero(steps >= 2.5)
        offset = 0 if prev_t is None else 1  # steps[i] precedes t[i + 1 - offset]
        out: list[tuple[FloatArray, FloatArray, str, float]] = []
        start = 0
        for g in gap_idx:
            i = int(g) + 1 - offset  # index in t of the first sample after the gap
            before_t = all_t[g]
            before_x = x[i - 1] if i > 0 else self._last_row
            missing = round(steps[g]) - 1
            if start < i:
                out.append((t[start:i], x[start:i], "data", 0.0))
            self.stats.gaps += 1
            if missing * 1.0 / self.fs > self.max_fill_s or before_x is None:
                self.stats.long_gaps += 1
                out.append((t[i:i], x[i:i], "gap", float(t[i] - before_t)))
            else:
                self.stats.missing_samples += missing
                frac = np.arange(1, missing + 1) / (missing + 1)
                fill_t = before_t + frac * (t[i] - before_t)
                fill_x = before_x + frac[:, None] * (x[i] - before_x)
                out.append((fill_t, fill_x, "fill", 0.0))
            start = i
        out.append((t[start:], x[start:], "data", 0.0))
        self._last_t = float(t[-1])
        self._last_row = x[-1].copy()
        return out

    # -- the beat stage ------------------------------------------------------------------

    def _run(self, t: FloatArray, x: FloatArray, filled: bool = False) -> list[EpisodeEvent]:
        if t.size == 0:
            return []
        # IMU6 counts on the gyroscope: free of gravity, and closer to clinical ratings.
        motion = x[:, 3:6] if self.sensor == "imu6" else x
        if filled and isinstance(self.frontend, EmgFrontEnd):
            fe = self.frontend.hold(t.size)
        else:
            fe = self.frontend.process(motion)
        n = fe.osc.size
        if n == 0:
            return []
        self._times.push(t[fe.index])
        events: list[EpisodeEvent] = []
        start = 0
        while start < n:
            take = min(self.hop - self._hop_fill, n - start)
            y = fe.osc[start : start + take]
            # Pushed as the beats are found, so what a check reads ends where it stands.
            self._osc.push(y)
            pos = np.arange(self._pos, self._pos + take)
            if self.sensor == "emg":
                self._env.push(y**2)
                # A burst missed inside an alarmed episode is counted, not before:
                # inferring one towards the count let chance peaks in held voluntary
                # contractions reach it.
                infer = self.episodes.sustained
                for lobe in self.bursts.process(pos, y, self._threshold, infer_missed=infer):
                    events += self.episodes.started(lobe) + self.episodes.closed(lobe)
                self._hop_sum += float(np.sum(y))
            else:
                self._raw.push(motion[start : start + take])
                if fe.along is not None:
                    self._along.push(fe.along[start : start + take])
                for lobe, started in self.lobes.process(pos, y, self._threshold):
                    if started:
                        events += self.episodes.started(lobe)
                    else:
                        events += self.episodes.closed(lobe)
                self._hop_sum += float(np.dot(y, y))
            self._pos += take
            self._hop_fill += take
            start += take
            if self._hop_fill == self.hop:
                events += self.episodes.tick(self._pos - 1)
                self._end_hop()
        return events

    def _end_hop(self) -> None:
        """Update the noise floor, and the threshold lobes and bursts are judged against,
        at a fixed position: the median over 10 s of quiet signal of each hop's RMS
        (motion) or of its mean envelope (EMG: the muscle's level at rest)."""
        mean = self._hop_sum / self.hop
        level = mean if self.sensor == "emg" else np.sqrt(mean)
        self._hop_fill = 0
        self._hop_sum = 0.0
        if not self.episodes.active:
            self._sigma = self._hop_rms.push(float(level))  # changes only here
        if self.sensor == "emg":
            self._threshold = max(self._sigma, 1e-12)
        else:
            self._threshold = max(
                self.noise_k * self._sigma, self.floor_fraction * self.amplitude_floor, 1e-12
            )

    def _harmonics(self, end_pos: int, period: float) -> tuple[float, float]:
        """Cycle shape of the last four cycles up to beat-stage position `end_pos`, and the
        share of `min_harmonic_ratio` it is held to (`outer_harmonic_band`)."""
        ratio = self._cycle_shape(end_pos, period, self.harmonic_band[self.sensor])
        outer = self.outer_harmonic_band.get(self.sensor)
        if ratio == np.inf and outer is not None:
            return self._cycle_shape(end_pos, period, outer[0]), outer[1]
        return ratio, 1.0

    def _cycle_shape(self, end_pos: int, period: float, band: float) -> float:
        need = round(4 * period)
        first = end_pos - need + 1
        # Four cycles of samples that were seen: filled-in ones do not count towards them.
        oldest = self._raw.total - len(self._raw)
        while first > oldest:
            seen = int(np.count_nonzero(~self.episodes.filled_mask(first, end_pos + 1)))
            if seen >= need:
                break
            first = max(oldest, first - (need - seen))
        rows = self._raw.latest(self._raw.total - first)[: end_pos - first + 1]
        times = self._times.latest(self._times.total - first)[: rows.shape[0], 0]
        return harmonic_ratio(
            rows,
            self.beat_fs,
            self.beat_fs / period,
            derivative=self.sensor == "acc3",  # tangential acceleration of the swing
            band=band,
            keep=~self.episodes.filled_mask(first, first + rows.shape[0]),
            times=times if times.size == rows.shape[0] else None,
        )

    def _rotation(self, first_pos: int, end_pos: int) -> tuple[float, int]:
        """The largest rotation (deg, signed) about the counting axis away from where the
        limb was at beat-stage position `first_pos`, up to `end_pos`, from the raw
        gyroscope (only the last 3 s are held), and the position where it was largest."""
        along = self._along
        first = max(first_pos, along.total - len(along))
        if end_pos <= first:
            return 0.0, first
        angle = np.cumsum(along.between(first, end_pos)[:, 0]) / self.beat_fs
        at = int(np.argmax(np.abs(angle)))
        return float(angle[at]), first + at

    def _sway(self, first_pos: int, end_pos: int, period: float, amplitude: float) -> float:
        """How far the limb moved one way and then back, slower than `period` beat-stage
        samples, from `first_pos` (at most the last 3 s held) to `end_pos`, in units of
        the rhythm's own movement, whose lobes peak at `amplitude`.

        Each axis counts, as a foot in walking rolls as well as pitches. A gyroscope
        measures the limb's turn about each of its axes (deg) against the rhythm's swing.
        An accelerometer measures its raw acceleration on each axis (gravity's share
        turns with the limb; a stride adds its own) against the rhythm's amplitude; it
        cannot tell the limb's turn from gravity, but it need not: both are movement.
        Averaging over one period takes a rhythm of that period out. The smaller of the
        largest rise and largest fall leaves a drift one way (a stretch's release, a
        gyroscope's bias) at zero.
        """
        raw = self._raw
        first = max(first_pos, raw.total - len(raw))
        moved = raw.between(first, end_pos)
        own = amplitude
        if self.sensor == "imu6":
            moved = np.cumsum(moved, axis=0) / self.beat_fs  # deg turned about each axis
            own = rhythm_swing(amplitude, period, self.beat_fs)
        k = max(1, round(period))
        if end_pos - first <= k or own <= 0:
            return 0.0
        summed = np.cumsum(np.vstack([np.zeros((1, moved.shape[1])), moved]), axis=0)
        slow = (summed[k:] - summed[:-k]) / k
        # Filled-in samples are a straight line, not the rhythm: over a fill longer than a
        # quarter period, the average moves with the phases the gap began and ended at,
        # so those averages are left out. A few lost samples (wireless IMUs lose some
        # every second) barely move it.
        fills = self.episodes.filled_mask(first, first + len(moved), longer_than=k // 4)
        filled = np.concatenate(([0], np.cumsum(fills)))
        slow = slow[filled[k:] == filled[:-k]]
        if not slow.size:
            return 0.0
        rise = np.max(slow - np.minimum.accumulate(slow, axis=0), axis=0)
        fall = np.max(np.maximum.accumulate(slow, axis=0) - slow, axis=0)
        return float(np.linalg.norm(np.minimum(rise, fall))) / own

    def _lead_in(self, first_pos: int, amplitude: float, since: int) -> float:
        """The band-passed signal's level (root mean square times the square root of
        two) from `lead_in_s` to `lead_gap_s` before beat-stage position `first_pos`, but
        not before position `since`, over the rhythm's lobe size `amplitude`: how much of
        the rhythm was already going before its first beat (`SiteParams.max_lead_in`).
        0 when less than half of that span is held or after `since` (a band that just
        connected, or came back after a gap)."""
        rows = self._before(first_pos, since, self.lead_in_s, self.lead_gap_s)
        if rows is None or amplitude <= 0:
            return 0.0
        return float(np.sqrt(2.0 * np.mean(rows**2)) / amplitude)

    def _emg_lead_in(self, first_pos: int, amplitude: float, since: int) -> float:
        """The EMG envelope's mean from `emg_lead_in_s` to `emg_lead_gap_s` before
        beat-stage position `first_pos`, but not before position `since`, over the
        chain's burst size `amplitude`: how active the muscle already was before the
        first burst (`SiteParams.max_lead_in`). A mean, not a level: bursts with rests
        between them (a rhythm that broke and re-formed) average far under their peaks,
        a held contraction does not. 0 when less than half of that span is held."""
        rows = self._before(first_pos, since, self.emg_lead_in_s, self.emg_lead_gap_s)
        if rows is None or amplitude <= 0:
            return 0.0
        return float(np.mean(rows) / amplitude)

    def _before(self, first_pos: int, since: int, lead_s: float, gap_s: float) -> FloatArray | None:
        """The signal beats are counted on from `lead_s` to `gap_s` before beat-stage
        position `first_pos`, but not before position `since`; None when less than half
        of that span is held."""
        start = max(first_pos - round(lead_s * self.beat_fs), since)
        rows = self._osc.between(start, first_pos - round(gap_s * self.beat_fs))[:, 0]
        if rows.size < round((lead_s - gap_s) * self.beat_fs) // 2:
            return None
        return rows

    def _envelope_held(self, first_pos: int, end_pos: int) -> FloatArray:
        """The EMG envelope's power from beat-stage position `first_pos` (at most the last
        3 s held) to `end_pos`, both included."""
        return self._env.between(first_pos, end_pos + 1)[:, 0]

    def _envelope_floor(self, first_pos: int, end_pos: int) -> float:
        """The EMG envelope's 10th over its 90th percentile, from beat-stage position
        `first_pos` (at most the last 3 s) to `end_pos`."""
        rows = self._envelope_held(first_pos, end_pos)
        if rows.size < 4:
            return 0.0
        lo, hi = np.percentile(rows, [10.0, 90.0])
        return float(lo / hi) if hi > 0 else 0.0

    def _envelope_rhythm(self, first_pos: int, end_pos: int, period: float) -> float | None:
        """The EMG envelope's correlation with itself `period` beat-stage samples on, less
        its correlation half a period on, from `first_pos` (at most the last 3 s held) to
        `end_pos`; None when the samples held are too few to say."""
        full, half = round(period), round(period / 2)
        rows = self._envelope_held(first_pos, end_pos)
        if half < 1 or end_pos >= self._env.total or rows.size < full + 4:
            return None
        env = np.sqrt(np.maximum(rows, 0.0))
        env = env - env.mean()
        return self._lagged(env, full) - self._lagged(env, half)

    @staticmethod
    def _lagged(x: FloatArray, lag: int) -> float:
        """Correlation of `x` (mean removed) with itself `lag` samples on."""
        a, b = x[:-lag], x[lag:]
        scale = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
        return float(np.dot(a, b)) / scale if scale > 0 else 0.0

    def _burst_time(self, first_pos: int, end_pos: int, period: float) -> float:
        """Seconds per cycle of `period` beat-stage samples that the EMG envelope spends
        above 0.3 of its 90th percentile, from `first_pos` (at most the last 3 s) to
        `end_pos`."""
        rows = self._envelope_held(first_pos, end_pos)
        if rows.size < 4:
            return 0.0
        level = float(np.percentile(rows, 90.0))
        if level <= 0:
            return 0.0
        return float(np.mean(rows > 0.3 * level)) * period / self.beat_fs

    def _time_of(self, pos: int) -> float:
        held = len(self._times)
        back = self._times.total - pos
        if 1 <= back <= held:
            return float(self._times.back(back)[0])
        last = float(self._times.back(1)[0]) if held else 0.0
        return last - (back - 1) / self.beat_fs
