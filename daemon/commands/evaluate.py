"""Scoring the detector on labelled recordings, with the rules of recordings/FORMAT.md.

- A sustained episode (more than five contractions) must get exactly one onset between its
  sixth contraction and its end; latency is counted from the sixth contraction.
- An episode of five or fewer contractions must get no onset.
- Any other onset is a false alarm; those during tremor are counted apart, and every false
  alarm is put down to the confounder it fell in (tremor first, else the first one listed,
  else "quiet").
- The end event's beat count is compared with the label's.

Every figure is reported overall, per sensor kind (imu6, acc3, emg) and false alarms per
confounder kind, each with a 95 % confidence interval: Wilson for proportions, the exact
(Garwood) Poisson interval for rates per hour, and the distribution-free order-statistic
interval for latency quantiles. A few hundred episodes give intervals a few points wide;
a figure from a handful of recordings is an anecdote, and the intervals say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from clonusd.daemon.commands.replay import replay_events
from clonusd.daemon.sources.recording import load_recording

END_SLACK_S = 0.0  # onsets must arrive by the labelled end, as FORMAT.md says
CONFIDENCE = 0.95
SENSOR_KINDS = ("imu6", "acc3", "emg")
CONFOUNDER_KINDS = ("tremor", "tapping", "walking", "vibration", "impact", "tonic", "quiet")

# The detector's targets (issue 11); `met` compares the point estimate, not the interval.
TARGETS: dict[str, tuple[str, float]] = {
    "sensitivity": (">=", 0.99),
    "unsustained_rejected": (">=", 0.95),
    "beat_count_within_1": (">=", 0.95),
    "tremor_false_alarms_per_hour": ("<=", 5.0),
    "false_alarms_per_hour": ("<=", 0.5),
    "latency_median_s": ("<=", 0.25),
    "latency_p95_s": ("<=", 0.5),
}


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """95 % Wilson score interval of the proportion k/n (None when n is 0)."""
    if n == 0:
        return None
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(ci.low), float(ci.high)


def garwood(k: int, exposure: float) -> tuple[float, float] | None:
    """Exact 95 % interval of a Poisson rate: k events in `exposure` (hours)."""
    if exposure <= 0:
        return None
    a = 1.0 - CONFIDENCE
    low = stats.chi2.ppf(a / 2, 2 * k) / 2 if k > 0 else 0.0
    high = stats.chi2.ppf(1 - a / 2, 2 * k + 2) / 2
    return float(low) / exposure, float(high) / exposure


def quantile_ci(values: list[float], q: float) -> tuple[float, float] | None:
    """Distribution-free 95 % interval of the q-quantile (order statistics); None when the
    sample is too small for one (e.g. fewer than 59 values for the 95th percentile)."""
    if len(values) < 2:
        return None
    res = stats.quantile_test(np.asarray(values), q=float(np.quantile(values, q)), p=q)
    ci: Any = res.confidence_interval(confidence_level=CONFIDENCE)  # a (low, high) tuple
    low, high = float(ci[0]), float(ci[1])
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return low, high


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
    # False alarms and hours of each confounder kind ("quiet": outside any confounder).
    alarms_by_kind: dict[str, int] = field(default_factory=dict)
    hours_by_kind: dict[str, float] = field(default_factory=dict)
    # Why each sustained episode was missed (`miss_cause`).
    misses_by_cause: dict[str, int] = field(default_factory=dict)

    def add(self, other: Score) -> None:
        for name in (
            "recordings",
            "hours",
            "sustained",
            "detected",
            "unsustained",
            "rejected",
            "false_alarms",
            "tremor_false_alarms",
            "duplicates",
            "counted",
            "count_within_1",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        self.problems += other.problems
        for kind, n in other.alarms_by_kind.items():
            self.alarms_by_kind[kind] = self.alarms_by_kind.get(kind, 0) + n
        for kind, h in other.hours_by_kind.items():
            self.hours_by_kind[kind] = self.hours_by_kind.get(kind, 0.0) + h
        for cause, n in other.misses_by_cause.items():
            self.misses_by_cause[cause] = self.misses_by_cause.get(cause, 0) + n

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        out: dict[str, Any] = {
            "recordings": self.recordings,
            "hours": round(self.hours, 3),
            "sustained_episodes": self.sustained,
            "sensitivity": _ratio(self.detected, self.sustained),
            "unsustained_episodes": self.unsustained,
            "unsustained_rejected": _ratio(self.rejected, self.unsustained),
            "false_alarms_per_hour": _rate(self.false_alarms, self.hours),
            "tremor_false_alarms_per_hour": _rate(self.tremor_false_alarms, self.hours),
            "false_alarms": self.false_alarms,
            "tremor_false_alarms": self.tremor_false_alarms,
            "duplicate_onsets": self.duplicates,
            "beat_count_within_1": _ratio(self.count_within_1, self.counted),
            "latency_median_s": round(float(np.median(lat)), 3) if lat else None,
            "latency_p95_s": round(float(np.percentile(lat, 95)), 3) if lat else None,
        }
        out["ci95"] = {
            "sensitivity": _round(wilson(self.detected, self.sustained)),
            "unsustained_rejected": _round(wilson(self.rejected, self.unsustained)),
            "beat_count_within_1": _round(wilson(self.count_within_1, self.counted)),
            "false_alarms_per_hour": _round(garwood(self.false_alarms, self.hours)),
            "tremor_false_alarms_per_hour": _round(garwood(self.tremor_false_alarms, self.hours)),
            "latency_median_s": _round(quantile_ci(lat, 0.5)),
            "latency_p95_s": _round(quantile_ci(lat, 0.95)),
        }
        out["counts"] = {
            "detected": self.detected,
            "rejected": self.rejected,
            "counted": self.counted,
            "count_within_1": self.count_within_1,
            "latencies": len(lat),
        }
        out["false_alarms_by_confounder"] = {
            kind: {
                "false_alarms": self.alarms_by_kind.get(kind, 0),
                "per_hour": _rate(self.alarms_by_kind.get(kind, 0), self.hours),
                "per_hour_ci95": _round(garwood(self.alarms_by_kind.get(kind, 0), self.hours)),
                "confounder_hours": round(self.hours_by_kind.get(kind, 0.0), 3),
            }
            for kind in CONFOUNDER_KINDS
            if kind in self.alarms_by_kind or kind in self.hours_by_kind
        }
        out["misses_by_cause"] = dict(sorted(self.misses_by_cause.items()))
        out["targets_met"] = {key: _met(out[key], op, goal) for key, (op, goal) in TARGETS.items()}
        return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _rate(k: int, hours: float) -> float | None:
    return round(k / hours, 2) if hours else None


def _round(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [round(ci[0], 4), round(ci[1], 4)]


def _met(value: float | None, op: str, goal: float) -> bool | None:
    if value is None:
        return None
    return value >= goal if op == ">=" else value <= goal


def score_recording(path: Path, score: Score, threshold_beats: int | None = None) -> Outcome:
    """Score one recording into `score`; returns what happened, for the review pictures."""
    rec = load_recording(path)
    events = list(replay_events(rec, threshold_beats, beat_times=True))
    onsets = [e for e in events if e["event"] == "clonus.onset"]
    chains = [e for e in events if e["event"] == "review.chain"]
    ends = {e["episode"]: e for e in events if e["event"] == "clonus.end"}
    labels = rec.meta.get("labels", [])
    confounders = rec.meta.get("confounders", [])
    outcome = Outcome(path=path, events=events)
    score.recordings += 1
    score.hours += rec.duration_s / 3600.0
    covered = 0.0
    for c in confounders:
        span = max(0.0, float(c["end_s"]) - float(c["onset_s"])) / 3600.0
        score.hours_by_kind[c["kind"]] = score.hours_by_kind.get(c["kind"], 0.0) + span
        covered += span
    score.hours_by_kind["quiet"] = score.hours_by_kind.get("quiet", 0.0) + max(
        0.0, rec.duration_s / 3600.0 - covered
    )
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
                        outcome.add("miscount", lab["onset_s"], lab["end_s"], lab)
            else:
                near = [e["t"] for e in onsets if lab["onset_s"] - 1 <= e["t"] <= hi + 1]
                tried = [
                    e
                    for e in chains
                    if e["beat_times_s"][0] <= lab["end_s"] + 0.5
                    and e["beat_times_s"][-1] >= lab["onset_s"] - 0.5
                ]
                cause = miss_cause(near, hi, tried)
                score.misses_by_cause[cause] = score.misses_by_cause.get(cause, 0) + 1
                seen = ", ".join(
                    f"{e['beats']}" + (f" refused by {e['refused_by']}" if e["refused_by"] else "")
                    for e in tried
                )
                score.problems.append(
                    f"{name} @{lab['onset_s']:.1f}s: missed {lab['beats']}-beat episode"
                    f" (window {lo:.2f}-{hi:.2f}, onsets near: {near}; chains: [{seen}];"
                    f" {cause})"
                )
                outcome.add("miss", lab["onset_s"], lab["end_s"], {**lab, "cause": cause})
        else:
            score.unsustained += 1
            hits = [e for e in onsets if lab["onset_s"] <= e["t"] <= lab["end_s"] + 0.5]
            used.update(id(e) for e in hits)
            if hits:
                score.problems.append(
                    f"{name} @{lab['onset_s']:.1f}s: alarmed on {lab['beats']}-beat episode"
                )
                outcome.add("unsustained_alarm", lab["onset_s"], lab["end_s"], lab)
            else:
                score.rejected += 1
    for e in onsets:
        if id(e) in used:
            continue
        kinds = [c["kind"] for c in confounders if c["onset_s"] - 0.5 <= e["t"] <= c["end_s"] + 1.0]
        kind = "tremor" if "tremor" in kinds else (kinds[0] if kinds else "quiet")
        score.alarms_by_kind[kind] = score.alarms_by_kind.get(kind, 0) + 1
        if kind == "tremor":
            score.tremor_false_alarms += 1
        else:
            score.false_alarms += 1
        score.problems.append(
            f"{name}: false alarm at {e['t']:.2f}s ({', '.join(kinds) or 'quiet'})"
        )
        outcome.add("false_alarm", float(e["onset_t"]), float(e["t"]), {"kinds": kinds, **e})
    return outcome


def miss_cause(near: list[float], hi: float, chains: list[dict[str, Any]]) -> str:
    """Why a sustained episode raised no onset in its window: an onset came after it
    (`onset_late`) or before it (`onset_early`); else the line that refused the longest
    chain of beats found in it that counted past the threshold; else `counted_too_few`
    (no chain there counted more than the threshold: contractions not seen as beats)."""
    if near:
        return "onset_late" if max(near) > hi else "onset_early"
    refused = [e for e in chains if e.get("refused_by")]
    if refused:
        return str(max(refused, key=lambda e: e["beats"])["refused_by"])
    return "counted_too_few"


@dataclass
class Case:
    """One thing worth a look: a miss, a miscount, an alarm on a short episode, a false
    alarm; `t0`-`t1` is the span of signal it is about."""

    kind: str
    t0: float
    t1: float
    info: dict[str, Any]


@dataclass
class Outcome:
    path: Path
    events: list[dict[str, Any]]
    cases: list[Case] = field(default_factory=list)

    def add(self, kind: str, t0: float, t1: float, info: dict[str, Any]) -> None:
        self.cases.append(Case(kind, float(t0), float(t1), info))


@dataclass
class Evaluation:
    """Scores overall and per sensor kind, and each recording's outcome."""

    overall: Score = field(default_factory=Score)
    by_sensor: dict[str, Score] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = self.overall.summary()
        out["by_sensor"] = {
            kind: self.by_sensor[kind].summary() for kind in SENSOR_KINDS if kind in self.by_sensor
        }
        return out

    @property
    def problems(self) -> list[str]:
        return self.overall.problems


def recordings(directory: Path) -> list[Path]:
    """The recordings in `directory` and its subfolders (e.g. one folder per seed)."""
    return sorted(directory.rglob("*.csv"))


def evaluate(directory: Path, threshold_beats: int | None = None) -> Evaluation:
    result = Evaluation()
    for csv in recordings(directory):
        one = Score()
        outcome = score_recording(csv, one, threshold_beats)
        sensor = str(load_sensor(csv))
        result.by_sensor.setdefault(sensor, Score()).add(one)
        result.overall.add(one)
        result.outcomes.append(outcome)
    return result


def load_sensor(csv: Path) -> str:
    import json

    meta = json.loads(csv.with_suffix(".json").read_text())
    return str(meta.get("sensor", "unknown"))


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table: one column per sensor kind plus all."""
    cols = [("all", summary), *summary.get("by_sensor", {}).items()]
    rows: list[tuple[str, str, str]] = [
        ("sensitivity", "sensitivity", "detected/sustained_episodes"),
        ("<=5 beats not alarmed", "unsustained_rejected", "rejected/unsustained_episodes"),
        ("beat count within 1", "beat_count_within_1", "count_within_1/counted"),
        ("tremor false alarms /h", "tremor_false_alarms_per_hour", "tremor_false_alarms"),
        ("other false alarms /h", "false_alarms_per_hour", "false_alarms"),
        ("latency median s", "latency_median_s", "latencies"),
        ("latency p95 s", "latency_p95_s", "latencies"),
    ]
    width = 34
    lines = [
        "Detector on labelled recordings (95 % intervals; synthetic data, not patients)",
        "".ljust(24) + "".join(name.ljust(width) for name, _ in cols),
    ]
    for label, key, count_key in rows:
        cells = []
        for _, s in cols:
            cells.append(_cell(s, key, count_key).ljust(width))
        op, goal = TARGETS[key]
        lines.append(f"{label:<24}" + "".join(cells) + f"target {op} {goal:g}")
    lines.append(
        "".ljust(24)
        + "".join(f"{s['hours']:.2f} h, {s['recordings']} rec".ljust(width) for _, s in cols)
    )
    lines.append("")
    lines.append("False alarms by confounder (all sensors; rate per recording hour)")
    for kind, row in summary.get("false_alarms_by_confounder", {}).items():
        ci = row["per_hour_ci95"]
        ci_s = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
        lines.append(
            f"  {kind:<10} {row['false_alarms']:>4}  {row['per_hour'] or 0:>6.2f}/h {ci_s:<16}"
            f" in {row['confounder_hours']:.3f} h of it"
        )
    for name, s in cols[1:]:
        per = s.get("false_alarms_by_confounder", {})
        text = ", ".join(f"{k} {v['false_alarms']}" for k, v in per.items() if v["false_alarms"])
        lines.append(f"  {name}: {text or 'none'}")
    lines.append("")
    lines.append("Missed sustained episodes by cause (the line that refused the chain, or why not)")
    for name, s in cols:
        causes = s.get("misses_by_cause", {})
        text = ", ".join(f"{k} {n}" for k, n in sorted(causes.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {name}: {text or 'none'}")
    return "\n".join(lines)


def _cell(s: dict[str, Any], key: str, count_key: str) -> str:
    value = s.get(key)
    if value is None:
        return "-"
    ci = s["ci95"].get(key)
    counts = s.get("counts", {})
    if "/" in count_key:
        a, b = count_key.split("/")
        n = f" {counts.get(a, s.get(a))}/{s.get(b, counts.get(b))}"
    else:
        n = f" n={counts.get(count_key, s.get(count_key))}"
    ci_s = f" [{ci[0]:.3g},{ci[1]:.3g}]" if ci else ""
    return f"{value:.3g}{ci_s}{n}"
