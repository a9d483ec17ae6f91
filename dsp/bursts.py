"""EMG bursts: one peak of the muscle's activity envelope per contraction.

A clonic contraction is one reflex burst of tens of milliseconds followed by a silent
period (shared/research, sections 1 and 3), so on the smoothed EMG amplitude each beat is
one peak that rises from the level between bursts and falls back towards it. A peak is
confirmed once the envelope has fallen from it by its prominence: at least `k_floor`
times the resting level (so noise at rest makes no bursts) and at least `rel` of the
peak's height above rest (so a ripple on a burst is not a second one). A peak less than
a refractory time after the last one is part of that burst: each clonic discharge is
followed by a refractory period. A hump that lasts far longer than the recent bursts,
half a period late, is two bursts the envelope did not part (`_merged`; a rhythm's
first humps are judged from the bursts after them, `unmerge`). Bursts are handed on as
alternating half-cycles (`Lobe`: the burst, then the trough before the next burst), so
the episode stage counts bursts with the rules it applies to motion cycles.

Counting peaks of the envelope itself, rather than lobes of its band-passed oscillation,
keeps one beat per burst whatever the burst's width: narrow bursts are rich in harmonics
that the clonus band-pass lets through as extra lobes.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from clonusd.dsp.filters import FloatArray
from clonusd.dsp.lobes import Lobe
from clonusd.dsp.ringbuffer import RingBuffer
from clonusd.dsp.stats import median


class BurstTracker:
    """Streams `(positions, envelope, rest level)` in; returns each burst as it is
    confirmed, preceded by the trough that parted it from the one before.

    Positions are the envelope's consecutive sample indices. A burst is timed at the
    centre of the envelope's mass above half its height, once the envelope has fallen
    there (or, sooner, at the trough before the next burst): a broad burst's envelope is
    a noisy plateau whose highest point wanders by tens of ms, its centre far less.
    """

    def __init__(
        self,
        refractory: int,
        max_gap: int,
        k_floor: float = 3.0,
        rel: float = 0.3,
        minor: float = 0.3,
        merged_after: tuple[float, float] = (1.3, 1.75),
        merged_width: float = 1.8,
    ) -> None:
        self.refractory = refractory  # the shortest time between two bursts
        self.max_gap = max_gap  # bursts further apart than this start a new rhythm
        self.memory = 2 * max_gap  # how long a burst is a reference for the next
        self.k_floor = k_floor
        self.rel = rel
        self.minor = minor
        self.merged_after = merged_after  # in recent periods after the last burst
        self.merged_width = merged_width  # times the recent bursts' time above half height
        self._recent = RingBuffer(max_gap + 1, 1)  # the envelope a burst is timed on
        self._peaks = True  # looking for a peak (else for the trough after one)
        self._ext = -np.inf  # the running extreme since the last turn
        self._ext_pos = 0
        self._trough_pos = 0  # where the last trough was
        self._peak: Lobe | None = None  # the last burst handed on
        self._trough: Lobe | None = None  # the trough after it, not yet handed on
        # A peak found but not yet timed: (value, position, half its height, window start).
        self._pending: tuple[float, int, float, int] | None = None
        self._bursts: deque[Lobe] = deque(maxlen=4)  # the last bursts handed on

    def reset(self) -> None:
        self._pending = None
        self._peaks = True
        self._ext = -np.inf
        self._peak = None
        self._trough = None
        self._bursts.clear()

    def process(
        self, pos: np.ndarray, env: FloatArray, rest: float, infer_missed: bool = False
    ) -> list[Lobe]:
        """Feed envelope samples `env` at positions `pos` (the resting level `rest`);
        returns the bursts (and troughs before them) confirmed in them. With
        `infer_missed`, a burst the rhythm says was missed is handed on too (`_missed`).

        A plain loop over Python floats: a tenth of a second comes at a time, and numpy's
        cost per call over so few samples is several times the comparisons'."""
        out: list[Lobe] = []
        self._recent.push(env)
        floor = self.k_floor * rest
        newest = int(pos[-1])
        values, where = env.tolist(), pos.tolist()
        i, n = 0, len(values)
        while i < n:
            if self._peaks:
                hit = self._next_fall(values, where, i, rest, floor)
                if hit is None:
                    return out
                # A peak: its centre is found once the envelope has fallen further.
                start = max(self._trough_pos, self._ext_pos - self.max_gap // 2)
                half = rest + 0.5 * (self._ext - rest)
                self._pending = (self._ext, self._ext_pos, half, start)
            else:
                hit, emit = self._next_rise(values, where, i, floor)
                if emit is not None:
                    # A burst is timed once the envelope has fallen to half its height.
                    out += self._emit(rest, where[emit], values[emit], newest, infer_missed)
                    i = emit + 1
                    continue
                if hit is None:
                    return out
                self._trough_pos = self._ext_pos
                if self._pending is not None:  # the next burst rose before this one fell
                    out += self._emit(rest, self._ext_pos, self._ext, newest, infer_missed)
                if self._trough is None or self._ext < self._trough.peak:
                    # Its depth is set when the next burst comes; after a hump that was
                    # no burst, the lower of the two troughs parts the bursts.
                    at = where[hit]
                    self._trough = Lobe(-1, self._ext_pos, self._ext, self._ext_pos, True, at)
            self._peaks = not self._peaks
            self._ext, self._ext_pos = values[hit], where[hit]
            i = hit
        return out

    def _next_fall(
        self, values: list[float], where: list[int], i: int, rest: float, floor: float
    ) -> int | None:
        """Follow the peak (`_ext`) from index `i` on; the index where the envelope has
        fallen from it by its prominence, or None."""
        ext, ext_pos = self._ext, self._ext_pos
        line = rest + floor
        for j in range(i, len(values)):
            v = values[j]
            if v > ext:
                ext, ext_pos = v, where[j]
            if ext >= line and v < ext - max(floor, self.rel * (ext - rest)):
                self._ext, self._ext_pos = ext, ext_pos
                return j
        self._ext, self._ext_pos = ext, ext_pos
        return None

    def _next_rise(
        self, values: list[float], where: list[int], i: int, floor: float
    ) -> tuple[int | None, int | None]:
        """Follow the trough (`_ext`) from index `i` on: (the index where the envelope
        has risen from it by `floor`, None), or (None, the index where the pending
        burst's envelope has fallen to half its height, if that comes first), or (None,
        None)."""
        ext, ext_pos = self._ext, self._ext_pos
        half = self._pending[2] if self._pending is not None else None
        for j in range(i, len(values)):
            v = values[j]
            if v > ext + floor:
                self._ext, self._ext_pos = ext, ext_pos
                return j, None
            if v < ext:
                ext, ext_pos = v, where[j]
            if half is not None and v <= half:
                self._ext, self._ext_pos = ext, ext_pos
                return None, j
        self._ext, self._ext_pos = ext, ext_pos
        return None, None

    def _emit(
        self, rest: float, at: int, level: float, newest: int, infer_missed: bool
    ) -> list[Lobe]:
        """Hand on the pending burst, timed over its envelope above `level` up to `at`,
        and the trough before it."""
        assert self._pending is not None
        height, peak_pos, half, start = self._pending
        self._pending = None
        centre = self._centre(start, at, level, newest, peak_pos)
        burst = Lobe(1, centre, height - rest, peak_pos, True, at)
        last, trough = self._peak, self._trough
        recent = [b for b in self._bursts if burst.start_pos - b.start_pos <= self.memory]
        if last is not None and burst.start_pos - last.start_pos < self._refractory(recent):
            return []  # a second hump of the same burst
        if recent and burst.peak < self.minor * median(b.peak for b in recent):
            return []  # a ripple between bursts far larger than it
        burst.width = self._above(start, at, half, newest)
        pair = self._merged(burst, recent, rest, newest)
        self._bursts.append(burst)
        self._trough = None
        self._peak = burst
        if last is None or trough is None or burst.start_pos - last.start_pos > self.max_gap:
            return [burst]
        if pair is None and infer_missed:
            unseen = self._missed(burst, last, recent)
            if unseen is not None:
                # Both silences are as deep as the one seen, half-way between bursts.
                depth = self._silence(trough, last, burst, rest)
                before = (last.start_pos + unseen.start_pos) // 2
                after = (unseen.start_pos + burst.start_pos) // 2
                trough.peak, trough.start_pos, trough.peak_pos = depth, before, before
                second = Lobe(-1, after, depth, after, True, burst.close_pos)
                self._bursts.pop()
                self._bursts.extend((unseen, burst))
                return [trough, unseen, second, burst]
        if pair is not None:
            first, inner, second = pair
            trough.peak = self._silence(trough, last, first, rest)
            trough.start_pos = trough.peak_pos = (last.start_pos + first.start_pos) // 2
            self._bursts[-1] = second
            self._peak = second
            return [trough, first, inner, second]
        # The trough's size is how far the envelope fell between the two bursts; it is
        # placed half-way between them, as the bursts time the rhythm (the lowest point of
        # a silent period is anywhere in it).
        trough.peak = self._silence(trough, last, burst, rest)
        trough.start_pos = trough.peak_pos = (last.start_pos + burst.start_pos) // 2
        return [trough, burst]

    @staticmethod
    def _silence(trough: Lobe, before: Lobe, after: Lobe, rest: float) -> float:
        """The size of the silence `trough` between bursts `before` and `after` (as a
        negative half-cycle): how far the envelope fell from the smaller of them."""
        return -(min(before.peak, after.peak) + rest - trough.peak)

    def _merged(
        self, burst: Lobe, recent: list[Lobe], rest: float, newest: int
    ) -> tuple[Lobe, Lobe, Lobe] | None:
        """Two bursts the envelope did not part, as (first, trough, second), or None.

        At 7-9 Hz a reflex burst can last most of a cycle, and two in a row then make one
        hump timed between them: half a period late for the first and early for the
        second, which breaks the rhythm. Taken for two when the recent bursts keep an even
        period, the hump came `merged_after` periods after the last burst (1.5 for two
        merged), and it stays above half its height `merged_width` times as long as they
        did. On the tuning and check seeds a width line of 1.5 also split late or wide
        single bursts, which broke two 30-beat episodes; lines from 1.7 to 2.2 gave the
        same figures as 1.8."""
        if self._peak is None:
            return None
        period = self._two_in_one(burst, burst.start_pos - self._peak.start_pos, recent)
        if period is None:
            return None
        first, second = self._halves(burst, period)
        dip = self._lowest(first.start_pos, second.start_pos, newest)
        depth = -(burst.peak + rest - dip) if dip is not None else -0.5 * burst.peak
        mid = (first.start_pos + second.start_pos) // 2
        inner = Lobe(-1, mid, min(depth, -1e-12), mid, True, burst.close_pos)
        return first, inner, second

    def _missed(self, burst: Lobe, last: Lobe, recent: list[Lobe]) -> Lobe | None:
        """The burst due between `last` and `burst`, inferred (`Lobe.inferred`), when the
        recent bursts keep an even period and `burst` came about two of them after
        `last`: one cycle's burst stayed under the line, and the rhythm went on."""
        period = self._even_period(recent)
        gap = burst.start_pos - last.start_pos
        if (
            period is None
            or not self.missed_after[0] * period <= gap <= self.missed_after[1] * period
        ):
            return None
        at = (last.start_pos + burst.start_pos) // 2
        size = min(last.peak, burst.peak)
        return Lobe(1, at, size, at, True, burst.close_pos, inferred=True, width=last.width)

    missed_after = (1.6, 2.4)  # in recent periods after the last burst

    def unmerge(self, beats: list[Lobe]) -> list[Lobe]:
        """`beats`, one rhythm's bursts in order, with each of its first three that is
        two bursts the envelope did not part handed on as two: `_merged` seen from the
        bursts after it, since early in a rhythm too few bursts before it show the
        period. A hump after the first must also come as late after the burst before."""
        head: list[Lobe] = []
        low, high = self.merged_after
        for i, hump in enumerate(beats[:3]):
            later = beats[i + 1 : i + 5]
            gap = later[0].start_pos - hump.start_pos if later else 0
            period = self._two_in_one(hump, gap, later)
            if (
                period is not None
                and i > 0
                and not low * period <= hump.start_pos - beats[i - 1].start_pos <= high * period
            ):
                period = None
            head += self._halves(hump, period) if period is not None else (hump,)
        return [*head, *beats[3:]]

    def _two_in_one(self, hump: Lobe, gap: int, rhythm: list[Lobe]) -> float | None:
        """The period of `rhythm` (three or more bursts, an even period), if `hump`,
        `gap` samples from the nearest of them, is two bursts in one (see `_merged`).
        Asked at every check of a young EMG chain, so the width, the cheapest and most
        telling line, is judged first."""
        if len(rhythm) < 3 or hump.width < self.merged_width * median(b.width for b in rhythm):
            return None
        period = self._even_period(rhythm)
        low, high = self.merged_after
        return period if period is not None and low * period <= gap <= high * period else None

    @staticmethod
    def _even_period(rhythm: list[Lobe]) -> float | None:
        """The median period of `rhythm`'s bursts, when three or more keep it within 0.2
        (standard deviation over it)."""
        if len(rhythm) < 3:
            return None
        gaps = np.diff([b.start_pos for b in rhythm])
        period = median(gaps)
        return period if period > 0 and float(np.std(gaps)) <= 0.2 * period else None

    @staticmethod
    def _halves(hump: Lobe, period: float) -> tuple[Lobe, Lobe]:
        """The two bursts of a merged `hump`, half a `period` either side of it."""
        half = round(period / 2)
        first_pos, second_pos = hump.start_pos - half, min(hump.start_pos + half, hump.close_pos)
        first = Lobe(1, first_pos, hump.peak, first_pos, True, hump.close_pos, width=hump.width)
        second = Lobe(1, second_pos, hump.peak, second_pos, True, hump.close_pos, width=hump.width)
        return first, second

    def _above(self, first: int, last: int, level: float, newest: int) -> int:
        """How many envelope samples over positions `first`-`last` are above `level`."""
        first, values = self._held(first, last, newest)
        return int(np.count_nonzero(values > level))

    def _lowest(self, first: int, last: int, newest: int) -> float | None:
        """The envelope's lowest value over positions `first`-`last`, if all still held."""
        start, values = self._held(first, last, newest)
        return float(np.min(values)) if start == first and values.size else None

    def _held(self, first: int, last: int, newest: int) -> tuple[int, FloatArray]:
        """The envelope over positions `first`-`last` (`newest` the latest pushed), from
        the oldest position still held if `first` is older: (where it starts, values).
        Positions are the caller's, counted back from `newest`, not the buffer's own
        count of rows pushed (`RingBuffer.between`): the tracker does not assume its
        caller's positions started at 0."""
        first = max(first, newest - len(self._recent) + 1)
        if last < first:
            return first, np.empty(0)
        return first, self._recent.latest(newest - first + 1)[: last - first + 1, 0]

    def _refractory(self, recent: list[Lobe]) -> float:
        """Most of the recent bursts' period, and at least `refractory`."""
        if len(recent) < 3:
            return self.refractory
        gaps = np.diff([b.start_pos for b in recent])
        return max(self.refractory, 0.5 * median(gaps))

    def _centre(self, first: int, last: int, level: float, newest: int, peak: int) -> int:
        """Centre of the envelope's mass above `level` over positions `first`-`last`
        (`peak` when there is none)."""
        first, values = self._held(first, last, newest)
        mass = np.maximum(values - level, 0.0)
        total = float(mass.sum())
        if total <= 0:
            return peak
        return first + round(float(np.dot(mass, np.arange(mass.size))) / total)
