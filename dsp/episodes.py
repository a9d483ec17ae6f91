"""From half-cycles to clonus episodes: chains of regular beats and the ">5" rule.

A chain is a run of alternating lobes whose period (same-sign lobe to same-sign lobe)
stays within the site's clonus rate and close to its own recent median. A leading lobe
much larger than the rest is the stretch that set the clonus off (the trigger), not a
beat. The chain's contractions are counted once per cycle: every positive EMG-envelope
lobe (a burst), or every pair of motion lobes. When the count passes the threshold and
the chain looks like clonus (rate, regularity, amplitude), the episode is declared
(`clonus.onset`); it ends when the rhythm stops, fades or breaks.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

import numpy as np

from clonusd.dsp.events import EpisodeEvent, scats_class
from clonusd.dsp.lobes import Lobe
from clonusd.dsp.sites import SiteParams
from clonusd.dsp.stats import median


def rhythm_swing(amplitude: float, period: float, fs: float) -> float:
    """How far a gyroscope's rhythm turns the limb each way (deg): lobes peaking at
    `amplitude` (deg/s), over the angular rate of `period` samples at `fs`."""
    return amplitude * period / (2 * np.pi * fs)


@dataclass
class _Chain:
    lobes: list[Lobe] = field(default_factory=list)
    episode: int | None = None  # set once declared sustained
    last_update_pos: int = 0
    harmonics: float | None = None  # cycle shape (dsp.waveform), judged once per chain
    harmonic_line: float = 1.0  # the share of `min_harmonic_ratio` it was judged against
    floor: float | None = None  # EMG envelope floor between bursts, judged once per chain
    burst_s: float | None = None  # EMG burst time per cycle, judged once per chain
    rhythm: float | None = None  # EMG envelope: repeat a period on less half a period on
    alternating: bool | None = None  # EMG bursts big and small in turn, judged once
    movement: float | None = None  # the limb's slow movement, in the rhythm's own units
    scatter: float | None = None  # the beats' sizes about their trend, over their mean
    swing: float | None = None  # successive beat intervals: mean change over mean interval
    lead: float | None = None  # the rhythm's level before its first beat, judged once
    # An episode resumed after a break (see `_Held`): the earlier parts' beats, the time
    # of the first beat, and whether a stretch set it off.
    carried_beats: int = 0
    carried_times: tuple[float, ...] = ()  # those beats' times (EpisodeEvent.beat_times)
    first_t: float | None = None
    first_elicited: bool = False
    bridged: bool = False  # its carried beats came before a signal gap (see `_Bank`)
    follows: int | None = None  # the alarmed episode a gap ended, that this one goes on
    bank_refused: bool = False  # the shape failed on the carried count: count alone now
    # The first lobe the stretch was judged for, its direction (see `_stretch_sign`) and
    # where the turn was largest (the stretch's end).
    stretch: tuple[int, int, int] | None = None
    # The lobes of the chain whose rhythm broke where this one began, but not carried.
    before: list[Lobe] = field(default_factory=list)
    # The line of step 4 that last refused the chain once its count had passed the
    # threshold (`Unreported.refused_by`).
    refused: str | None = None


@dataclass(frozen=True)
class Unreported:
    """A chain that ended without an episode, for offline review: its counted beats'
    times, and the line of step 4 that last refused it once it had counted past the
    threshold, or None if it never counted that far. A line is named for its setting
    (`SiteParams` field, or `max_sway`), or is `weak_last_beat` (`onset_beat_ratio`),
    `no_rest_before` (`rearm_s`) or `start_not_seen` (`min_seen_before_s`)."""

    beat_times: list[float]
    refused_by: str | None


@dataclass
class _Held:
    """The end of an episode whose rhythm broke, held for a re-arm time in case the
    rhythm resumes: one uneven or missed cycle does not end clonus."""

    end: EpisodeEvent
    last_pos: int  # start of the episode's last lobe


@dataclass
class _Bank:
    """Beats of a rhythm that a gap in the signal broke off, carried to the chain that
    continues it at the same rate just after the gap. Lost packets cut clonus into
    pieces shorter than the threshold; the pieces together are the episode."""

    beats: int  # towards the threshold
    period: float  # same-sign period, beat-stage samples
    onset_t: float | None  # first beat of the first piece (None: a new episode's own)
    pos: int  # where the broken-off chain ended
    reported: int  # beats the episode's figures include (none from an alarmed episode)
    follows: int | None = None  # the alarmed episode the gap ended


class EpisodeTracker:
    """Consumes lobes, produces onset/update/end events.

    `to_time` maps a beat-stage sample position to signal time; `fs` is the beat-stage
    rate; `counting` is "pairs" (motion: one beat per full cycle) or "positive" (EMG
    envelope: one beat per burst). `polarity` says which half-cycle of a motion cycle is
    the contraction when no stretch is seen: "rise" (gyroscope: the quick phase rises
    faster) or "size" (accelerometer: it sees gravity and tangential acceleration, and
    the contraction's half-cycle is the larger one). `rotation(first, end)`, given for a
    gyroscope, is the largest rotation between two positions: the half-cycles against a
    stretch seen in it are the contractions (`_stretch_sign`). `shape(end_pos, period)`,
    given for motion, measures how far the cycles before `end_pos` are from a pure sine
    (`dsp.waveform`), and gives the share of `min_harmonic_ratio` that figure is held to.
    `wiggle_ratio`, given for accelerometers, is the size under which a dip inside a
    half-cycle is merged away (`_absorb_wiggle`). `unmerge(bursts)`, given for EMG, splits
    each of a rhythm's first bursts that the bursts after it show is two in one.
    `sway(first, end, period, amplitude)`, given for motion, is how far the limb moved
    back and forth, slower than `period`, between two positions, in units of a rhythm
    whose lobes peak at `amplitude` (`_rides_on_movement`).
    """

    def __init__(
        self,
        params: SiteParams,
        fs: float,
        counting: str,
        amplitude_floor: float,
        amplitude_unit: str,
        to_time: Callable[[int], float],
        update_interval_s: float = 2.0,
        trigger_ratio: float = 2.0,
        lead_ratio: float = 0.6,
        tail_ratio: float = 0.4,
        ring_ratio: float = 0.65,
        first_beat_ratio: float = 0.3,
        fade_ratio: float = 0.3,
        rearm_s: float = 1.0,
        stretch_gap_ratio: float = 0.65,
        polarity: Literal["rise", "size"] = "rise",
        shape: Callable[[int, float], tuple[float, float]] | None = None,
        carry_max: int = 4,
        wiggle_ratio: float | None = None,
        resume_beats: int = 2,
        envelope_floor: Callable[[int, int], float] | None = None,
        burst_time: Callable[[int, int, float], float] | None = None,
        envelope_rhythm: Callable[[int, int, float], float | None] | None = None,
        max_excursion: float = float("inf"),
        excursion_power: int = 1,
        onset_beat_ratio: float | None = None,
        max_period_cv: float = float("inf"),
        rotation: Callable[[int, int], tuple[float, int]] | None = None,
        stretch_window_s: float = 0.6,
        stretch_swings: float = 2.0,
        alternation_ratio: float | None = None,
        shrunk_tolerance: float = 0.25,
        sway: Callable[[int, int, float, float], float] | None = None,
        max_sway: float = float("inf"),
        max_beat_spread: float | None = None,
        max_interval_swing: float | None = None,
        lead_in: Callable[[int, float, int], float] | None = None,
        unmerge: Callable[[list[Lobe]], list[Lobe]] | None = None,
    ) -> None:
        self.p = params
        self.fs = fs
        self.counting = counting
        self.amplitude_floor = amplitude_floor
        self.amplitude_unit = amplitude_unit
        self.to_time = to_time
        self.update_interval = round(update_interval_s * fs)
        self.trigger_ratio = trigger_ratio
        self.lead_ratio = lead_ratio
        self.tail_ratio = tail_ratio
        # Ringing after the last beat drops by more than clonus fades from beat to beat.
        self.ring_ratio = ring_ratio
        self.first_beat_ratio = first_beat_ratio
        self.fade_ratio = fade_ratio
        self.stretch_gap_ratio = stretch_gap_ratio
        self.polarity = polarity
        self.shape = shape
        self.carry_max = carry_max
        self.wiggle_ratio = wiggle_ratio
        self.resume_beats = resume_beats
        self.envelope_floor = envelope_floor
        self.burst_time = burst_time
        self.envelope_rhythm = envelope_rhythm
        self.max_excursion = max_excursion
        self.excursion_power = excursion_power
        self.onset_beat_ratio = onset_beat_ratio
        self.max_period_cv = max_period_cv
        self.rotation = rotation
        self.stretch_window = round(stretch_window_s * fs)
        self.stretch_swings = stretch_swings
        self.alternation_ratio = alternation_ratio
        self.shrunk_tolerance = shrunk_tolerance
        self.sway = sway
        self.max_sway = max_sway
        self.max_beat_spread = max_beat_spread
        self.max_interval_swing = max_interval_swing
        self.lead_in = lead_in
        self.unmerge = unmerge
        self.seen_before = round(params.min_seen_before_s * fs)
        self.min_period = fs / params.rate_hz[1]
        self.max_period = fs / params.rate_hz[0]
        self.chain = _Chain()
        self.rearm = round(rearm_s * fs)
        self._rhythm_end = -(10**9)  # last lobe of the last chain counted past the threshold
        self._next_episode = 1
        self._held: _Held | None = None
        # The stretches of samples the detector filled in over lost packets (`add_fill`), as
        # beat-stage (start, end) positions, newest last; and the end of the last one long
        # enough to be why a rhythm stopped (it then stopped for want of signal).
        self._fills: deque[tuple[int, int]] = deque(maxlen=32)
        self.filled_until = -1
        self._gap_at = -1  # where the signal last broke off (`force_end` with `gap`)
        self.fill_margin = round(0.1 * fs)  # the band-pass carries a fill on this long
        self._bank: _Bank | None = None
        self.bridge_window = round(1.5 * fs)  # a piece must start this soon after the last
        # Events carry the times of the beats they counted (offline review, not the live path).
        self.report_beats = False
        # With report_beats: chains that ended without an episode, for review.
        self.unreported: list[Unreported] = []

    @property
    def active(self) -> bool:
        """True while a chain is being built (the noise floor is frozen meanwhile)."""
        return bool(self.chain.lobes)

    @property
    def sustained(self) -> bool:
        return self.chain.episode is not None

    # -- feeding -------------------------------------------------------------------------

    def add_fill(self, start: int, end: int, long: bool) -> None:
        """Beat-stage positions `start`-`end` hold samples filled in over lost packets;
        `long`: long enough that a rhythm stopping in it may have stopped for that."""
        self._fills.append((start, end))
        if long:
            self.filled_until = end

    def started(self, lobe: Lobe) -> list[EpisodeEvent]:
        """A new lobe crossed the threshold: does it continue the rhythm?"""
        events: list[EpisodeEvent] = []
        self._absorb_wiggle(lobe)
        if self.chain.lobes and not self._continues(lobe):
            unseen = self._across_fill(lobe)
            if unseen is not None:
                self.chain.lobes.extend(unseen)
            elif self._filled(lobe.start_pos):
                return events  # made of filled-in samples: neither rhythm nor its end
            else:
                events += self._break(lobe)
        elif self.chain.lobes and self._faded():
            events += self._break(lobe)
        self.chain.lobes.append(lobe)
        return events

    def _break(self, lobe: Lobe) -> list[EpisodeEvent]:
        carry = self._carried_over(lobe)
        before = [lb for lb in self.chain.lobes if lb not in carry]
        events = self._finish(lobe.start_pos)
        self.chain.lobes.extend(carry)
        self.chain.before = before
        return events

    def filled_mask(self, first: int, end: int, longer_than: int = 0) -> np.ndarray:
        """Which of positions `first` to `end - 1` hold filled-in samples (of fills
        longer than `longer_than` samples)."""
        mask = np.zeros(max(0, end - first), dtype=bool)
        for a, b in self._fills:
            if b - a > longer_than:
                mask[max(0, a - first) : max(0, b - first)] = True
        return mask

    def _filled(self, pos: int) -> bool:
        """`pos` lies in filled-in samples, or just after them (the band-pass's memory)."""
        for a, b in reversed(self._fills):  # newest first; older ones end earlier
            if b + self.fill_margin < pos:
                return False
            if a <= pos:
                return True
        return False

    def _across_fill(self, lobe: Lobe) -> list[Lobe] | None:
        """The half-cycles lost packets hid, when `lobe` continues the rhythm across them.

        Clonus does not pause while a band's packets are lost: when the chain's rhythm,
        carried on at its own period, puts whole half-cycles inside a stretch of filled-in
        samples and `lobe` lands where the next one is due, those half-cycles are
        inferred (`Lobe.inferred`) and the chain goes on. The event says how many beats
        were inferred; nothing is inferred at a chain's end, so a rhythm that stopped
        in a gap is not lengthened."""
        lobes = self.chain.lobes
        periods = self._periods(self._core())
        if periods.size < 2:
            return None
        ref = median(periods[-4:])
        last = lobes[-1]
        spans = [
            (a, b)
            for a, b in self._fills
            if a <= lobe.start_pos and b + self.fill_margin >= last.start_pos
        ]
        if not spans:
            return None
        lo, hi = spans[0][0] - 0.5 * ref, spans[-1][1] + self.fill_margin + 0.5 * ref
        last_of: dict[int, int] = {}
        for lb in reversed(lobes):
            last_of.setdefault(lb.sign, lb.start_pos)
            if len(last_of) == 2:
                break
        if lobe.sign not in last_of:
            return None
        since = lobe.start_pos - last_of[lobe.sign]
        cycles = round(since / ref)
        if cycles < 2 or abs(since - cycles * ref) > self.p.regularity_tolerance * ref:
            return None
        due = [(lobe.sign, last_of[lobe.sign] + j * ref) for j in range(1, cycles)]
        other = -lobe.sign
        if other in last_of:
            p = last_of[other] + ref
            while p < lobe.start_pos - 0.25 * ref:
                due.append((other, p))
                p += ref
        due.sort(key=lambda d: d[1])
        signs = [last.sign, *(s for s, _ in due), lobe.sign]
        if any(a == b for a, b in pairwise(signs)) or not all(lo <= p <= hi for _, p in due):
            return None
        size = {
            s: median([abs(lb.peak) for lb in lobes if lb.sign == s and lb.closed] or [0.0])
            for s in (1, -1)
        }
        return [
            Lobe(s, round(p), s * size[s], round(p), True, round(p + ref / 2), inferred=True)
            for s, p in due
        ]

    def _absorb_wiggle(self, lobe: Lobe) -> None:
        """A tiny opposite lobe inside a half-cycle is a wiggle, not a half-cycle.

        An accelerometer sees a cycle's harmonics amplified, and at slow rates the 2nd
        harmonic lies inside the band-pass: one half-cycle can then dip across zero and
        come back. When `lobe` resumes the sign of the lobe before such a dip, the two are
        one half-cycle and the dip is dropped."""
        lobes = self.chain.lobes
        if self.wiggle_ratio is None or len(lobes) < 3:
            return
        before, dip = lobes[-2], lobes[-1]
        if not (dip.closed and before.closed and before.sign == lobe.sign != dip.sign):
            return
        ref = median(np.abs([lb.peak for lb in lobes[:-1] if lb.closed]))
        if abs(dip.peak) >= self.wiggle_ratio * ref:
            return
        if lobe.start_pos - before.start_pos > 0.8 * self.max_period:
            return
        del lobes[-2:]
        lobe.start_pos = before.start_pos
        if abs(before.peak) > abs(lobe.peak):
            lobe.peak, lobe.peak_pos = before.peak, before.peak_pos

    def _carried_over(self, lobe: Lobe) -> list[Lobe]:
        """The last lobes before a break that make a regular rhythm with `lobe`.

        In motion, the stretch and the lead-in to clonus are quick, uneven pulses, and
        with the first beats they make "cycles" too short for the rhythm, which breaks
        the chain. The beats after those pulses belong to the new chain, not to the
        broken lead-in: the longest run of them that `lobe` regularly continues is
        handed on. Only a short chain that never became an episode hands any on."""
        lobes = self.chain.lobes
        if self.counting != "pairs" or self.sustained or len(lobes) > 2 * self.p.threshold_beats:
            return []
        for n in range(min(len(lobes), self.carry_max), 0, -1):
            if self._regular([*lobes[-n:], lobe]):
                return lobes[-n:]
        return []

    def _regular(self, run: list[Lobe]) -> bool:
        """Alternating half-cycles whose same-sign periods are in the rate range and
        within the regularity tolerance of their median."""
        if not all(self._half_cycle(a, b) for a, b in pairwise(run)):
            return False
        periods = self._periods(run).tolist()
        ref = median(periods) if periods else None
        return all(self._period_fits(p, ref) for p in periods)

    def closed(self, lobe: Lobe) -> list[EpisodeEvent]:
        """A lobe is complete and its size known: count the contractions so far."""
        if not self.chain.lobes or self.chain.lobes[-1] is not lobe:
            return []
        return self._check(lobe.close_pos)

    def tick(self, pos: int) -> list[EpisodeEvent]:
        """Called at fixed positions as time passes: ends a chain whose rhythm stopped."""
        events = self._release_held(pos)
        lobes = self.chain.lobes
        if not lobes:
            return events
        since = pos - lobes[-1].start_pos
        # The limit is never under the longest period, so the chain's own periods need
        # only be looked at once that much time has passed (not at every hop).
        if since > 1.25 * self.max_period:
            periods = self._periods(self._core())
            limit = max(2.0 * median(periods) if periods.size else 0.0, self.max_period)
            if since > 1.25 * limit:
                return events + self._finish(pos)
        if self.sustained and pos - self.chain.last_update_pos >= self.update_interval:
            self.chain.last_update_pos = pos
            events.append(self._event("clonus.update", pos))
        return events

    def _release_held(self, pos: int, now: bool = False) -> list[EpisodeEvent]:
        """The held end, once the rhythm has not resumed within the re-arm time."""
        held = self._held
        if held is None or not (now or pos - held.last_pos >= self.rearm):
            return []
        self._held = None
        return [replace(held.end, t=self.to_time(pos))]

    def force_end(
        self, pos: int, reason: str, gap: bool = False, bridge: bool = True
    ) -> list[EpisodeEvent]:
        """End whatever is in progress now (signal lost, shutdown).

        `gap`: the signal broke off (samples or the link lost), so nobody knows whether
        the rhythm went on. An episode that was alarmed and ended this way does not hold
        off the next one (the `rearm_s` rest rule): clonus that goes on after the gap is
        alarmed afresh as soon as its count passes the threshold again; when the gap was
        short (`bridge`), the beats before it count towards that threshold (`_Bank`), if
        the rhythm after it runs at the same rate."""
        if gap:
            self._gap_at = pos
        return self._release_held(pos, now=True) + self._finish(
            pos, reason=reason, gap=gap, bridge=bridge
        )

    def _bank_of_chain(self, pos: int) -> _Bank | None:
        """What the chain a gap broke off carries on (see `_Bank`)."""
        if not self.chain.lobes:
            return self._bank  # nothing in progress: an earlier piece's beats still wait
        core = self._core()
        periods = self._periods(core)
        beats = len(self._beat_lobes(core))
        if self.sustained:
            # Alarmed already: the rest is a new episode, alarmed once the rhythm is seen
            # to go on (two beats), not after a whole new count.
            if not periods.size:
                return None
            follows = self.chain.episode
            return _Bank(self.p.threshold_beats - 1, median(periods), None, pos, 0, follows)
        if beats == 0 or beats > self.p.threshold_beats:
            return None  # nothing counted, or counted and judged not clonus
        first_t = self.to_time(self._beat_lobes(core)[0].start_pos)
        prior = self._matching_bank()
        if prior is not None:
            onset_t = prior.onset_t if prior.onset_t is not None else first_t
            total = prior.reported + beats
            return _Bank(prior.beats + beats, prior.period, onset_t, pos, total, prior.follows)
        if not periods.size:
            return None
        return _Bank(beats, median(periods), first_t, pos, beats)

    def _matching_bank(self) -> _Bank | None:
        """The bank, if the current chain started soon after it at the same rate."""
        bank, lobes = self._bank, self.chain.lobes
        if bank is None or not lobes or lobes[0].start_pos - bank.pos > self.bridge_window:
            return None
        periods = self._periods(self._core())
        if not periods.size:
            return None
        tolerance = self.p.regularity_tolerance * bank.period
        return bank if abs(median(periods) - bank.period) <= tolerance else None

    # -- chain rules ---------------------------------------------------------------------

    def _half_cycle(self, prev: Lobe, lobe: Lobe) -> bool:
        """`lobe` is the opposite half-cycle to `prev`, a plausible half-period later."""
        half = lobe.start_pos - prev.start_pos
        return lobe.sign != prev.sign and 0.25 * self.min_period <= half <= 0.8 * self.max_period

    def _period_fits(self, period: float, ref: float | None) -> bool:
        """A same-sign period in the rate range (with 20 % slack) and, given the rhythm's
        reference period `ref`, within the site's regularity tolerance of it."""
        if not 0.8 * self.min_period <= period <= 1.2 * self.max_period:
            return False
        return ref is None or abs(period - ref) <= self.p.regularity_tolerance * ref

    def _continues(self, lobe: Lobe) -> bool:
        lobes = self.chain.lobes
        if not self._half_cycle(lobes[-1], lobe):
            return False
        if len(lobes) >= 2:
            periods = self._periods(self._core())
            ref = median(periods[-4:]) if periods.size >= 3 else None
            return self._period_fits(lobe.start_pos - lobes[-2].start_pos, ref)
        return True

    def _faded(self) -> bool:
        """The last full cycle was far smaller than the chain's median: the rhythm ended."""
        lobes = self.chain.lobes
        # Half-cycles made of filled-in samples are small for want of signal, not rhythm.
        amps = np.abs([lb.peak for lb in lobes if lb.closed and not self._filled(lb.start_pos)])
        if amps.size < 6:
            return False
        ref = median(amps[:-2])
        return bool(amps[-1] < self.fade_ratio * ref and amps[-2] < self.fade_ratio * ref)

    @staticmethod
    def _periods(core: list[Lobe]) -> np.ndarray:
        """Same-sign lobe-to-lobe intervals of the core, in samples."""
        pos = np.array([lb.start_pos for lb in core])
        if pos.size < 3:
            return np.empty(0)
        return np.asarray(pos[2:] - pos[:-2], dtype=np.float64)

    def _core(self) -> list[Lobe]:
        """The chain without its lead-in and tail.

        Leading lobes far smaller than the chain (the slow stretch seen through the band-
        pass) or far larger (the stretch transient itself) are not contractions, and
        trailing motion lobes that faded are filter ringing. EMG bursts are peaks of the
        envelope, not band-passed cycles: nothing rings after the last one, the burst
        tracker already drops ripples, and a small last burst is clonus fading out.
        """
        lobes = self.chain.lobes
        amps = np.abs([lb.peak for lb in lobes])
        closed = [i for i, lb in enumerate(lobes) if lb.closed]
        if len(closed) < 3:
            return list(lobes)
        ref = median(amps[closed])
        lo, hi = self.lead_ratio * ref, self.trigger_ratio * ref
        start = 0
        while (
            start < min(3, len(lobes) - 1) and lobes[start].closed and not (lo <= amps[start] <= hi)
        ):
            start += 1
        stretches = self._stretches()
        if stretches:
            start = max(start, stretches[-1] + 1)  # what came before the stretch is lead-in
        end = len(lobes)
        motion = self.counting == "pairs"
        while (
            end > start + 1
            and lobes[end - 1].closed
            and (
                lobes[end - 1].inferred  # only a beat seen after a gap vouches for its lobes
                or (motion and amps[end - 1] < self.tail_ratio * ref)
                or (motion and end - 3 >= start and amps[end - 1] < self.ring_ratio * amps[end - 3])
            )
        ):
            # Ringing after the last beat: far below the chain, or a sudden drop from the
            # previous same-sign lobe (clonus fades by a few per cent a beat, not by half).
            end -= 1
        return list(lobes[start:end])

    def _stretches(self) -> list[int]:
        """Indices, among the chain's first four lobes, of lobes that came far less than
        a period before the next lobe of their sign: the stretch that set the clonus off
        (a short pulse just before the first beat), not a contraction of the rhythm."""
        lobes = self.chain.lobes
        periods = self._periods(lobes)
        if periods.size < 4:
            return []
        limit = self.stretch_gap_ratio * median(periods)
        return [
            i
            for i in range(min(4, len(lobes) - 2))
            if lobes[i].closed and lobes[i + 2].start_pos - lobes[i].start_pos < limit
        ]

    def _beat_lobes(self, core: list[Lobe]) -> list[Lobe]:
        known = [lb for lb in core if lb.closed]
        if not known:
            return []
        # EMG: one burst per contraction. Motion: one contraction per cycle, counted on the
        # half-cycles against the stretch, or without one on the quick phase (`_beat_sign`).
        sign = 1 if self.counting == "positive" else self._beat_sign(known)
        beats = [lb for lb in known if lb.sign == sign]
        # Filter start-up shrinks the first beat: a smaller lobe of the beat's sign just
        # before the core is that first contraction (the first EMG burst, seen through the
        # band-pass from rest), not lead-in.
        lobes = self.chain.lobes
        first = lobes.index(core[0])
        if (
            first > 0
            and lobes[first - 1].sign == sign
            and lobes[first - 1].closed
            and first - 1 not in self._stretches()
        ):
            ref = median(np.abs([lb.peak for lb in known]))
            if abs(lobes[first - 1].peak) >= self.first_beat_ratio * ref:
                beats.insert(0, lobes[first - 1])
        first_beat = self._released(beats, sign) or self._shrunk(beats, core)
        if first_beat is not None:
            return [first_beat, *beats]
        # EMG: one of a rhythm's first humps may be two bursts in one (`unmerge`).
        return self.unmerge(beats) if self.unmerge is not None else beats

    def _released(self, beats: list[Lobe], sign: int) -> Lobe | None:
        """The first contraction, when it ran on from the end of the stretch.

        A stretch ends with the limb slowing down, which moves it against the stretch as
        the first contraction does: the band-passed signal shows the two as one long half-
        cycle, too long for the rhythm, which breaks the chain there. The half-cycle of
        the beats' sign just before the first counted beat's cycle is that contraction
        when the stretch ended inside it, and it and the half-cycle after it are of a
        beat's size (not a ripple)."""
        stretch = self.chain.stretch
        if stretch is None or not stretch[1] or not beats:
            return None
        lobes = self.chain.lobes
        prior = self.chain.before + lobes[: lobes.index(beats[0])]
        if len(prior) < 2:
            return None
        q, p = prior[-2], prior[-1]
        if not (q.sign == sign != p.sign and q.closed and q.start_pos <= stretch[2] < p.start_pos):
            return None
        least = self.first_beat_ratio * median(np.abs([lb.peak for lb in beats]))
        return q if min(abs(q.peak), abs(p.peak)) >= least else None

    def _shrunk(self, beats: list[Lobe], core: list[Lobe]) -> Lobe | None:
        """The first contraction, when the band-pass's recovery from the stretch shrank it.

        The stretch is one large, slow turn. After it the band-passed signal swings back
        for a while, against the first contraction, which then shows as a lobe a fifth
        the size of the beats after it, under the first-beat line. A lobe of the beats'
        sign that starts after the stretch's end and one period before the first counted
        beat (within `shrunk_tolerance` of it) is that contraction, whatever its size: the
        reflex answers the stretch at once, and a ripple of the lead-in would not fall on
        the rhythm's own phase."""
        stretch = self.chain.stretch
        if stretch is None or not stretch[1] or not beats:
            return None
        periods = self._periods(core)
        if not periods.size:
            return None
        first = beats[0]
        prior = self.chain.before + self.chain.lobes[: self.chain.lobes.index(first)]
        after = [
            lb for lb in prior if lb.sign == first.sign and lb.closed and lb.start_pos >= stretch[2]
        ]
        if not after:
            return None
        period = median(periods)
        gap = first.start_pos - after[-1].start_pos
        return after[-1] if abs(gap - period) <= self.shrunk_tolerance * period else None

    def _beat_sign(self, known: list[Lobe]) -> int:
        stretch = self._stretch_sign(known)
        if stretch:
            return -stretch
        if self.polarity == "size":
            amp = {s: [abs(lb.peak) for lb in known if lb.sign == s] for s in (1, -1)}
            if amp[1] and amp[-1]:
                return 1 if median(amp[1]) >= median(amp[-1]) else -1
            return known[0].sign
        rise = {s: [lb.peak_pos - lb.start_pos for lb in known if lb.sign == s] for s in (1, -1)}
        if rise[1] and rise[-1]:
            med = {s: median(r) for s, r in rise.items()}
            if med[1] != med[-1]:
                return 1 if med[1] < med[-1] else -1
        return known[0].sign

    def _stretch_sign(self, known: list[Lobe]) -> int:
        """The direction of the stretch that set the rhythm off, or 0 if none is seen.

        The stretch that elicits clonus turns the joint one way, by far more than a beat
        swings it; each reflex contraction then pulls it back the other way. So the half-
        cycles against the stretch are the contractions, whichever of the two is quicker
        (both models of clonus here agree on this, and not on which phase is quick).
        Counting them times the sixth beat's decision inside that beat: counting the
        return instead put it at the end of a 6-beat episode, or after it.

        The stretch is the largest rotation (`rotation`) from `stretch_window` before
        the chain's first lobe to one period after it, seen only when over
        `stretch_swings` times the rhythm's own swing. Judged once per first lobe, so a
        chain's beats do not change sign as it grows."""
        if self.rotation is None:
            return 0
        first = known[0].start_pos
        cached = self.chain.stretch
        if cached is not None and cached[0] == first:
            return cached[1]
        periods = self._periods(known)
        if not periods.size:
            return 0  # no rhythm yet to compare the turn with: judged later
        period = median(periods)
        turn, at = self.rotation(first - self.stretch_window, first + round(period))
        swing = rhythm_swing(self._amplitude(known), period, self.fs)
        sign = 0
        if abs(turn) > self.stretch_swings * swing:
            sign = 1 if turn > 0 else -1
        self.chain.stretch = (first, sign, at)
        return sign

    def _check(self, pos: int) -> list[EpisodeEvent]:
        if self.sustained:
            return []
        core = self._core()
        beats = self._beat_lobes(core)  # once per check: the rules below all judge these
        if self._resumes(len(beats)):
            return []
        bank = self._matching_bank() if len(beats) >= 2 and not self.chain.bank_refused else None
        carried = bank.beats if bank is not None else 0
        if len(beats) + carried <= self.p.threshold_beats:
            return []
        if self._weak_last_beat(beats):
            return self._refuse("weak_last_beat")
        if self._start_unseen():
            return self._refuse("start_not_seen")
        if self.chain.lobes[0].start_pos - self._rhythm_end < self.rearm:
            # Rhythm that broke and re-formed without a rest in between is ongoing
            # oscillation (tremor, or the rest of an episode already reported), not a
            # new clonus: that starts from rest or from a stretch.
            return self._refuse("no_rest_before")
        if self._ran_on_before(core, beats):
            return self._refuse("max_lead_in")
        unlike = self._unlike_clonus(core)
        if unlike is not None:
            return self._refuse(unlike)
        if not self._rhythmic(core):
            return self._refuse("max_period_cv")
        if self._rides_on_movement(core, beats, pos):
            return self._refuse("max_sway")
        if self._beats_unlike(beats):
            return self._refuse("max_beat_spread")
        if self._intervals_alternate(beats):
            return self._refuse("max_interval_swing")
        if not self._clonic_shape(core, pos):
            if bank is not None:
                # Judged on a few beats just after the gap: judge once more, as any chain
                # is, when this chain's own count passes the threshold.
                self.chain.bank_refused, self.chain.harmonics = True, None
            return self._refuse("min_harmonic_ratio")
        if not self._rests_between_bursts(core, pos):
            return self._refuse("max_envelope_floor")
        if not self._short_bursts(core, pos):
            return self._refuse("max_burst_s")
        if self._alternates(beats):
            return self._refuse("max_alternation")
        if not self._envelope_repeats(core, pos):
            return self._refuse("min_envelope_rhythm")
        chain = self.chain
        chain.episode = self._next_episode
        self._next_episode += 1
        if bank is not None:
            chain.carried_beats, chain.first_t = bank.reported, bank.onset_t
            chain.bridged, chain.follows = True, bank.follows
            self._bank = None
        chain.last_update_pos = pos
        onset = self._event("clonus.onset", pos)
        if chain.first_t is None:
            # The episode began where its onset said, whatever lobes the growing chain's
            # lead-in rule takes in or leaves out later.
            chain.first_t, chain.first_elicited = onset.onset_t, onset.elicited
        return [onset]

    def _refuse(self, line: str) -> list[EpisodeEvent]:
        """No alarm yet: `line` refused the chain (kept for review, `Unreported`)."""
        self.chain.refused = line
        return []

    def _weak_last_beat(self, beats: list[Lobe]) -> bool:
        """The beat that would take the count past the threshold is far smaller than the
        chain's beats before it (under `onset_beat_ratio` of their median): not yet.

        Clonus fades by a few per cent a beat; a cycle at half the size of the rest is the
        limb and the band-pass ringing after the last contraction, and counting it made
        5-beat episodes 6. If the rhythm goes on, the next full-size beat declares the
        episode, one cycle later."""
        if self.onset_beat_ratio is None:
            return False
        amps = np.abs([lb.peak for lb in beats])
        return bool(amps[-1] < self.onset_beat_ratio * median(amps[:-1]))

    def _resumes(self, beats: int) -> bool:
        """A chain that reached a few beats right after an episode's rhythm broke (within
        the re-arm time) carries that episode on: the held end is dropped, and this chain's
        events count the beats of both parts."""
        held = self._held
        if held is None or beats < self.resume_beats:
            return False
        if self.chain.lobes[0].start_pos - held.last_pos >= self.rearm:
            return False
        self._held = None
        chain = self.chain
        chain.episode = held.end.episode
        chain.carried_beats = held.end.beats
        chain.carried_times = held.end.beat_times
        chain.first_t = held.end.onset_t
        chain.first_elicited = held.end.elicited
        chain.last_update_pos = chain.lobes[-1].start_pos
        return True

    def _start_unseen(self) -> bool:
        """The chain began before the band's signal had run `min_seen_before_s`, and
        the signal has not broken off since: whether the rhythm started from rest or a
        stretch, or was already going when the signal began (a tremor), was not seen.
        A rhythm the signal began in is alarmed only once it has stopped and started
        again. After a break in the signal this does not apply: clonus that goes on
        after a lost link is alarmed afresh (`force_end`)."""
        return self._broke_off_at() < 0 and self.chain.lobes[0].start_pos < self.seen_before

    def _broke_off_at(self) -> int:
        """Where the signal last broke off (a gap, or a fill long enough to end a rhythm);
        -1 if it never has."""
        return max(self._gap_at, self.filled_until)

    def _ran_on_before(self, core: list[Lobe], beats: list[Lobe]) -> bool:
        """The rhythm was already going before its first beat, at more than
        `SiteParams.max_lead_in` of its size: a tremor steadying, or (EMG) bursts out
        of a contraction already held, not clonus starting (`lead_in`). Judged once per
        chain, like the shape. An EMG chain that follows one whose rhythm broke off is
        judged from before that one: a reflex train breaks where a burst is lost, and
        its first piece is not activity before it. Only the signal since it last broke
        off counts: clonus going on after a lost link or a long loss of samples is
        alarmed afresh (`force_end`), not taken for a rhythm that ran on."""
        if self.lead_in is None:
            return False
        if self.chain.lead is None:
            since = self._broke_off_at()
            first = beats[0].start_pos
            if self.counting == "positive" and self.chain.before:
                first = min(first, self.chain.before[0].start_pos)
            self.chain.lead = self.lead_in(first, self._amplitude(core), since)
        return self.chain.lead > self.p.max_lead_in

    def _unlike_clonus(self, core: list[Lobe]) -> str | None:
        """Which of the rate, size and swing lines the chain is outside, if any."""
        periods = self._periods(core)
        if periods.size < 2:
            return "rate_hz"
        rate = self.fs / median(periods)
        if not self.p.rate_hz[0] <= rate <= self.p.rate_hz[1]:
            return "rate_hz"
        amp = self._amplitude(core)
        if amp < self.amplitude_floor:
            return "min_amplitude"
        # The swing: velocity / w (gyroscope) or acceleration / w^2 (accelerometer).
        swing = amp / (2 * np.pi * rate) ** self.excursion_power
        return "max_excursion" if swing > self.max_excursion else None

    def _rides_on_movement(self, core: list[Lobe], beats: list[Lobe], pos: int) -> bool:
        """The rhythm rides on a large movement of the limb: walking, or another
        voluntary movement, not clonus (motion only).

        A foot or shank swings through tens of degrees in every stride, and the stride's
        harmonics make a 3-4 Hz rhythm in the clonus band, with the steps. Clonus moves
        the limb by its own small swing around a held position (research: it "does not
        produce very large involuntary actions"; gait shows stride-band dominance). So
        the limb's movement slower than the rhythm (`sway`: how far it went both one
        way and back, in units of the rhythm's own movement) must stay under
        `max_sway`. It is measured from the second beat on, as the first may be the
        stretch's own end; a stretch's slow release goes one way only and does not
        count. Where real gait (healthy walkers, foot IMUs: `benchmarks/real_gait.py`)
        alarmed, gyroscope chains swayed 1.5-50 of the rhythm's swings (median 10),
        clonus on the tuning, check and held-out seeds at most 1.6; the accelerometer's
        chains moved 0.55-9 times the rhythm's acceleration (median 1.6), clonus at
        most 0.42 (531 onsets).
        """
        if self.sway is None:
            return False
        period = median(self._periods(core))
        self.chain.movement = self.sway(beats[1].start_pos, pos, period, self._amplitude(core))
        return self.chain.movement > self.max_sway

    def _beats_unlike(self, beats: list[Lobe]) -> bool:
        """The beats that took the chain past the threshold differ in size by more than
        one reflex loop's contractions do (`SiteParams.max_beat_spread`; motion only).

        Clonus repeats one contraction, growing or fading steadily; the first or last
        steps of a walk mix stride swings with small knocks of the foot at the same
        3-4 Hz. So the peaks' scatter about their straight-line trend (root mean square,
        over their mean) is judged, not their spread: a steady build-up or fade is no
        scatter. The first beat (it may carry the stretch's end) and inferred beats (no
        peak was seen) are left out; fewer than three peaks say nothing. None: not
        measured (EMG); inf: measured and reported, never refused."""
        if self.max_beat_spread is None:
            return False
        self.chain.scatter = None  # reported as judged at this check, never an earlier one
        amps = np.abs([b.peak for b in beats[1:] if not b.inferred])
        amps = amps[-self.p.threshold_beats :]
        if amps.size < 3:
            return False
        k = np.arange(amps.size)
        trend = np.polyval(np.polyfit(k, amps, 1), k)
        self.chain.scatter = float(np.sqrt(np.mean((amps - trend) ** 2)) / np.mean(amps))
        return self.chain.scatter > self.max_beat_spread

    def _intervals_alternate(self, beats: list[Lobe]) -> bool:
        """The intervals between the beats that took the chain past the threshold go
        short, long, short, long: two kinds of event in each cycle of a slower movement,
        not one reflex loop (`SiteParams.max_interval_swing`; motion only).

        One loop repeats at one period, drifting slowly; a shuffling or trembling foot
        (freezing of gait) makes two peaks per step at uneven spacing. Judged as the mean
        change from one interval to the next over their mean. Intervals next to an
        inferred beat (its place is the rhythm's guess) are left out, and so is one
        interval of about two periods or more (a beat under the threshold); fewer than
        two pairs of intervals say nothing. None: not measured (EMG); inf: measured and
        reported, never refused."""
        if self.max_interval_swing is None:
            return False
        self.chain.swing = None  # reported as judged at this check, never an earlier one
        seen = sorted(beats[1:], key=lambda b: b.peak_pos)[-(self.p.threshold_beats + 1) :]
        gaps = np.diff([b.peak_pos for b in seen]).astype(float)
        usable = np.array([not (a.inferred or b.inferred) for a, b in pairwise(seen)])
        if np.count_nonzero(usable) < 3:
            return False
        long = usable & (gaps >= 1.6 * median(gaps[usable]))
        if np.count_nonzero(long) == 1:
            usable &= ~long  # one missed beat; two or more are the pattern itself
        pairs = usable[1:] & usable[:-1]
        if np.count_nonzero(pairs) < 2:
            return False
        swing = np.mean(np.abs(np.diff(gaps))[pairs]) / np.mean(gaps[usable])
        self.chain.swing = float(swing)
        return self.chain.swing > self.max_interval_swing

    def _rhythmic(self, core: list[Lobe]) -> bool:
        """The chain's cycles are as even as one reflex loop makes them: their standard
        deviation is at most `max_period_cv` of their mean.

        Each period need only stay near the running median, so a chain of chance peaks in
        tonic activity can drift and jitter its way to the count (`SiteParams.max_period_cv`:
        EMG only, where bursts are timed precisely)."""
        periods = self._periods(core)
        return bool(np.std(periods) <= self.max_period_cv * np.mean(periods))

    def _clonic_shape(self, core: list[Lobe], pos: int) -> bool:
        """The cycles are not a clean sine (motion only; see `dsp.waveform`).

        Judged once, when the chain first reaches the count: re-judging a figure at every
        lobe would let a long sine through on a chance fluctuation."""
        if self.shape is None:
            return True
        chain = self.chain
        if chain.harmonics is None:
            chain.harmonics, chain.harmonic_line = self.shape(pos, median(self._periods(core)))
        return chain.harmonics >= chain.harmonic_line * self.p.min_harmonic_ratio

    def _rests_between_bursts(self, core: list[Lobe], pos: int) -> bool:
        """EMG: the envelope falls back to rest between bursts (see
        `SiteParams.max_envelope_floor`). Judged once per chain, like the shape."""
        if self.envelope_floor is None:
            return True
        if self.chain.floor is None:
            self.chain.floor = self.envelope_floor(core[0].start_pos, pos)
        return self.chain.floor <= self.p.max_envelope_floor

    def _short_bursts(self, core: list[Lobe], pos: int) -> bool:
        """EMG: each burst is as short as a reflex (see `SiteParams.max_burst_s`).
        Judged once per chain, like the floor."""
        if self.burst_time is None:
            return True
        if self.chain.burst_s is None:
            period = median(self._periods(core))
            self.chain.burst_s = self.burst_time(core[0].start_pos, pos, period)
        return self.chain.burst_s <= self.p.max_burst_s

    def _envelope_repeats(self, core: list[Lobe], pos: int) -> bool:
        """EMG: the envelope's rise and fall repeats from burst to burst, as one reflex
        loop's does, rather than wandering like a held contraction's (see
        `SiteParams.min_envelope_rhythm`). Judged at every check: a short chain's figure
        is noisy, and a true rhythm's grows firmer as it goes on."""
        if self.envelope_rhythm is None:
            return True
        period = median(self._periods(core))
        self.chain.rhythm = self.envelope_rhythm(core[0].start_pos, pos, period)
        return self.chain.rhythm is None or self.chain.rhythm >= self.p.min_envelope_rhythm

    def _alternates(self, beats: list[Lobe]) -> bool:
        """EMG: the bursts that took the count past the threshold are big and small in
        turn, every small one under `alternation_ratio` of every big one. A reflex loop
        makes one burst a cycle, each the size of the last as clonus fades; a burst that
        always comes in two humps of unequal size (a step's burst in walking) makes two
        "beats" a cycle, at twice its rate. Judged once per chain, like the floor."""
        if self.alternation_ratio is None:
            return False
        if self.chain.alternating is None:
            amps = np.abs([lb.peak for lb in beats])
            last = amps[-(self.p.threshold_beats + 1) :]
            odd, even = last[0::2], last[1::2]
            small, big = (odd, even) if np.median(odd) < np.median(even) else (even, odd)
            self.chain.alternating = bool(small.max() < self.alternation_ratio * big.min())
        return self.chain.alternating

    # -- figures -------------------------------------------------------------------------

    @staticmethod
    def _amplitude(core: list[Lobe]) -> float:
        amps = np.abs([lb.peak for lb in core if lb.closed])
        return median(amps) if amps.size else 0.0

    def _event(self, kind: str, pos: int, **extra: object) -> EpisodeEvent:
        # The chain does not change while one event is built: find its core once.
        core = self._core()
        beats = self._beat_lobes(core)
        periods = self._periods(core)
        chain = self.chain
        first_t = chain.first_t if chain.first_t is not None else self.to_time(beats[0].start_pos)
        last_t = self.to_time(beats[-1].start_pos) if beats else first_t
        duration = last_t - first_t
        if periods.size:
            mean_period = float(np.mean(periods))
            cv = float(np.std(periods) / mean_period)
            freq = self.fs / mean_period
        else:
            cv, freq = 1.0, 0.0
        regularity = max(0.0, 1.0 - cv)
        amp = self._amplitude(core)
        payload: dict[str, object] = {"scats_clonus": scats_class(duration)}
        if self.chain.harmonics is not None:
            # None: no harmonic inside the band's recorded range, so the shape was not judged.
            h = self.chain.harmonics
            payload["harmonic_ratio"] = round(h, 4) if np.isfinite(h) else None
        if self.chain.floor is not None:
            payload["envelope_floor"] = round(self.chain.floor, 4)
        if self.chain.burst_s is not None:
            payload["burst_s"] = round(self.chain.burst_s, 4)
        if self.chain.rhythm is not None:
            payload["envelope_rhythm"] = round(self.chain.rhythm, 4)
        if self.chain.movement is not None:
            payload["limb_movement"] = round(self.chain.movement, 2)
        if self.chain.scatter is not None:
            payload["beat_scatter"] = round(self.chain.scatter, 2)
        if self.chain.swing is not None:
            payload["interval_swing"] = round(self.chain.swing, 2)
        if self.chain.lead is not None:
            payload["lead_in"] = round(self.chain.lead, 2)
        if chain.bridged and chain.carried_beats:
            payload["carried_beats"] = chain.carried_beats  # counted before a signal gap
        if chain.follows is not None:
            payload["follows_episode"] = chain.follows  # ended by a gap, goes on here
        inferred = sum(b.inferred for b in beats)
        if inferred:
            payload["inferred_beats"] = inferred  # placed by the rhythm, not seen
        if self.report_beats:
            payload["beat_times_s"] = [round(self.to_time(b.start_pos), 4) for b in beats]
        payload.update(extra)
        return EpisodeEvent(
            event=kind,  # type: ignore[arg-type]
            t=self.to_time(pos),
            episode=self.chain.episode or 0,
            beats=chain.carried_beats + len(beats),
            frequency_hz=freq,
            amplitude=amp,
            amplitude_unit=self.amplitude_unit,
            regularity=regularity,
            onset_t=first_t,
            last_beat_t=last_t,
            duration_s=duration,
            elicited=chain.first_elicited
            if chain.first_t is not None
            else bool(core) and core[0] is not chain.lobes[0],
            extra=payload,
            beat_times=chain.carried_times + tuple(self.to_time(b.peak_pos) for b in beats),
        )

    def _finish(
        self, pos: int, reason: str = "rhythm_stopped", gap: bool = False, bridge: bool = True
    ) -> list[EpisodeEvent]:
        events: list[EpisodeEvent] = []
        lobes = self.chain.lobes
        if (
            reason == "rhythm_stopped"
            and lobes
            and not self.sustained  # an alarmed episode is held and may resume (`_Held`)
            and self.filled_until > lobes[-1].start_pos
        ):
            reason, gap = "signal_gap", True  # it stopped, or broke, where samples were lost
        if gap or len(lobes) >= 4:
            # A rhythm that formed and stopped with the signal present carries nothing on.
            self._bank = self._bank_of_chain(pos) if gap and bridge else None
        beats = self._beat_lobes(self._core()) if lobes else []
        if self.report_beats and not self.sustained and beats:
            times = [round(self.to_time(b.start_pos), 4) for b in beats]
            self.unreported.append(Unreported(times, self.chain.refused))
        if self.sustained:
            end = self._event("clonus.end", pos, end_reason=reason)
            if reason == "rhythm_stopped":
                # Not yet: the rhythm may resume within the re-arm time (`_resumes`).
                self._held = _Held(end, self.chain.lobes[-1].start_pos)
            else:
                events.append(end)
        # Broken off by a gap, an alarmed episode or a chain still counting up is no
        # rhythm that ran its course: it does not hold off what comes after the gap.
        counted = len(beats)
        cut_short = gap and (self.sustained or counted <= self.p.threshold_beats)
        if (
            lobes
            and not cut_short
            and (
                counted > self.p.threshold_beats
                or lobes[0].start_pos - self._rhythm_end < self.rearm
            )
        ):
            # A rhythm counted past the threshold (not its half-cycles: a stretch's lobes
            # are none of its beats), or a piece of one that broke and re-formed without a
            # rest.
            self._rhythm_end = lobes[-1].start_pos
        self.chain = _Chain()
        return events
