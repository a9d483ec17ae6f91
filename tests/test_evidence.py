"""Episode history and evidence (service/evidence.py), and the detector's part in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from synth import clonus_band

from clonusd.daemon.commands.replay import make_detector
from clonusd.daemon.service.evidence import HISTORY_S, EpisodeRecord
from clonusd.daemon.sources.recording import load_recording
from clonusd.dsp import ClonusDetector, EpisodeEvent, site_params


class FakeRetained:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any] | None]] = []

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None:
        self.sent.append((topic, json.loads(json.dumps(payload))))

    def clear_retained(self, topic: str) -> None:
        self.sent.append((topic, None))


def _identity() -> dict[str, Any]:
    return {"schema": "clonusd/2", "time": "2026-01-01T00:00:00.000+00:00", "bed": "b1"}


def _episode(
    beats: int = 14, seed: int = 3
) -> tuple[ClonusDetector, list[tuple[int, EpisodeEvent]], np.ndarray]:
    t, x, _ = clonus_band("imu6", beats, seed=seed)
    det = ClonusDetector("imu6", site_params("ankle"), 200.0)
    out: list[tuple[int, EpisodeEvent]] = []
    for s in range(0, t.size, 20):
        out += [(s + 20, e) for e in det.process(t[s : s + 20], x[s : s + 20])]
    return det, out, t


def test_beat_times_are_the_counted_beats_at_peaks_of_the_band_passed_signal() -> None:
    det, events, _ = _episode()
    end = next(e for _, e in events if e.event == "clonus.end")
    assert len(end.beat_times) == end.beats
    assert list(end.beat_times) == sorted(end.beat_times)
    assert end.onset_t <= end.beat_times[0] and end.beat_times[-1] <= end.last_beat_t + 0.2
    t, y = det.oscillation(30.0)
    assert t.size == y.size and np.all(np.diff(t) > 0)
    peaks = np.array([abs(y[np.argmin(np.abs(t - b))]) for b in end.beat_times])
    assert np.all(peaks >= 0.4 * np.max(np.abs(y)))
    # Not one of the published figures: events and replay output are unchanged.
    assert "beat_times" not in end.to_dict()


def test_snippet_covers_2s_either_side_with_every_beat_and_stays_small(tmp_path: Path) -> None:
    t, x, _ = clonus_band("imu6", 14, seed=3)
    det = ClonusDetector("imu6", site_params("ankle"), 200.0)
    pub = FakeRetained()
    rec = EpisodeRecord(pub, "clonusd", "b1", "s1", "imu6", "deg/s", _identity, tmp_path)
    rec.start()
    end: EpisodeEvent | None = None
    for s in range(0, t.size, 20):
        for e in det.process(t[s : s + 20], x[s : s + 20]):
            payload = {"id": f"ev-{e.event}", "time": "2026-01-01T00:00:00.000+00:00"}
            if e.event == "clonus.end":
                payload["end_reason"] = "rhythm_stopped"
                end = e
            rec.on_event(e, payload, det)
        rec.poll(det)
    assert end is not None
    evidence = [(tp, p) for tp, p in pub.sent if "/evidence/" in tp]
    assert {tp for tp, _ in evidence} == {"clonusd/b1/s1/evidence/ev-clonus.onset"}
    first, last = evidence[0][1], evidence[-1][1]
    assert first is not None and last is not None
    assert first["final"] is False and last["final"] is True
    assert len(last["beats_s"]) == end.beats
    assert abs(last["t0"] - (end.onset_t - 2.0)) < 0.05
    span = (len(last["samples"]) - 1) / last["fs_hz"]
    assert last["t0"] + span >= end.last_beat_t + 2.0 - 0.05
    assert len(json.dumps(last)) < 6000 and max(map(abs, last["samples"])) <= 999
    history = [p for tp, p in pub.sent if tp.endswith("/history")][-1]
    assert history is not None
    (entry,) = history["episodes"]
    assert entry["beats"] == end.beats and entry["evidence"] == "b1/s1/evidence/ev-clonus.onset"

    # A restarted daemon keeps the history; a day later it is gone, and so is its evidence.
    pub2 = FakeRetained()
    EpisodeRecord(pub2, "clonusd", "b1", "s1", "imu6", "deg/s", _identity, tmp_path).start()
    assert pub2.sent[-1][1] is not None and len(pub2.sent[-1][1]["episodes"]) == 1
    pub3 = FakeRetained()
    later = entry["end_epoch"] + HISTORY_S + 1
    EpisodeRecord(
        pub3, "clonusd", "b1", "s1", "imu6", "deg/s", _identity, tmp_path, clock=lambda: later
    ).start()
    assert ("clonusd/b1/s1/evidence/ev-clonus.onset", None) in pub3.sent
    assert pub3.sent[-1][1] is not None and pub3.sent[-1][1]["episodes"] == []


def test_an_episode_ended_by_a_lost_link_publishes_its_evidence_at_once(tmp_path: Path) -> None:
    t, x, _ = clonus_band("imu6", 30, seed=1)
    det = ClonusDetector("imu6", site_params("ankle"), 200.0)
    pub = FakeRetained()
    rec = EpisodeRecord(pub, "clonusd", "b1", "s1", "imu6", "deg/s", _identity, None)
    onset_seen = False
    for s in range(0, t.size, 20):
        for e in det.process(t[s : s + 20], x[s : s + 20]):
            rec.on_event(e, {"id": "ep", "time": "2026-01-01T00:00:00.000+00:00"}, det)
            onset_seen = True
        if onset_seen:
            break
    for e in det.force_end_now("link_lost"):
        rec.on_event(e, {"id": "end", "time": "x", "end_reason": "link_lost"}, det)
    final = [p for tp, p in pub.sent if "/evidence/" in tp and p and p["final"]]
    assert len(final) == 1 and final[0]["beats_s"]


def test_a_long_episode_shows_its_first_12_s_and_says_it_is_truncated(tmp_path: Path) -> None:
    t, x, _ = clonus_band("imu6", 90, seed=2)
    det = ClonusDetector("imu6", site_params("ankle"), 200.0)
    pub = FakeRetained()
    rec = EpisodeRecord(pub, "clonusd", "b1", "s1", "imu6", "deg/s", _identity, None)
    end: EpisodeEvent | None = None
    for s in range(0, t.size, 20):
        for e in det.process(t[s : s + 20], x[s : s + 20]):
            payload = {"id": "ep", "time": "2026-01-01T00:00:10.000+00:00"}
            if e.event == "clonus.end":
                payload["end_reason"] = "rhythm_stopped"
                end = e
            rec.on_event(e, payload, det)
        rec.poll(det)
    assert end is not None and end.duration_s > 12.0
    final = [p for tp, p in pub.sent if "/evidence/" in tp and p and p["final"]]
    assert len(final) == 1
    ev = final[0]
    span = (len(ev["samples"]) - 1) / ev["fs_hz"]
    assert ev["truncated"] is True and 11.5 <= span <= 12.0
    assert ev["beats_total"] == end.beats and 0 < len(ev["beats_s"]) < end.beats
    assert all(0 <= b <= span for b in ev["beats_s"])
    (entry,) = [p for tp, p in pub.sent if tp.endswith("/history")][-1]["episodes"]
    assert entry["alarm"] == "2026-01-01T00:00:10.000+00:00"
    assert entry["onset"] < entry["alarm"]  # the first beat came before the alarm


def test_an_episode_that_resumes_after_a_break_keeps_the_times_of_all_its_beats(
    dev_dir: Path,
) -> None:
    """The 45-beat dev episode that stumbles is counted whole; its beat times are too."""
    rec = load_recording(dev_dir / "imu-knee-013.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 46.0) < 0.2)
    keep = (rec.t >= lab["onset_s"] - 3.0) & (rec.t < lab["end_s"] + 2.0)
    det = make_detector(rec)
    events = det.process(rec.t[keep], rec.x[keep]) + det.flush()
    (end,) = [e for e in events if e.event == "clonus.end"]
    assert len(end.beat_times) == end.beats
    assert list(end.beat_times) == sorted(end.beat_times)
    assert lab["onset_s"] - 0.5 <= end.beat_times[0] and end.beat_times[-1] <= lab["end_s"] + 0.5
