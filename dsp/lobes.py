"""Half-cycle (lobe) extraction from the oscillation signal, with hysteresis.

A lobe is one excursion of the band-passed signal beyond +h or below -h. It is reported
twice: when it starts (the threshold crossing, the earliest moment a contraction can be
counted, which keeps alarm latency low) and when it is complete (the opposite crossing
half a cycle later, or a quiet spell), with its extreme value. Counting excursions beyond
a threshold, not raw local maxima, keeps noise ripples and filter ringing from becoming
beats. Only threshold crossings are visited in Python; samples are handled by numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsp.filters import FloatArray


@dataclass
class Lobe:
    """One half-cycle: its sign, where it crossed the threshold, and (once complete) its
    extreme value and position."""

    sign: int
    start_pos: int
    peak: float = 0.0
    peak_pos: int = 0
    closed: bool = False
    close_pos: int = 0
    start_frac: float | None = None  # the threshold crossing, interpolated between samples
    peak_before: float | None = None  # the samples either side of the peak, for
    peak_after: float | None = None  # interpolating where it fell between samples

    @property
    def rise(self) -> float:
        """Samples from the threshold crossing to the peak, to a fraction of a sample: at
        50 Hz whole samples are too coarse to tell a quick phase from a slow one."""
        start = self.start_frac if self.start_frac is not None else float(self.start_pos)
        peak = float(self.peak_pos)
        a, b, c = self.peak_before, self.peak, self.peak_after
        if a is not None and c is not None and (a - 2 * b + c) != 0:
            peak += float(np.clip(0.5 * (a - c) / (a - 2 * b + c), -0.5, 0.5))
        return peak - start


class LobeTracker:
    """Streams `(positions, values, threshold)` in; returns lobes as they start and close.

    Each returned item is `(lobe, started)`: `started` True for a new lobe (peak not yet
    final), False when that same object has just been completed.
    """

    def __init__(self, max_quiet: int) -> None:
        self.max_quiet = max_quiet
        self._open: Lobe | None = None
        self._last_active = 0
        self._last_y: float | None = None  # the previous chunk's last sample
        self._awaiting_after: Lobe | None = None  # its peak was that last sample

    def reset(self) -> None:
        self._open = None
        self._last_y = None
        self._awaiting_after = None

    def process(self, pos: np.ndarray, y: FloatArray, h: float) -> list[tuple[Lobe, bool]]:
        out: list[tuple[Lobe, bool]] = []
        if y.size == 0:
            return out
        if self._awaiting_after is not None:
            self._awaiting_after.peak_after = float(y[0])
            self._awaiting_after = None
        state = np.where(y > h, 1, np.where(y < -h, -1, 0))
        active = np.flatnonzero(state)
        if active.size:
            signs = state[active]
            change = np.flatnonzero(np.diff(signs)) + 1
            run_starts = np.concatenate(([0], change))
            run_ends = np.concatenate((change, [signs.size]))
            for rs, re in zip(run_starts, run_ends, strict=True):
                s = int(signs[rs])
                idx = active[rs:re]
                seg = y[idx]
                k = int(np.argmax(seg) if s > 0 else np.argmin(seg))
                start_pos = int(pos[idx[0]])
                self._timeout(start_pos - 1, out)
                lobe = self._open
                if lobe is not None and lobe.sign == s:
                    if (seg[k] > lobe.peak) if s > 0 else (seg[k] < lobe.peak):
                        lobe.peak, lobe.peak_pos = float(seg[k]), int(pos[idx[k]])
                        self._neighbours(lobe, y, int(idx[k]))
                else:
                    if lobe is not None:
                        lobe.closed, lobe.close_pos = True, start_pos
                        out.append((lobe, False))
                    lobe = Lobe(s, start_pos, float(seg[k]), int(pos[idx[k]]))
                    before = y[idx[0] - 1] if idx[0] > 0 else self._last_y
                    if before is not None and y[idx[0]] != before:
                        frac = (s * h - before) / (y[idx[0]] - before)
                        lobe.start_frac = start_pos - 1 + float(np.clip(frac, 0.0, 1.0))
                    self._neighbours(lobe, y, int(idx[k]))
                    self._open = lobe
                    out.append((lobe, True))
                self._last_active = int(pos[idx[-1]])
        self._timeout(int(pos[-1]), out)
        self._last_y = float(y[-1])
        return out

    def _neighbours(self, lobe: Lobe, y: FloatArray, j: int) -> None:
        """Keep the samples either side of the lobe's peak (the next may come later)."""
        lobe.peak_before = float(y[j - 1]) if j > 0 else self._last_y
        if j + 1 < y.size:
            lobe.peak_after = float(y[j + 1])
            if self._awaiting_after is lobe:
                self._awaiting_after = None
        else:
            lobe.peak_after = None
            self._awaiting_after = lobe

    def _timeout(self, now: int, out: list[tuple[Lobe, bool]]) -> None:
        """Close the open lobe if the signal has been quiet for longer than max_quiet."""
        if self._open is not None and now - self._last_active > self.max_quiet:
            self._open.closed = True
            self._open.close_pos = self._last_active + self.max_quiet
            out.append((self._open, False))
            self._open = None
