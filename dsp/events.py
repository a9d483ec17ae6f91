"""Episode events: what the detector measured, as plain data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal["clonus.onset", "clonus.update", "clonus.end"]


@dataclass(frozen=True)
class EpisodeEvent:
    """One onset, update or end of a sustained-clonus episode.

    Figures are what the detector measured on the signal so far: `beats` counted
    contractions, `frequency_hz` their mean rate, `amplitude` the median half-cycle size in
    the sensor's unit, and `regularity` 1 minus the coefficient of variation of the
    inter-beat intervals. There is no confidence figure: the former 0-1 heuristic was not
    calibrated (on fresh generator seeds the share of its onsets that were true did not
    follow it), and an uncalibrated figure reads as a probability it is not.
    """

    event: EventKind
    t: float  # signal time (recording / sensor clock) at which this was decided
    episode: int
    beats: int
    frequency_hz: float
    amplitude: float
    amplitude_unit: str
    regularity: float
    onset_t: float  # signal time of the first counted contraction
    last_beat_t: float
    duration_s: float
    elicited: bool  # a stretch transient was seen right before the first contraction
    extra: dict[str, Any] = field(default_factory=dict)
    # Signal time of each counted contraction's peak, oldest first; for evidence snippets,
    # not part of the event's figures (`to_dict` leaves it out).
    beat_times: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        d.pop("beat_times")
        for key in (
            "t",
            "frequency_hz",
            "amplitude",
            "regularity",
            "onset_t",
            "last_beat_t",
            "duration_s",
        ):
            d[key] = round(float(d[key]), 4)
        d.update(extra)
        return d


def scats_class(duration_s: float) -> int:
    """SCATS clonus score from duration: 1 (<3 s), 2 (3-10 s), 3 (>10 s)."""
    if duration_s < 3.0:
        return 1
    return 2 if duration_s <= 10.0 else 3
