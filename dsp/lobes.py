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

from clonusd.dsp.filters import FloatArray


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
    # Not seen: a half-cycle the rhythm on both sides places inside samples lost in a gap,
    # or (EMG, inside an alarmed episode) a burst that stayed under the line.
    inferred: bool = False
    # EMG bursts: how many samples the envelope stayed above half the burst's height.
    width: int = 0


class LobeTracker:
    """Streams `(positions, values, threshold)` in; returns lobes as they start and close.

    Each returned item is `(lobe, started)`: `started` True for a new lobe (peak not yet
    final), False when that same object has just been completed.
    """

    def __init__(self, max_quiet: int) -> None:
        self.max_quiet = max_quiet
        self._open: Lobe | None = None
        self._last_active = 0

    def reset(self) -> None:
        self._open = None

    def process(self, pos: np.ndarray, y: FloatArray, h: float) -> list[tuple[Lobe, bool]]:
        out: list[tuple[Lobe, bool]] = []
        if y.size == 0:
            return out
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
                else:
                    if lobe is not None:
                        lobe.closed, lobe.close_pos = True, start_pos
                        out.append((lobe, False))
                    lobe = Lobe(s, start_pos, float(seg[k]), int(pos[idx[k]]))
                    self._open = lobe
                    out.append((lobe, True))
                self._last_active = int(pos[idx[-1]])
        self._timeout(int(pos[-1]), out)
        return out

    def _timeout(self, now: int, out: list[tuple[Lobe, bool]]) -> None:
        """Close the open lobe if the signal has been quiet for longer than max_quiet."""
        if self._open is not None and now - self._last_active > self.max_quiet:
            self._open.closed = True
            self._open.close_pos = self._last_active + self.max_quiet
            out.append((self._open, False))
            self._open = None
