"""Scoring the detector on labelled recordings, with the rules of recordings/FORMAT.md.

- A sustained episode (more than five contractions) must get exactly one onset between its
  sixth contraction and its end; latency is counted from the sixth contraction.
- An episode of five or fewer contractions must get no onset.
- Any other onset is a false alarm; those during tremor are counted apart.
- The end event's beat count is compared with the label's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clonusd.daemon.commands.replay import replay_events
from clonusd.daemon.sources.recording import load_recording

END_SLACK_S = 0.0  # onsets must arrive by the labelled end, as FORMAT.md says


@dataclass
class Score:
    recordings: int = 0
    hours: float = 0.0
    sustained: int = 0
    detected: int = 0
    unsustained: int = 0
    rejected: int = 0
    false_alarms: int = 0
    tremor_false_alarms: int = 0
    duplicates: int = 0
    counted: int = 0
    count_within_1: int = 0
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.array(self.latencies) if self.latencies else np.array([np.nan])
        return {
            "recordings": self.recordings,
            "hours": round(self.hours, 3),
            "sustained_episodes": self.sustained,
            "sensitivity": _ratio(self.detected, self.sustained),
            "unsustained_episodes": self.unsustained,
            "unsustained_rejected": _ratio(self.rejected, self.unsustained),
            "false_alarms_per_hour": round(self.false_alarms / self.hours, 2)
            if self.hours
            else None,
            "tremor_false_alarms_per_hour": (
                round(self.tremor_false_alarms / self.hours, 2) if self.hours else None
            ),
            "false_alarms": self.false_alarms,
            "tremor_false_alarms": self.tremor_false_alarms,
            "duplicate_onsets": self.duplicates,
            "beat_count_within_1": _ratio(self.count_within_1, self.counted),
            "latency_median_s": round(float(np.median(lat)), 3),
            "latency_p95_s": round(float(np.percentile(lat, 95)), 3),
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def score_recording(path: Path, score: Score, threshold_beats: int | None = None) -> None:
    rec = load_recording(path)
    events = list(replay_events(rec, threshold_beats))
    onsets = [e for e in events if e["event"] == "clonus.onset"]
    ends = {e["episode"]: e for e in events if e["event"] == "clonus.end"}
    labels = rec.meta.get("labels", [])
    confounders = rec.meta.get("confounders", [])
    score.recordings += 1
    score.hours += rec.duration_s / 3600.0
    used: set[int] = set()
    name = path.stem
    for lab in labels:
        if lab["sustained"]:
            score.sustained += 1
            lo, hi = lab["beat_times_s"][5], lab["end_s"] + END_SLACK_S
            hits = [e for e in onsets if lo <= e["t"] <= hi]
            if hits:
                score.detected += 1
                first = hits[0]
                score.latencies.append(first["t"] - lo)
                score.duplicates += len(hits) - 1
                used.update(id(e) for e in hits)
                end = ends.get(first["episode"])
                if end is not None:
                    score.counted += 1
                    if abs(end["beats"] - lab["beats"]) <= 1:
                        score.count_within_1 += 1
                    else:
                        where = f"{name} @{lab['onset_s']:.1f}s"
                        score.problems.append(f"{where}: counted {end['beats']} of {lab['beats']}")
            else:
                near = [e["t"] for e in onsets if lab["onset_s"] - 1 <= e["t"] <= hi + 1]
                score.problems.append(
                    f"{name} @{lab['onset_s']:.1f}s: missed {lab['beats']}-beat episode"
                    f" (window {lo:.2f}-{hi:.2f}, onsets near: {near})"
                )
        else:
            score.unsustained += 1
            hits = [e for e in onsets if lab["onset_s"] <= e["t"] <= lab["end_s"] + 0.5]
            used.update(id(e) for e in hits)
            if hits:
                score.problems.append(
                    f"{name} @{lab['onset_s']:.1f}s: alarmed on {lab['beats']}-beat episode"
                )
            else:
                score.rejected += 1
    for e in onsets:
        if id(e) in used:
            continue
        kinds = [c["kind"] for c in confounders if c["onset_s"] - 0.5 <= e["t"] <= c["end_s"] + 1.0]
        if "tremor" in kinds:
            score.tremor_false_alarms += 1
        else:
            score.false_alarms += 1
        score.problems.append(
            f"{name}: false alarm at {e['t']:.2f}s ({', '.join(kinds) or 'quiet'})"
        )


def evaluate(directory: Path, threshold_beats: int | None = None) -> Score:
    score = Score()
    for csv in sorted(directory.glob("*.csv")):
        score_recording(csv, score, threshold_beats)
    return score
