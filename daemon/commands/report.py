"""Review pictures for `clonusd evaluate --report DIR`: one PNG per miss, miscount, alarm on
a short episode and false alarm, with labelled and detected beats marked, and an
index.html listing them.

matplotlib is an optional extra (`pip install 'clonusd[report]'`), imported only here and
only when a report is asked for, so the daemon on a Pi does not carry it.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clonusd.daemon.sources.recording import load_recording

if TYPE_CHECKING:
    from clonusd.daemon.commands.evaluate import Case, Evaluation

MARGIN_S = 1.5  # signal shown either side of a case


class ReportUnavailableError(Exception):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportUnavailableError(
            "--report needs matplotlib: pip install 'clonusd[report]'"
        ) from None
    return plt


def write_report(result: Evaluation, out: Path) -> int:
    """Write the pictures and index.html into `out`; returns how many pictures."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    items: list[tuple[str, str, str]] = []  # (png name, title, details)
    for outcome in result.outcomes:
        if not outcome.cases:
            continue
        rec = load_recording(outcome.path)
        for i, case in enumerate(outcome.cases):
            name = f"{outcome.path.parent.name}-{outcome.path.stem}-{i:02d}-{case.kind}.png"
            title = f"{outcome.path.parent.name}/{outcome.path.stem} {case.kind} @{case.t0:.2f}s"
            _plot_case(plt, rec, outcome.events, case, out / name, title)
            items.append((name, title, _details(case)))
    _write_index(out, items, result)
    return len(items)


def _plot_case(
    plt: Any, rec: Any, events: list[dict[str, Any]], case: Case, path: Path, title: str
) -> None:
    t0, t1 = case.t0 - MARGIN_S, case.t1 + MARGIN_S
    m = (rec.t >= t0) & (rec.t <= t1)
    t, x = rec.t[m], rec.x[m]
    if rec.sensor == "imu6":
        x, unit = x[:, 3:6], "gyro deg/s"
    elif rec.sensor == "acc3":
        x, unit = x - np.median(x, axis=0) if x.size else x, "acc m/s² (median removed)"
    else:
        unit = "EMG mV"
    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=90)
    if t.size:
        ax.plot(t, x, linewidth=0.7)
    labels = [*rec.meta.get("labels", []), *rec.meta.get("confounders", [])]
    for lab in labels:
        if lab["end_s"] < t0 or lab["onset_s"] > t1:
            continue
        if "beat_times_s" in lab:
            ax.axvspan(lab["onset_s"], lab["end_s"], color="tab:green", alpha=0.08)
            for k, bt in enumerate(lab["beat_times_s"]):
                ax.axvline(bt, color="tab:green", linewidth=0.8, alpha=0.7)
                if k == 5:
                    ax.axvline(bt, color="tab:green", linewidth=2.0)
            ax.text(
                lab["onset_s"],
                1.01,
                f"label {lab['beats']} beats",
                color="tab:green",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
            )
        else:
            ax.axvspan(lab["onset_s"], lab["end_s"], color="tab:orange", alpha=0.08)
            ax.text(
                max(lab["onset_s"], t0),
                1.08,
                lab["kind"],
                color="tab:orange",
                transform=ax.get_xaxis_transform(),
                fontsize=8,
            )
    detected: set[float] = set()
    unreported: set[float] = set()
    for e in events:
        beats = [bt for bt in e.get("beat_times_s", []) if t0 <= bt <= t1]
        (unreported if e["event"] == "review.chain" else detected).update(beats)
        if e["event"] == "review.chain" and e.get("refused_by") and beats:
            ax.text(
                beats[-1],
                0.08,
                f"refused: {e['refused_by']}",
                color="grey",
                transform=ax.get_xaxis_transform(),
                fontsize=7,
                ha="right",
            )
        colour = {"clonus.onset": "tab:red", "clonus.end": "tab:purple"}.get(e["event"])
        if colour is None or not t0 <= e["t"] <= t1:
            continue
        ax.axvline(e["t"], color=colour, linestyle="--", linewidth=1.2)
        ax.text(
            e["t"],
            0.95,
            f"{e['event'].split('.')[1]} {e['beats']} ",
            color=colour,
            transform=ax.get_xaxis_transform(),
            fontsize=8,
            ha="right",
        )
    for bt in sorted(detected):
        ax.plot([bt], [0.03], marker="^", color="tab:red", transform=ax.get_xaxis_transform())
    for bt in sorted(unreported):
        ax.plot([bt], [0.03], marker="^", color="grey", transform=ax.get_xaxis_transform())
    ax.set_xlim(t0, t1)
    ax.set_xlabel("t (s, sensor clock)")
    ax.set_ylabel(unit)
    ax.set_title(
        title + "  (green: labelled beats, 6th thick; triangles: counted beats, red in an episode,"
        " grey in a chain that raised nothing, with the line that refused it; dashed:"
        " onset/end)",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _details(case: Case) -> str:
    keys = (
        "beats",
        "frequency_hz",
        "triggered",
        "kinds",
        "amplitude",
        "harmonic_ratio",
        "limb_movement",
        "beat_scatter",
        "interval_swing",
        "lead_in",
        "envelope_rhythm",
        "elicited",
        "cause",
    )
    return ", ".join(f"{k}={case.info[k]}" for k in keys if k in case.info)


def _write_index(out: Path, items: list[tuple[str, str, str]], result: Evaluation) -> None:
    import json

    rows = "\n".join(
        f"<h3>{html.escape(title)}</h3><p>{html.escape(details)}</p>"
        f'<img src="{html.escape(name)}" alt="{html.escape(title)}">'
        for name, title, details in items
    )
    summary = html.escape(json.dumps(result.summary(), indent=1))
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>clonusd evaluate: review</title>"
        "<h1>Misses and false alarms</h1>"
        "<p>Synthetic recordings, not patients.</p>"
        f"<p>{len(items)} cases.</p>{rows}"
        f"<h2>Summary</h2><pre>{summary}</pre>\n"
    )
