"""Episode history and evidence: why an alarm fired, for the clinician who was paged.

Per sensor, two retained kinds of topic (documented in the README):

    {prefix}/{bed}/{sensor}/history               ended episodes of the last 24 h, newest first
    {prefix}/{bed}/{sensor}/evidence/{episode_id} the signal the beats were counted on,
                                                  around one episode, decimated, with
                                                  the counted beats

The daemon publishes them, not the central station, so a web server (or any monitor) that
restarts or connects late still gets them from the broker. The history is also kept in
`state_dir`, so a daemon restart does not wipe it. An episode's evidence is published
at onset (from 2 s before the first beat up to the alarm: why it fired), with each
update (every 2 s) while the window fills, and once the window is complete (up to 2 s
after the last beat, `final: true`). The window is at most `WINDOW_MAX_S` long; a longer
episode shows its start (`truncated: true`). When an episode leaves the history its
evidence topic is cleared.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
import structlog

from clonusd.dsp.events import EpisodeEvent
from clonusd.dsp.filters import FloatArray

BEFORE_S = 2.0  # signal shown before the first counted beat
AFTER_S = 2.0  # and after the last one
WINDOW_MAX_S = 12.0
TARGET_FS = 64.0  # decimated rate of the snippet: a 9 Hz clonus keeps 7 points a cycle
HISTORY_S = 24 * 3600.0
HISTORY_MAX = 50
FULL_SCALE = 999  # samples are integers in -999..999, times `scale`

SIGNALS = {
    "imu6": "gyroscope, band-passed, principal axis",
    "acc3": "accelerometer, band-passed, principal axis",
    "emg": "EMG amplitude envelope (RMS, 12 Hz)",
}

log = structlog.get_logger("clonusd.evidence")


def history_topic(prefix: str, bed: str, sensor: str) -> str:
    return f"{prefix}/{bed}/{sensor}/history"


def evidence_topic(prefix: str, bed: str, sensor: str, episode_id: str) -> str:
    return f"{prefix}/{bed}/{sensor}/evidence/{episode_id}"


class Retained(Protocol):
    """What this module needs of the publisher."""

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None: ...

    def clear_retained(self, topic: str) -> None: ...


class SignalTap(Protocol):
    """What this module needs of the detector."""

    beat_fs: float

    def oscillation(self, seconds: float) -> tuple[FloatArray, FloatArray]: ...


@dataclass
class _Capture:
    episode: int  # the detector's number
    number: int  # the published one (`episode` in the event payloads)
    episode_id: str
    start_t: float  # signal time of the window's first sample
    onset_t: float
    last_beat_t: float
    beats: tuple[float, ...]
    end_t: float | None = None  # window end, known once the episode ended
    ended: bool = False
    samples: tuple[FloatArray, FloatArray] | None = None  # frozen once complete


def snippet(
    t: FloatArray, y: FloatArray, fs: float, start_t: float, end_t: float
) -> tuple[float, float, float, list[int]]:
    """Cut [start_t, end_t] out of (t, y) and decimate it to about TARGET_FS.

    Returns (first sample's time, rate, scale, integer samples with y = sample * scale).
    The signal is already limited to the clonus band (motion: band-passed; EMG: the
    envelope, low-passed at 12 Hz), so every k-th sample is kept."""
    keep = (t >= start_t) & (t <= end_t)
    t, y = t[keep], y[keep]
    k = max(1, int(fs // TARGET_FS))
    t, y = t[::k], y[::k]
    if t.size == 0:
        return start_t, fs / k, 1.0, []
    peak = float(np.max(np.abs(y)))
    scale = peak / FULL_SCALE if peak > 0 else 1.0
    return float(t[0]), fs / k, scale, [int(v) for v in np.rint(y / scale)]


class EpisodeRecord:
    """One sensor's history and evidence, fed by its pipeline."""

    def __init__(
        self,
        publisher: Retained,
        prefix: str,
        bed: str,
        sensor: str,
        sensor_kind: str,
        unit: str,
        identity: Callable[[], dict[str, Any]],
        state_dir: Path | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publisher = publisher
        self.prefix, self.bed, self.sensor = prefix, bed, sensor
        self.signal = SIGNALS.get(sensor_kind, sensor_kind)
        self.unit = unit
        self.identity = identity
        self.clock = clock
        self.path = (
            None
            if state_dir is None
            else state_dir / "history" / f"{quote(bed, safe='')}--{quote(sensor, safe='')}.json"
        )
        self.topic = history_topic(prefix, bed, sensor)
        self.episodes: list[dict[str, Any]] = []  # newest first
        self._captures: dict[int, _Capture] = {}
        self._onsets: dict[int, tuple[str, float]] = {}  # alarm time, first beat before it (s)
        self.log = log.bind(bed=bed, sensor=sensor)

    # -- history -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the kept history and publish it (retained)."""
        if self.path is not None and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.episodes = [e for e in data["episodes"] if isinstance(e, dict)]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.log.warning("history_unreadable", path=str(self.path), error=str(exc))
        self._prune()
        self._publish_history()

    def _prune(self) -> None:
        now = self.clock()
        keep: list[dict[str, Any]] = []
        drop: list[dict[str, Any]] = []
        for e in self.episodes:
            fresh = now - e.get("end_epoch", 0) <= HISTORY_S
            (keep if fresh and len(keep) < HISTORY_MAX else drop).append(e)
        for e in drop:
            if e.get("evidence"):
                self.publisher.clear_retained(f"{self.prefix}/{e['evidence']}")
        self.episodes = keep

    def _publish_history(self) -> None:
        self.publisher.set_retained(
            self.topic, {**self.identity(), "window_s": HISTORY_S, "episodes": self.episodes}
        )

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"episodes": self.episodes}))
            os.replace(tmp, self.path)
        except OSError as exc:  # the history is a convenience; alarms do not depend on it
            self.log.warning("history_not_saved", path=str(self.path), error=str(exc))

    # -- events --------------------------------------------------------------------------

    def on_event(self, ev: EpisodeEvent, payload: dict[str, Any], tap: SignalTap) -> None:
        """Called by the pipeline after each episode event was handed to the publisher."""
        if ev.event == "clonus.onset":
            new = _Capture(
                episode=ev.episode,
                number=int(payload.get("episode", ev.episode)),
                episode_id=str(payload["id"]),
                start_t=ev.onset_t - BEFORE_S,
                onset_t=ev.onset_t,
                last_beat_t=ev.last_beat_t,
                beats=ev.beat_times,
            )
            self._captures[ev.episode] = new
            self._onsets[ev.episode] = (str(payload["time"]), ev.t - ev.onset_t)
            t, y = tap.oscillation(ev.t - new.start_t + 1.0)
            self._publish(new, t, y, tap.beat_fs, min(ev.t, new.start_t + WINDOW_MAX_S))
            return
        cap = self._captures.get(ev.episode)
        if cap is not None:
            cap.beats, cap.last_beat_t = ev.beat_times, ev.last_beat_t
        if ev.event != "clonus.end":
            if cap is not None and cap.samples is None:  # the evidence so far, every update
                t, y = tap.oscillation(ev.t - cap.start_t + 1.0)
                self._publish(cap, t, y, tap.beat_fs, min(ev.t, cap.start_t + WINDOW_MAX_S))
            self.poll(tap)
            return
        onset = self._onsets.pop(ev.episode, None)
        entry = {
            "episode_id": cap.episode_id if cap else str(payload["id"]),
            "episode": payload.get("episode", ev.episode),
            "onset": _before(onset[0], onset[1]) if onset else None,  # the first beat
            "alarm": onset[0] if onset else None,  # when the onset was decided
            "end": payload["time"],
            "end_epoch": round(self.clock(), 3),
            "duration_s": round(ev.duration_s, 2),
            "beats": ev.beats,
            "frequency_hz": round(ev.frequency_hz, 2),
            "amplitude": round(ev.amplitude, 2),
            "amplitude_unit": ev.amplitude_unit,
            "regularity": round(ev.regularity, 3),
            "end_reason": payload.get("end_reason"),
            "evidence": (
                f"{self.bed}/{self.sensor}/evidence/{cap.episode_id}" if cap is not None else None
            ),
        }
        self.episodes.insert(0, entry)
        self._prune()
        self._publish_history()
        self._save()
        if cap is None:
            return
        cap.ended = True
        cap.end_t = min(ev.last_beat_t + AFTER_S, cap.start_t + WINDOW_MAX_S)
        if payload.get("end_reason") != "rhythm_stopped":
            # The link went or the stream ended: no signal after it is coming.
            self._finish(cap, tap, force=True)
        else:
            self.poll(tap)

    def poll(self, tap: SignalTap) -> None:
        """After every chunk: publish each window whose signal has all arrived."""
        for cap in list(self._captures.values()):
            self._finish(cap, tap, force=False)

    def flush(self, tap: SignalTap) -> None:
        """Shutdown: publish what there is of every open window."""
        for cap in list(self._captures.values()):
            self._finish(cap, tap, force=True)

    def _finish(self, cap: _Capture, tap: SignalTap, force: bool) -> None:
        if cap.samples is None:
            end_t = cap.end_t if cap.end_t is not None else cap.start_t + WINDOW_MAX_S
            latest, _ = tap.oscillation(1.0 / tap.beat_fs)
            if not latest.size or (latest[-1] < end_t and not force):
                return
            cap.samples = tap.oscillation(float(latest[-1]) - cap.start_t + 1.0)
            cap.end_t = min(end_t, float(latest[-1]))
            if not cap.ended:  # a long episode: its window is full before it ends
                t, y = cap.samples
                self._publish(cap, t, y, tap.beat_fs, cap.end_t)
                return
        if cap.ended:
            assert cap.end_t is not None
            t, y = cap.samples
            self._publish(cap, t, y, tap.beat_fs, cap.end_t, final=True)
            del self._captures[cap.episode]

    def _publish(
        self,
        cap: _Capture,
        t: FloatArray,
        y: FloatArray,
        fs: float,
        end_t: float,
        final: bool = False,
    ) -> None:
        t0, rate, scale, samples = snippet(t, y, fs, cap.start_t, end_t)
        t_last = t0 + (len(samples) - 1) / rate if samples else t0
        beats = [round(b - t0, 3) for b in cap.beats if t0 <= b <= t_last]
        payload = {
            **self.identity(),
            "episode": cap.number,
            "episode_id": cap.episode_id,
            "final": final,
            "signal": self.signal,
            "unit": self.unit,
            "fs_hz": round(rate, 3),
            "t0": round(t0, 3),
            "onset_s": round(cap.onset_t - t0, 3),
            "last_beat_s": round(cap.last_beat_t - t0, 3),
            "scale": float(f"{scale:.4g}"),
            "samples": samples,
            "beats_s": beats,
            "beats_total": len(cap.beats),
            "truncated": cap.last_beat_t > t_last,
        }
        self.publisher.set_retained(
            evidence_topic(self.prefix, self.bed, self.sensor, cap.episode_id), payload
        )
        self.log.info(
            "evidence", episode=cap.episode, final=final, points=len(samples), beats=len(beats)
        )


def _before(iso: str, seconds: float) -> str:
    """The wall-clock time `seconds` before `iso`, in the same format."""
    try:
        at = datetime.fromisoformat(iso) - timedelta(seconds=seconds)
    except ValueError:
        return iso
    return at.isoformat(timespec="milliseconds")
