"""The streaming detector on labelled recordings and on generated episodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from synth import AXIS, clonus_band, jerk_train, rock_train, stretch_then_clonus

from clonusd.daemon.commands.replay import make_detector
from clonusd.daemon.sources.recording import Recording, load_recording
from clonusd.dsp import ClonusDetector, EpisodeEvent, site_params
from clonusd.dsp.lobes import Lobe


def _run(
    det: ClonusDetector, t: np.ndarray, x: np.ndarray, chunk: int | None = None
) -> list[EpisodeEvent]:
    step = chunk or t.size
    events: list[EpisodeEvent] = []
    for s in range(0, t.size, step):
        events += det.process(t[s : s + step], x[s : s + step])
    return events + det.flush()


def _slice(rec: Recording, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    m = (rec.t >= t0) & (rec.t < t1)
    return rec.t[m], rec.x[m]


def _onsets(events: list[EpisodeEvent]) -> list[EpisodeEvent]:
    return [e for e in events if e.event == "clonus.onset"]


def _labelled_episode(
    dev_dir: Path, name: str, onset_s: float
) -> tuple[Recording, dict[str, Any], list[EpisodeEvent]]:
    """The recording, the label of the episode starting near `onset_s`, and the events
    of a fresh detector over the episode with 3 s before and 2 s after."""
    rec = load_recording(dev_dir / f"{name}.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - onset_s) < 0.2)
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    return rec, lab, _run(make_detector(rec), t, x)


def _assert_alarmed_in_window_and_counted(lab: dict[str, Any], events: list[EpisodeEvent]) -> None:
    (onset,) = _onsets(events)
    assert lab["beat_times_s"][5] <= onset.t <= lab["end_s"]
    assert abs(events[-1].beats - lab["beats"]) <= 1


# -- chunking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "t0", "t1"),
    [
        ("imu-knee-010", 10.0, 45.0),  # 52 Hz, 5 % packet loss
        ("emg-ankle-007", 5.0, 45.0),  # 2 kHz, 2 % packet loss
    ],
)
@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8))
def test_events_do_not_depend_on_chunk_sizes(
    dev_dir: Path, name: str, t0: float, t1: float, sizes: list[int]
) -> None:
    rec = load_recording(dev_dir / f"{name}.csv")
    t, x = _slice(rec, t0, t1)
    whole = [e.to_dict() for e in _run(make_detector(rec), t, x)]
    det = make_detector(rec)
    chunked: list[EpisodeEvent] = []
    start, i = 0, 0
    while start < t.size:
        step = sizes[i % len(sizes)]
        chunked += det.process(t[start : start + step], x[start : start + step])
        start, i = start + step, i + 1
    chunked += det.flush()
    assert len(_onsets(_run(make_detector(rec), t, x))) >= 2  # the slice has episodes
    assert [e.to_dict() for e in chunked] == whole


# -- the ">5" rule -------------------------------------------------------------------------


def _episode_results(dev_dir: Path, beats: int) -> list[bool]:
    """For every labelled episode of `beats` contractions: did it raise an onset?"""
    out = []
    for csv in sorted(dev_dir.glob("*.csv")):
        meta = json.loads(csv.with_suffix(".json").read_text())
        labels = [lab for lab in meta["labels"] if lab["beats"] == beats]
        if not labels:
            continue
        rec = load_recording(csv)
        onsets = _onsets(_run(make_detector(rec), rec.t, rec.x))
        for lab in labels:
            out.append(any(lab["onset_s"] <= e.t <= lab["end_s"] + 0.5 for e in onsets))
    return out


def test_exactly_six_contractions_alarm_exactly_five_do_not(dev_dir: Path) -> None:
    six = _episode_results(dev_dir, 6)
    five = _episode_results(dev_dir, 5)
    assert len(six) >= 20 and len(five) >= 20
    assert np.mean(six) >= 0.85, f"6-beat episodes alarmed: {np.mean(six):.2f}"
    assert np.mean(five) <= 0.10, f"5-beat episodes alarmed: {np.mean(five):.2f}"


def test_onset_comes_after_the_sixth_contraction_with_its_figures(dev_dir: Path) -> None:
    rec = load_recording(dev_dir / "imu-knee-010.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 53.4) < 0.1)
    t, x = _slice(rec, 50.0, 58.0)
    events = _run(make_detector(rec), t, x)
    onset, end = _onsets(events)[0], events[-1]
    assert lab["beat_times_s"][5] <= onset.t <= lab["end_s"]
    assert onset.beats == 6 and end.event == "clonus.end" and end.episode == onset.episode
    assert abs(end.beats - lab["beats"]) <= 1
    assert abs(end.frequency_hz - lab["frequency_hz"]) < 0.5
    assert 0.0 < end.regularity <= 1.0
    assert "confidence" not in end.to_dict()  # dropped: it was not calibrated


@pytest.mark.parametrize(("name", "onset_s"), [("imu-knee-013", 16.5), ("imu-knee-013", 96.8)])
def test_the_stretch_that_sets_clonus_off_is_not_counted_as_a_beat(
    dev_dir: Path, name: str, onset_s: float
) -> None:
    """A short stretch pulse right before the first beat is as large as a beat in band;
    counted, it would put the alarm one beat early (before the sixth contraction)."""
    _, lab, events = _labelled_episode(dev_dir, name, onset_s)
    assert lab["triggered"]
    _assert_alarmed_in_window_and_counted(lab, events)


@pytest.mark.parametrize(("freq", "fs"), [(4.0, 104.0), (5.5, 52.0), (7.0, 200.0)])
def test_with_a_stretch_larger_than_the_beats_the_contractions_against_it_are_counted(
    freq: float, fs: float
) -> None:
    """The simulated band's stretch (a dorsiflexion 1.5 times the beats' speed) is the
    quick half-cycle here, the way the quick phase would pick it; counted with the beats,
    it made five contractions six. The half-cycles against the stretch are counted."""
    ankle = site_params("ankle")
    for beats in (5, 6):
        t, x, bt = clonus_band("imu6", beats, freq=freq, fs=fs, stretch=1.5, seed=1)
        events = _run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8)
        if beats == 5:
            assert not _onsets(events)
            continue
        (onset,) = _onsets(events)
        assert bt[5] <= onset.t <= bt[5] + 1.0 / freq  # inside the sixth beat's cycle
        assert abs(events[-1].beats - 6) <= 1


@pytest.mark.parametrize(
    ("freq", "fs", "stretch_deg", "beat_deg"),
    [(6.0, 52.0, 25.0, 5.0), (7.5, 104.0, 8.0, 1.5), (7.5, 200.0, 25.0, 5.0)],
)
def test_a_first_contraction_that_runs_on_from_the_stretch_is_counted(
    freq: float, fs: float, stretch_deg: float, beat_deg: float
) -> None:
    """A quick stretch let go as the first contraction begins: the limb slowing down at
    the stretch's end and the first contraction make one long half-cycle, which breaks
    the rhythm's chain; left out, six contractions counted five."""
    _assert_six_alarmed_five_not(freq, fs, stretch_deg, 0.15, beat_deg)


def _assert_six_alarmed_five_not(
    freq: float, fs: float, stretch_deg: float, stretch_s: float, beat_deg: float
) -> None:
    """Of `stretch_then_clonus` on an ankle gyroscope: five contractions raise no alarm,
    six raise one inside the sixth's window and end counted within one beat."""
    ankle = site_params("ankle")
    for beats in (5, 6):
        t, x, contractions, end = stretch_then_clonus(
            beats, freq, fs, stretch_deg, stretch_s, beat_deg
        )
        events = _run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8)
        if beats == 5:
            assert not _onsets(events)
            continue
        (onset,) = _onsets(events)
        assert contractions[5] <= onset.t <= end
        assert abs(events[-1].beats - 6) <= 1


@pytest.mark.parametrize("fs", [104.0, 200.0])
def test_a_first_contraction_the_stretch_shrank_is_counted(fs: float) -> None:
    """A slow, large stretch (25 degrees over 0.3 s) before small beats (2 degrees at
    4.7 Hz): after the stretch the band-passed signal swings back against the first
    contraction, which shows as a lobe a fifth of the beats after it, under the first-
    beat line; six contractions counted five. It starts after the stretch's end, one
    period before the next beat, so it is counted; five contractions stay no alarm."""
    _assert_six_alarmed_five_not(4.7, fs, 25.0, 0.3, 2.0)


@pytest.mark.parametrize(
    ("fs", "swing_deg", "beat_deg"), [(104.0, 20.0, 3.0), (200.0, 20.0, 3.0), (200.0, 30.0, 6.0)]
)
def test_a_rhythm_riding_on_a_large_swing_of_the_limb_is_not_alarmed(
    fs: float, swing_deg: float, beat_deg: float
) -> None:
    """The same 20 contractions at 5.5 Hz, once on a still limb and once on a limb
    swinging back and forth by `swing_deg` once a second, as a foot does in walking.
    On real gait (healthy walkers, foot IMUs) the stride's harmonics made 3-4 Hz chains
    that alarmed 37 times in 1.9 h; clonus moves the limb by its own small swing around
    a held position. Riding on the large swing, the rhythm raises no alarm; on the still
    limb, after its one-way stretch and slow release, it raises one."""
    ankle = site_params("ankle")
    t, x, contractions, end = stretch_then_clonus(20, 5.5, fs, 10.0, 0.15, beat_deg)
    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8))
    assert contractions[5] <= onset.t <= end
    turning = swing_deg * 2 * np.pi * np.cos(2 * np.pi * t)  # deg/s, once a second
    walking = x.copy()
    walking[:, 3:6] += np.outer(turning, AXIS)
    assert not _onsets(_run(ClonusDetector("imu6", ankle, fs), t, walking, chunk=8))


@pytest.mark.parametrize("swing_deg", [12.0, 14.0])
def test_a_limb_swinging_three_times_the_rhythm_s_swing_is_moving(swing_deg: float) -> None:
    """The same rhythm on a limb swinging `swing_deg` one way and back 1.5 times a second
    measures 3.3 and 3.9 of the rhythm's own swings: under the old line of 4, which let a
    walk's first steps through on real gait at 3.57, and over today's. Clonus on the
    synthetic seeds moved at most 1.6; half that swing still alarms."""
    ankle, fs = site_params("ankle"), 104.0
    t, x, contractions, end = stretch_then_clonus(20, 5.5, fs, 10.0, 0.15, 3.0)

    def swinging(deg: float) -> np.ndarray:
        moving = x.copy()
        turning = deg * 2 * np.pi * 1.5 * np.cos(2 * np.pi * 1.5 * t)
        moving[:, 3:6] += np.outer(turning, AXIS)
        return moving

    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, swinging(swing_deg / 2), chunk=8))
    assert contractions[5] <= onset.t <= end
    assert not _onsets(_run(ClonusDetector("imu6", ankle, fs), t, swinging(swing_deg), chunk=8))


@pytest.mark.parametrize("fs", [104.0, 200.0])
def test_a_swing_across_the_counting_axis_is_movement_too(fs: float) -> None:
    """The same rhythm, the limb swinging 20 degrees once a second about an axis at a
    right angle to the rhythm's (a foot rolling as it walks). Measured about the counting
    axis only, that swing was not seen, and 5 of 8 gyroscope alarms left on real gait
    were chains like it."""
    ankle = site_params("ankle")
    t, x, _, _ = stretch_then_clonus(20, 5.5, fs, 10.0, 0.15, 3.0)
    rolling = x.copy()
    rolling[:, 3:6] += np.outer(20.0 * 2 * np.pi * np.cos(2 * np.pi * t), [0.73, 0.684, 0.0])
    assert not _onsets(_run(ClonusDetector("imu6", ankle, fs), t, rolling, chunk=8))


def test_an_onset_reports_how_far_the_limb_moved() -> None:
    """`limb_movement` is what the movement rule measured, in the rhythm's own units: a
    clinician reading an alarm sees whether the limb was still. The same rhythm on a
    limb swinging slowly by more and more degrees reports more and more, while it stays
    under the line and alarms."""
    fs = 104.0
    t, x, _, _ = stretch_then_clonus(20, 5.5, fs, 10.0, 0.15, 3.0)
    gyro = []
    for deg in (0.0, 3.0, 6.0):
        moving = x.copy()
        moving[:, 3:6] += np.outer(deg * 2 * np.pi * np.cos(2 * np.pi * t), AXIS)
        (onset,) = _onsets(_run(ClonusDetector("imu6", site_params("ankle"), fs), t, moving))
        gyro.append(onset.extra["limb_movement"])
    assert gyro[0] < 0.1 < gyro[1] < gyro[2] < ClonusDetector.max_sway["imu6"]
    t, x, _ = clonus_band("acc3", 20, freq=5.5, fs=fs, amp=60.0, stretch=0.5, seed=1)
    acc = []
    for deg in (0.0, 5.0, 10.0):
        pitch = np.radians(deg) * np.sin(2 * np.pi * 1.5 * t)
        moving = x.copy()
        moving[:, 0] += 9.81 * np.sin(pitch)
        moving[:, 2] += 9.81 * (np.cos(pitch) - 1.0)
        (onset,) = _onsets(_run(ClonusDetector("acc3", site_params("ankle"), fs), t, moving))
        acc.append(onset.extra["limb_movement"])
    assert acc[0] < acc[1] < acc[2] < ClonusDetector.max_sway["acc3"]


def test_an_accelerometer_rhythm_riding_on_a_pitching_foot_is_not_alarmed() -> None:
    """An accelerometer-only band at 104 Hz: the same 20 contractions at 5.5 Hz (3.2
    m/s^2 at the band), once on a still limb and once on a foot that pitches 20 degrees
    back and forth 1.5 times a second, at 8 phases of that movement: gravity's share
    turns with the foot, 3.4 m/s^2 each way. On real gait such bands alarmed 27 times in
    2.2 h; their chains rode on movement of 0.55-9 times the rhythm's own acceleration,
    clonus on the synthetic seeds on at most 0.42. Without the rule 4 of the 8 alarmed."""
    ankle, fs = site_params("ankle"), 104.0
    t, x, beats = clonus_band("acc3", 20, freq=5.5, fs=fs, amp=60.0, stretch=0.5, seed=1)
    (onset,) = _onsets(_run(ClonusDetector("acc3", ankle, fs), t, x, chunk=8))
    assert beats[5] <= onset.t <= beats[-1] + 1 / 5.5
    for phase in np.arange(8) / 8:
        pitch = np.radians(20.0) * np.sin(2 * np.pi * (1.5 * t + phase))
        walking = x.copy()
        walking[:, 0] += 9.81 * np.sin(pitch)
        walking[:, 2] += 9.81 * (np.cos(pitch) - 1.0)
        assert not _onsets(_run(ClonusDetector("acc3", ankle, fs), t, walking, chunk=8)), phase


def _held_only_by(rule: str, figure: str, t: np.ndarray, x: np.ndarray, fs: float) -> None:
    """An ankle gyroscope seeing `x` does not alarm, and does with `rule` turned off
    (inf), its `figure` measured over the rule's line: that rule alone holds it. The
    review record of the chain names the rule (`evaluate --verbose` shows it)."""
    ankle = site_params("ankle")
    det = ClonusDetector("imu6", ankle, fs)
    det.episodes.report_beats = True
    assert not _onsets(_run(det, t, x, chunk=8))
    assert rule in [c.refused_by for c in det.episodes.unreported]
    unchecked = ankle.with_overrides(**{rule: np.inf})
    (onset,) = _onsets(_run(ClonusDetector("imu6", unchecked, fs), t, x, chunk=8))
    assert onset.extra[figure] > getattr(ankle, rule)


def test_beats_of_very_unequal_sizes_are_not_one_reflex_rhythm() -> None:
    """Quick jerks of the foot 3.5 times a second on a gyroscope at 104 Hz: twelve even
    ones, twelve fading by a tenth a beat as clonus fades, or eight building up 1.6 times
    a beat (a spread of sizes, but a steady one) alarm; twelve big and small in no order
    (0.1-1 of the largest, as the first and last steps of a walk mix stride swings and
    small knocks) do not. On real gait three of five alarms left were such chains. With
    `max_beat_spread` off the uneven train alarms: it is this rule that holds it."""
    ankle, fs = site_params("ankle"), 104.0
    for sizes in ([1.0] * 12, [0.9**k for k in range(12)], [0.1 * 1.6**k for k in range(8)]):
        t, x = jerk_train(sizes, 3.5, fs, len(sizes))
        (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8))
        assert onset.extra["beat_scatter"] < 0.25, sizes  # what the rule measured
    t, x = jerk_train([1.0, 0.1, 0.1, 1.0, 0.5, 0.1], 3.5, fs, 12)
    _held_only_by("max_beat_spread", "beat_scatter", t, x, fs)


def test_a_rhythm_already_going_before_its_first_beat_is_not_clonus_starting() -> None:
    """A foot jerking at 5.5 Hz in runs of four with pauses, as a tremor waxes and wanes,
    that then steadies into twelve even jerks on a gyroscope at 104 Hz. The chain that
    reaches the count had the rhythm going in the 2 s before its first beat at 0.68 of
    its size: a tremor steadying, not clonus, which starts from rest or a stretch. With
    `max_lead_in` off it alarms: it is this rule that holds it."""
    fs = 104.0
    t, x = jerk_train([1.0], 5.5, fs, 28, intervals=[0.18, 0.18, 0.18, 0.6] * 4 + [1 / 5.5] * 12)
    _held_only_by("max_lead_in", "lead_in", t, x, fs)


@pytest.mark.parametrize("sensor", ["imu6", "acc3", "emg"])
def test_a_rhythm_the_signal_began_in_is_not_alarmed_until_it_starts_again(sensor: str) -> None:
    """The same elicited 10-beat episode alarms on a band that was switched on 3 s before
    its stretch. Switched on 0.2 s before it, nothing seen says whether the rhythm
    started from rest or was already going (real tremor and shaking alarmed so in a
    recording's first second): no alarm, and the review record names the line. With
    the line off it alarms. An episode later in that same signal, from rest, alarms."""
    fs = 200.0
    late_t, late_x, _ = clonus_band(sensor, beats=10, fs=fs, lead_s=3.0)
    early_t, early_x, _ = clonus_band(sensor, beats=10, fs=fs, lead_s=0.2)
    ankle = site_params("ankle")
    assert len(_onsets(_run(ClonusDetector(sensor, ankle, fs), late_t, late_x))) == 1
    det = ClonusDetector(sensor, ankle, fs)
    det.episodes.report_beats = True
    assert not _onsets(_run(det, early_t, early_x, chunk=8))
    assert "start_not_seen" in [c.refused_by for c in det.episodes.unreported]
    off = ankle.with_overrides(min_seen_before_s=0.0)
    assert len(_onsets(_run(ClonusDetector(sensor, off, fs), early_t, early_x))) == 1
    # The same episode again, from rest, after the first one in the same signal.
    t2 = np.concatenate([early_t, early_t[-1] + 1.0 / fs + late_t])
    x2 = np.concatenate([early_x, late_x])
    (onset,) = _onsets(_run(ClonusDetector(sensor, ankle, fs), t2, x2, chunk=8))
    assert onset.t > early_t[-1] + 3.0


@pytest.mark.parametrize("seed", range(10))
def test_beats_that_vary_at_random_by_half_their_size_are_still_clonus(seed: int) -> None:
    """Real contractions are not all alike: twelve jerks at 5.5 Hz whose sizes vary at
    random between half and one and a half times their mean still alarm, within the
    episode. (Thirty such trains scattered at most 0.37; at 0.7 either way, 0.47.)"""
    ankle, fs = site_params("ankle"), 104.0
    sizes = list(1.0 + 0.5 * np.random.default_rng(seed).uniform(-1.0, 1.0, 12))
    t, x = jerk_train(sizes, 5.5, fs, 12)
    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8))
    assert 3.0 + 5 / 5.5 <= onset.t <= 3.0 + 12 / 5.5
    assert onset.extra["beat_scatter"] <= ankle.max_beat_spread


def test_beat_intervals_that_go_short_and_long_in_turn_are_not_one_reflex_rhythm() -> None:
    """A foot that rocks twice in each shuffling step, 0.18 s then 0.32 s apart (as a
    trembling foot in freezing of gait does), does not alarm; rocking at one even
    interval does. The one alarm on real freezing of gait (Daphnet) swung 0.81. With
    `max_interval_swing` off the uneven rocking alarms: it is this rule that holds it."""
    ankle, fs = site_params("ankle"), 104.0
    t, x = rock_train([0.25], fs, 14)
    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8))
    assert onset.extra["interval_swing"] < 0.05  # what the rule measured
    t, x = rock_train([0.18, 0.32], fs, 14)
    _held_only_by("max_interval_swing", "interval_swing", t, x, fs)


@pytest.mark.parametrize("seed", range(10))
def test_beats_whose_intervals_vary_at_random_by_a_fifth_are_still_clonus(seed: int) -> None:
    """A reflex loop's period is not exact: twelve jerks at 5.5 Hz whose intervals vary
    at random by up to a fifth either way still alarm, within the episode. (Ten such
    trains swung at most 0.26 at 104 Hz, and at 52 Hz 0.38; with the line at 0.2, two
    of these ten are held past the sixth jerk.)"""
    ankle, fs = site_params("ankle"), 104.0
    gaps = list((1 + 0.2 * np.random.default_rng(seed).uniform(-1.0, 1.0, 12)) / 5.5)
    t, x = jerk_train([1.0], 5.5, fs, 12, intervals=gaps)
    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, x, chunk=8))
    assert 3.0 + sum(gaps[:5]) <= onset.t <= 3.0 + sum(gaps)
    assert onset.beats == 6  # on the sixth jerk, not held for more
    assert onset.extra["interval_swing"] <= ankle.max_interval_swing


@pytest.mark.parametrize("onset_s", [58.4, 114.4, 130.4])
def test_accelerometer_bands_alarm_on_the_sixth_contraction_not_half_a_cycle_off(
    dev_dir: Path, onset_s: float
) -> None:
    """An ankle accelerometer at 52 Hz: the window between the sixth contraction and the
    end of a 6-beat episode is 0.1-0.15 s, so counting the wrong half-cycle misses it."""
    rec = load_recording(dev_dir / "imu-ankle-008.csv")
    assert rec.sensor == "acc3" and rec.fs == 52
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - onset_s) < 0.2)
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    events = _run(make_detector(rec), t, x)
    (onset,) = _onsets(events)
    assert lab["beat_times_s"][5] <= onset.t <= lab["end_s"]


@pytest.mark.parametrize(("name", "onset_s"), [("imu-ankle-008", 20.3), ("imu-ankle-004", 66.9)])
def test_a_quick_stretch_does_not_cut_the_first_beat_off_a_six_beat_episode(
    dev_dir: Path, name: str, onset_s: float
) -> None:
    """Stretch and first beat make one "cycle" too short for the rhythm; the chain breaks
    there, and the first beat must open the new chain or the episode counts 5."""
    rec = load_recording(dev_dir / f"{name}.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - onset_s) < 0.2)
    assert lab["beats"] == 6 and lab["triggered"]
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    events = _run(make_detector(rec), t, x)
    (onset,) = _onsets(events)
    assert lab["beat_times_s"][5] <= onset.t <= lab["end_s"]


def test_beats_after_an_uneven_lead_in_carry_over_when_the_rhythm_breaks(
    dev_dir: Path,
) -> None:
    """A 52 Hz accelerometer: the stretch and first beat come as quick pulses, and the
    chain breaks after the second beat. The beats since the last uneven pulse open the
    new chain; dropping them put the alarm after the end of this 7-beat episode."""
    _, lab, events = _labelled_episode(dev_dir, "imu-ankle-008", 121.7)
    assert lab["beats"] == 7
    _assert_alarmed_in_window_and_counted(lab, events)


def test_a_wiggle_inside_an_accelerometer_half_cycle_is_not_a_half_cycle(
    dev_dir: Path,
) -> None:
    """A 4.1 Hz knee accelerometer: the amplified 2nd harmonic makes some half-cycles
    dip across zero and back. Taken as half-cycles, the dips broke the rhythm and this
    6-beat episode was missed."""
    rec, lab, events = _labelled_episode(dev_dir, "imu-knee-013", 73.3)
    assert rec.sensor == "acc3" and lab["beats"] == 6
    _assert_alarmed_in_window_and_counted(lab, events)


def test_a_long_episode_that_stumbles_raises_one_alarm(dev_dir: Path) -> None:
    """45 beats with a few malformed cycles: the rhythm breaks and re-forms without a
    rest, which is the same episode going on, not a new onset."""
    rec = load_recording(dev_dir / "imu-knee-013.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 46.0) < 0.2)
    assert lab["beats"] == 45
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    assert len(_onsets(_run(make_detector(rec), t, x))) == 1


def test_a_long_episode_that_stumbles_is_counted_whole(dev_dir: Path) -> None:
    """The end event of an episode whose rhythm broke and resumed within the re-arm time
    counts both parts (it counted 10 of these 45 beats when the break ended it), and the
    parts make one episode: one onset, one end."""
    rec = load_recording(dev_dir / "imu-knee-013.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 46.0) < 0.2)
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    events = _run(make_detector(rec), t, x)
    (onset,) = _onsets(events)
    (end,) = [e for e in events if e.event == "clonus.end"]
    assert end.episode == onset.episode
    assert abs(end.beats - lab["beats"]) <= 1
    assert end.onset_t == pytest.approx(onset.onset_t)
    assert end.t >= end.last_beat_t + 1.0  # held for the re-arm time before it ended


def test_rhythm_resuming_after_the_re_arm_time_is_a_new_episode() -> None:
    """Two 8-beat episodes 1.5 s apart are two alarms and two ends, not one."""
    t1, x1, _ = clonus_band("imu6", 8, seed=4, tail_s=1.5)
    t2, x2, _ = clonus_band("imu6", 8, seed=4, lead_s=0.2)
    t = np.concatenate([t1, t2 + t1[-1] + 1 / 200.0])
    x = np.concatenate([x1, x2])
    events = _run(ClonusDetector("imu6", site_params("ankle"), 200.0), t, x)
    ends = [e for e in events if e.event == "clonus.end"]
    assert len(_onsets(events)) == 2 and len(ends) == 2
    assert all(abs(e.beats - 8) <= 1 for e in ends)


def test_an_emg_burst_a_third_smaller_than_the_one_before_is_still_a_beat(
    dev_dir: Path,
) -> None:
    """EMG bursts vary in size from one to the next (recruitment); the last of a 7-beat
    episode is 0.58 after 0.95, which is not the ringing of a filter."""
    rec = load_recording(dev_dir / "emg-ankle-001.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 84.5) < 0.2)
    t, x = _slice(rec, lab["onset_s"] - 3.0, lab["end_s"] + 2.0)
    (onset,) = _onsets(_run(make_detector(rec), t, x))
    assert lab["beat_times_s"][5] <= onset.t <= lab["end_s"]


def test_threshold_is_configurable(dev_dir: Path) -> None:
    rec = load_recording(dev_dir / "imu-knee-010.csv")
    lab = next(lab for lab in rec.meta["labels"] if abs(lab["onset_s"] - 60.7) < 0.1)
    assert lab["beats"] == 5
    t, x = _slice(rec, 58.0, 64.0)
    assert not _onsets(_run(make_detector(rec), t, x))
    lower = _onsets(_run(make_detector(rec, threshold_beats=3), t, x))
    assert len(lower) == 1 and lower[0].beats == 4


# -- confounders ---------------------------------------------------------------------------


def _alarms_by_confounder(dev_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for csv in sorted(dev_dir.glob("*.csv")):
        rec = load_recording(csv)
        onsets = _onsets(_run(make_detector(rec), rec.t, rec.x))
        labelled = rec.meta["labels"]
        for c in rec.meta["confounders"]:
            counts.setdefault(c["kind"], 0)
            for e in onsets:
                in_episode = any(lab["onset_s"] <= e.t <= lab["end_s"] + 0.5 for lab in labelled)
                if c["onset_s"] <= e.t <= c["end_s"] + 1.0 and not in_episode:
                    counts[c["kind"]] += 1
    return counts


@pytest.fixture(scope="module")
def confounder_alarms(dev_dir: Path) -> dict[str, int]:
    return _alarms_by_confounder(dev_dir)


@pytest.mark.parametrize("kind", ["walking", "impact", "tonic", "tapping", "vibration"])
def test_no_alarm_on_walking_knocks_tonic_contraction_tapping_or_vibration(
    confounder_alarms: dict[str, int], kind: str
) -> None:
    assert kind in confounder_alarms
    assert confounder_alarms[kind] == 0


def test_tremor_alarms_stay_at_or_below_measured_level(confounder_alarms: dict[str, int]) -> None:
    """Known limitation: tremor with an uneven swing (and EMG tremor) is not separable
    from spontaneous clonus by rhythm and shape alone; this guards the measured level
    from getting worse: 4 of 9 tremor spells. It was 2 until EMG bursts were timed at
    their centres, which keeps EMG tremor's chains together as it does clonus's (on the
    held-out split: EMG sensitivity 0.865 -> 0.911, tremor false alarms 6.3 -> 6.9/h), and
    3 until an accelerometer's weak sixth beat waited for the next at 0.8 of the chain, not
    0.7: one waning tremor chain is now judged at its ninth beat (harmonic ratio 0.005),
    not its sixth (0). Tremor alarms on the 50 tuning, check and held-out seeds did not
    change."""
    assert confounder_alarms["tremor"] <= 4


def test_an_even_sine_swing_is_not_clonus_but_the_same_rhythm_with_a_quick_phase_is() -> None:
    """Same rate, size and mounting; only the shape of the cycle differs. A clean sine is
    refused unless the shape check is turned off."""
    fs, freq, amp = 200.0, 5.5, 60.0
    t, clonus, _ = clonus_band("imu6", 20, freq=freq, fs=fs, amp=amp, stretch=0.0, seed=3)
    rng = np.random.default_rng(3)
    on = (t >= 3.0) & (t < 3.0 + 20 / freq)
    swing = np.where(on, amp * np.sin(2 * np.pi * freq * (t - 3.0)), 0.0)
    sine = clonus.copy()
    sine[:, 3:6] = np.outer(swing, [0.8, 0.5, 0.33]) + rng.normal(0, 2.0, (t.size, 3))
    ankle = site_params("ankle")
    (onset,) = _onsets(_run(ClonusDetector("imu6", ankle, fs), t, clonus))
    assert onset.extra["harmonic_ratio"] >= ankle.min_harmonic_ratio
    assert not _onsets(_run(ClonusDetector("imu6", ankle, fs), t, sine))
    off = ankle.with_overrides(min_harmonic_ratio=0.0)
    assert len(_onsets(_run(ClonusDetector("imu6", off, fs), t, sine))) == 1


# -- gaps and NaNs -------------------------------------------------------------------------


def _long_episode(dev_dir: Path) -> tuple[Recording, dict[str, Any], np.ndarray, np.ndarray]:
    rec = load_recording(dev_dir / "imu-ankle-002.csv")  # 200 Hz, no loss
    lab = rec.meta["labels"][2]  # 30 beats from 40.7 s
    t, x = _slice(rec, 38.0, 50.0)
    return rec, lab, t, x


def test_short_packet_loss_inside_an_episode_does_not_split_or_invent_beats(
    dev_dir: Path,
) -> None:
    rec, lab, t, x = _long_episode(dev_dir)
    keep = np.ones(t.size, dtype=bool)
    for start in (41.5, 42.6, 43.3):  # three lost 60 ms packets mid-episode
        keep &= ~((t >= start) & (t < start + 0.06))
    events = _run(make_detector(rec), t[keep], x[keep])
    onsets = _onsets(events)
    assert len(onsets) == 1
    end = next(e for e in events if e.event == "clonus.end")
    assert abs(end.beats - lab["beats"]) <= 1


def _lossy(sensor: str, beats: int, lost: tuple[int, int] | None, seed: int) -> list[EpisodeEvent]:
    """The simulated band's episode, with the samples from 40 ms before beat `lost[0]` to
    40 ms before beat `lost[1]` lost (a whole cycle: neither of its half-cycles is seen)."""
    t, x, bt = clonus_band(sensor, beats, seed=seed, stretch=0.5)
    keep = np.ones(t.size, dtype=bool)
    if lost is not None:
        keep = ~((t >= bt[lost[0]] - 0.04) & (t < bt[lost[1]] - 0.04))
    return _run(ClonusDetector(sensor, site_params("ankle"), 200.0), t[keep], x[keep], chunk=8)


@pytest.mark.parametrize(
    ("seed", "freq", "offset"), [(1, 7.5, 0.06), (1, 7.5, 0.15), (2, 7.5, 0.03)]
)
def test_a_lost_frame_is_not_taken_for_movement_of_the_limb(
    seed: int, freq: float, offset: float
) -> None:
    """A Polar H10 frame (0.38 s of a 100 Hz accelerometer) lost inside a 20-beat
    episode. The samples filled in across it are a straight line from one phase of the
    rhythm to another; averaged as if they were the limb, they looked like the limb
    moving one way and back, and these episodes went unalarmed (`benchmarks/ble_loss.py`:
    2 of 20 at 16 % loss). Averages over a fill longer than a quarter period are left
    out."""
    t, x, beats = clonus_band("acc3", 20, freq=freq, fs=100.0, stretch=0.5, seed=seed)
    keep = ~((t >= beats[3] + offset) & (t < beats[3] + offset + 0.38))
    events = _run(ClonusDetector("acc3", site_params("ankle"), 100.0), t[keep], x[keep], chunk=8)
    assert len(_onsets(events)) == 1


@pytest.mark.parametrize("sensor", ["imu6", "acc3"])
def test_a_cycle_lost_to_packet_loss_is_inferred_between_beats_seen_on_both_sides(
    sensor: str,
) -> None:
    """Clonus does not pause while packets are lost. A cycle that fell into the gap is
    inferred from the rhythm on both sides of it, the event says so (`inferred_beats`),
    and the episode is alarmed and counted whole; a five-beat episode with a lost cycle
    still raises nothing. Without the inference the lost cycle broke every imu6 chain
    (the accelerometer's counted 6 of 8)."""
    found = 0
    for seed in range(6):
        events = _lossy(sensor, 8, (3, 4), seed)
        kinds = [e.event for e in events if e.event != "clonus.update"]
        if kinds == ["clonus.onset", "clonus.end"]:
            end = events[-1]
            assert abs(end.beats - 8) <= 1
            assert end.extra["inferred_beats"] == 1
            found += 1
        assert not _onsets(_lossy(sensor, 5, (2, 3), seed))
        assert all("inferred_beats" not in e.extra for e in _lossy(sensor, 8, None, seed))
    assert found >= 5


def test_long_gap_ends_the_episode_and_never_merges_two(dev_dir: Path) -> None:
    rec, lab, t, x = _long_episode(dev_dir)
    keep = ~((t >= 43.0) & (t < 44.5))  # 1.5 s of link loss mid-episode
    det = make_detector(rec)
    events = _run(det, t[keep], x[keep])
    ends = [e for e in events if e.event == "clonus.end"]
    assert ends[0].extra["end_reason"] == "signal_gap"
    assert ends[0].t < 43.0 + 1e-6
    assert det.stats.long_gaps == 1
    ids = [e.episode for e in events]
    assert len(set(ids)) == len(ends)  # each episode ended once; none spans the gap
    assert all(e.beats <= lab["beats"] for e in ends)


def test_nans_are_counted_and_do_not_invent_beats(dev_dir: Path) -> None:
    rec, lab, t, x = _long_episode(dev_dir)
    rng = np.random.default_rng(3)
    x_nan = x.copy()
    x_nan[rng.random(t.size) < 0.03, rng.integers(0, 6)] = np.nan
    det = make_detector(rec)
    events = _run(det, t, x_nan)
    assert det.stats.nan_rows > 0
    assert len(_onsets(events)) == 1
    end = next(e for e in events if e.event == "clonus.end")
    assert abs(end.beats - lab["beats"]) <= 1


def test_all_nan_and_empty_input_are_harmless() -> None:
    det = ClonusDetector("acc3", site_params("wrist"), 100.0)
    assert det.process(np.arange(5) / 100, np.full((5, 3), np.nan)) == []
    assert det.process(np.empty(0), np.empty((0, 3))) == []
    assert det.stats.nan_rows == 5


# -- orientation and sensors (generated episodes) ------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_orientation_does_not_matter(seed: int) -> None:
    """The same spontaneous 10-beat episode in four random mountings counts the same."""
    counts = []
    for mount in (seed, seed + 10):
        t, x, beat_t = clonus_band("imu6", 10, freq=5.5, stretch=0.0, seed=mount)
        events = _run(ClonusDetector("imu6", site_params("ankle"), 200.0), t, x)
        (onset,) = _onsets(events)
        assert onset.t >= beat_t[5]
        counts.append(events[-1].beats)
    assert all(abs(c - 10) <= 1 for c in counts)


def test_few_beats_and_quiet_raise_nothing() -> None:
    t, x, _ = clonus_band("imu6", 3, stretch=0.0, seed=5)
    assert not _onsets(_run(ClonusDetector("imu6", site_params("ankle"), 200.0), t, x))
    quiet = np.random.default_rng(0).normal(0, 2.0, size=(4000, 6))
    ts = np.arange(4000) / 200.0
    assert not _run(ClonusDetector("imu6", site_params("knee"), 200.0), ts, quiet)


def test_unknown_sensor_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown sensor 'ecg'"):
        ClonusDetector("ecg", site_params("ankle"), 100.0)
    with pytest.raises(ValueError, match="unknown site 'elbow'"):
        site_params("elbow")


def test_small_calls_are_held_until_enough_arrive_and_flush_runs_them() -> None:
    """1-sample calls cost Python overhead per call; they are run together once `hold_s`
    worth has arrived. Nothing is lost: flush and force_end_now run what is held."""
    fs = 200.0
    det = ClonusDetector("imu6", site_params("ankle"), fs)
    hold = round(det.hold_s * fs)
    x = np.zeros((hold - 1, 6))
    assert det.process(np.arange(hold - 1) / fs, x) == []
    assert det.stats.samples == 0
    det.force_end_now("link_lost")
    assert det.stats.samples == hold - 1
    det.process(np.array([1.0]), np.zeros((1, 6)))
    det.flush()
    assert det.stats.samples == hold


# -- EMG: reflex bursts rest in between ----------------------------------------------------


def _emg_train(
    rest: float,
    beats: int = 10,
    f: float = 7.0,
    seed: int = 0,
    width: float = 0.03,
    sizes: tuple[float, ...] = (1.0,),
) -> tuple[Any, Any]:
    """Surface EMG at 1 kHz: `beats` bursts at `f` Hz on band-limited noise (Gaussian,
    standard deviation `width` s: 0.03 is a reflex burst), with the muscle kept active at
    `rest` of the burst amplitude in between (0: silent periods, reflex-like; 0.7: cyclic
    voluntary effort that never lets go). Burst k is `sizes[k % len(sizes)]` high."""
    from scipy import signal

    fs = 1000.0
    rng = np.random.default_rng(seed)
    t = np.arange(int((4.0 + beats / f) * fs)) / fs
    sos = signal.butter(4, [30, 250], btype="band", fs=fs, output="sos")
    carrier = signal.sosfilt(sos, rng.standard_normal(t.size))
    carrier /= carrier.std()
    bursts = sum(
        sizes[k % len(sizes)] * np.exp(-0.5 * ((t - 2.0 - (k + 0.5) / f) / width) ** 2)
        for k in range(beats)
    )
    active = (t >= 2.0) & (t < 2.0 + beats / f)
    env = np.where(active, rest + (1 - rest) * bursts, bursts)
    x = 0.5 * env * carrier + 0.01 * rng.standard_normal(t.size)
    return t, x[:, None]


def test_emg_bursts_big_and_small_in_turn_are_not_clonus() -> None:
    """A step's EMG burst in two humps of unequal size, 4.4 Hz apart (walking at 2.2
    steps/s): every other "beat" is under half the others. One reflex burst a cycle does
    not alternate; 3 of the 6 walking alarms on the tuning and check seeds did."""
    params = site_params("ankle")
    t, x = _emg_train(0.0, beats=12, f=4.4, sizes=(1.0, 0.4))
    unchecked = ClonusDetector("emg", params.with_overrides(max_alternation=0.0), 1000.0)
    assert len(_onsets(_run(unchecked, t, x))) == 1
    assert not _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))
    for sizes in [(1.0,), (1.0, 0.85)]:  # even bursts, and bursts that only vary a little
        t, x = _emg_train(0.0, beats=12, f=4.4, sizes=sizes)
        assert len(_onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))) == 1


def test_emg_that_never_rests_between_bursts_is_not_clonus() -> None:
    """Cyclic voluntary effort (or tonic drive) keeps the envelope up between bursts;
    reflex clonus bursts are short with silent periods after them. Without the check the
    train at 0.6 alarms; at 0.7 its bursts are too shallow to form a chain at all."""
    params = site_params("wrist")
    t, x = _emg_train(0.6)
    unchecked = ClonusDetector(
        "emg", params.with_overrides(max_envelope_floor=1.0, max_period_cv=np.inf), 1000.0
    )
    (onset,) = _onsets(_run(unchecked, t, x))
    assert onset.extra["envelope_floor"] > params.max_envelope_floor
    for rest in (0.6, 0.7):
        t, x = _emg_train(rest)
        assert not _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))


def test_emg_bursts_right_after_a_held_contraction_are_not_clonus_starting() -> None:
    """The same ten reflex-like bursts at 7 Hz alarm from rest. After 0.9 s of a held
    contraction (at 0.8 of the bursts' size) that ends just before they begin, the
    muscle was already working before the first burst: not a reflex loop starting from
    rest. Six
    of the 13 alarms on real voluntary EMG had the envelope at 0.54-1.4 of the bursts'
    size in the second before (`max_lead_in` = 0.5); synthetic clonus at 0.02 (median).
    With the line off the train alarms: it is this rule that holds it."""
    params = site_params("wrist")
    t, x = _emg_train(0.0)
    (onset,) = _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))
    assert onset.extra["lead_in"] < 0.1
    rng = np.random.default_rng(7)
    rested = 1500  # 1.5 s more of rest first, so that the contraction is seen to start
    t = np.arange(t.size + rested) / 1000.0
    x = np.vstack([0.01 * rng.standard_normal((rested, 1)), x])
    # A steady contraction: an even 137 Hz, whose envelope is flat, so that none of its
    # own ups and downs join the bursts' chain (a held contraction's would, by chance).
    held = (t >= 2.5) & (t < 3.4)  # the first burst peaks at 3.57 s
    x = x + (0.5 * 0.8 * np.sqrt(2.0) * held * np.sin(2 * np.pi * 137.0 * t))[:, None]
    det = ClonusDetector("emg", params, 1000.0)
    det.episodes.report_beats = True
    assert not _onsets(_run(det, t, x))
    assert "max_lead_in" in [c.refused_by for c in det.episodes.unreported]
    unchecked = ClonusDetector("emg", params.with_overrides(max_lead_in=np.inf), 1000.0)
    (onset,) = _onsets(_run(unchecked, t, x))
    assert onset.extra["lead_in"] > params.max_lead_in


def test_an_emg_rhythm_that_broke_off_is_judged_from_before_its_first_piece() -> None:
    """Sixteen wide bursts (40 ms standard deviation) at 7 Hz from rest, the fifth of
    them missing: the chain breaks there and a second one forms. Its lead-in is measured
    before the first piece, where the muscle rested, not over the first piece's bursts
    (which measured 0.43 and more and lost synthetic episodes of 14-30 beats)."""
    sizes = tuple(0.0 if k == 4 else 1.0 for k in range(16))
    t, x = _emg_train(0.0, beats=16, f=7.0, width=0.04, sizes=sizes)
    (onset,) = _onsets(_run(ClonusDetector("emg", site_params("ankle"), 1000.0), t, x))
    assert onset.extra["lead_in"] < 0.1


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_six_emg_bursts_of_differing_widths_are_one_sustained_episode(seed: int) -> None:
    """Reflex bursts differ in width from beat to beat (here 35-80 ms at half height, with
    silent periods between them). Each burst is one peak of the envelope, timed at the
    centre of its mass, whatever its width: each train is one episode of 6. (Timed at the
    band-passed envelope's zero crossing, which a narrow burst moves by a fifth of a
    period, these trains broke apart.)"""
    from scipy import signal

    fs, f, beats = 1000.0, 7.5, 6
    rng = np.random.default_rng(seed)
    t = np.arange(int((4.0 + beats / f) * fs)) / fs
    sos = signal.butter(4, [30, 250], btype="band", fs=fs, output="sos")
    carrier = signal.sosfilt(sos, rng.standard_normal(t.size))
    widths = rng.uniform(0.015, 0.035, beats)
    env = sum(np.exp(-0.5 * ((t - 2.0 - (k + 0.5) / f) / widths[k]) ** 2) for k in range(beats))
    x = 0.5 * env * carrier / carrier.std() + 0.01 * rng.standard_normal(t.size)
    events = _run(ClonusDetector("emg", site_params("ankle"), fs), t, x[:, None])
    assert len(_onsets(events)) == 1
    (end,) = [e for e in events if e.event == "clonus.end"]
    assert end.beats == beats


def test_emg_bursts_with_silent_periods_between_are_clonus() -> None:
    t, x = _emg_train(0.0)
    (onset,) = _onsets(_run(ClonusDetector("emg", site_params("wrist"), 1000.0), t, x))
    assert onset.extra["envelope_floor"] < 0.05


def test_a_held_voluntary_contraction_whose_envelope_wanders_is_not_clonus() -> None:
    """Real surface EMG of a healthy person holding a hand movement (two forearm
    channels, 1 kHz, the first 2.5 s of `27_1_3.txt` of the MuscleTracker data set, CC0:
    github.com/emoralesv/MuscleTracker-Hand-Movement). Six chance peaks of its envelope
    fall evenly enough to alarm without the envelope-rhythm check; the envelope between
    them does not repeat from one peak to the next, as one reflex loop's does. The
    peaks begin at the excerpt's start, so the start line is off here."""
    rows = np.loadtxt(
        Path(__file__).parent / "data" / "voluntary-forearm-emg.csv", delimiter=",", skiprows=1
    )
    t, x = rows[:, 0], rows[:, 1:]
    params = site_params("wrist").with_overrides(min_seen_before_s=0.0)
    unchecked = ClonusDetector("emg", params.with_overrides(min_envelope_rhythm=-2.0), 1000.0, 2)
    (onset,) = _onsets(_run(unchecked, t, x))
    assert onset.extra["envelope_rhythm"] < params.min_envelope_rhythm
    checked = ClonusDetector("emg", params, 1000.0, 2)
    checked.episodes.report_beats = True
    assert not _onsets(_run(checked, t, x))
    assert "min_envelope_rhythm" in [c.refused_by for c in checked.episodes.unreported]


@pytest.mark.parametrize("seed", range(6))
def test_reflex_bursts_of_any_width_and_size_repeat_in_the_envelope(seed: int) -> None:
    """Clonic bursts 40-100 ms wide (full width at half height), 4-9 Hz, sizes varying by
    up to 30 % from burst to burst: one burst a cycle, so the envelope repeats a period
    on, and each train alarms on its sixth burst."""
    from scipy import signal

    fs = 1000.0
    rng = np.random.default_rng(seed)
    f, beats = rng.uniform(4.0, 9.0), 8
    t = np.arange(int((4.0 + beats / f) * fs)) / fs
    sos = signal.butter(4, [30, 250], btype="band", fs=fs, output="sos")
    carrier = signal.sosfilt(sos, rng.standard_normal(t.size))
    widths = rng.uniform(0.040, 0.100, beats) / 2.355  # full width at half height
    sizes = rng.uniform(0.7, 1.3, beats)
    env = sum(
        sizes[k] * np.exp(-0.5 * ((t - 2.0 - (k + 0.5) / f) / widths[k]) ** 2) for k in range(beats)
    )
    x = 0.5 * env * carrier / carrier.std() + 0.01 * rng.standard_normal(t.size)
    events = _run(ClonusDetector("emg", site_params("ankle"), fs), t, x[:, None])
    (onset,) = _onsets(events)
    assert onset.beats == 6
    assert onset.extra["envelope_rhythm"] >= site_params("ankle").min_envelope_rhythm


@pytest.mark.parametrize("f", [3.5, 4.0])
def test_emg_bursts_held_as_long_as_a_tap_are_not_clonus_but_reflex_bursts_are(f: float) -> None:
    """Tapping a foot or hand is a train of bursts with rests between, at a clonus rate,
    but each burst is held for a good part of the cycle (here 180-200 ms above 0.3 of
    the bursts' level, 80 ms for the reflex-like bursts); a reflex burst is over in
    50-100 ms. Without the check (and the rest-between-bursts and lead-in checks, which
    at 4 Hz refuse these taps too) the taps alarm."""
    params = site_params("ankle")
    t, x = _emg_train(0.0, beats=12, f=f, width=0.085)
    unchecked = ClonusDetector(
        "emg",
        params.with_overrides(max_burst_s=np.inf, max_envelope_floor=1.0, max_lead_in=np.inf),
        1000.0,
    )
    (onset,) = _onsets(_run(unchecked, t, x))
    assert onset.extra["burst_s"] > params.max_burst_s
    assert not _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))
    t, x = _emg_train(0.0, beats=12, f=f)
    (onset,) = _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))
    assert onset.extra["burst_s"] < 0.12


# -- motion: clonus is a small oscillation ---------------------------------------------------


@pytest.mark.parametrize(
    ("sensor", "shaken", "clonic"), [("acc3", 600.0, 300.0), ("imu6", 900.0, 400.0)]
)
def test_a_limb_shaken_hard_is_not_clonus_but_large_clonus_still_is(
    sensor: str, shaken: float, clonic: float
) -> None:
    """19 cycles at 4.5 Hz with a quick phase, after a stretch: at 600 deg/s (3 g at the
    band, 3.9 cm of travel; 29 deg for a gyroscope at 900 deg/s) it is voluntary shaking,
    at half of that it is still clonus."""
    params = site_params("wrist")
    unchecked = params.with_overrides(max_excursion={"gyr": np.inf, "acc": np.inf})
    t, x, _ = clonus_band(sensor, 19, freq=4.5, amp=shaken, seed=2)
    assert _onsets(_run(ClonusDetector(sensor, unchecked, 200.0), t, x))
    assert not _onsets(_run(ClonusDetector(sensor, params, 200.0), t, x))
    t, x, _ = clonus_band(sensor, 19, freq=4.5, amp=clonic, seed=2)
    assert len(_onsets(_run(ClonusDetector(sensor, params, 200.0), t, x))) == 1


def test_six_emg_bursts_from_rest_count_six_and_five_count_nothing() -> None:
    """The first burst from rest is a beat like the others (a clonus band-pass on the
    envelope once passed it at a fraction of its size, and 6-burst trains at 7 Hz were
    counted as 5). Five bursts still raise nothing."""
    params = site_params("ankle")
    for seed in range(6):
        t, x = _emg_train(0.0, beats=6, f=7.0, seed=seed)
        (onset,) = _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))
        assert onset.beats == 6
        t, x = _emg_train(0.0, beats=5, f=7.0, seed=seed)
        assert not _onsets(_run(ClonusDetector("emg", params, 1000.0), t, x))


def test_an_emg_burst_missed_inside_an_alarmed_episode_is_counted_but_never_alarms() -> None:
    """Twelve bursts at 7 Hz with one of them absent (under the line, as a weak or
    masked burst is). Inside an alarmed episode the rhythm on both sides places it:
    the episode goes on and its end counts twelve, one inferred. Before the alarm
    nothing is inferred: with the fourth burst absent, the rhythm breaks there and the
    onset comes at the sixth burst seen after it, counting only bursts seen."""
    params = site_params("ankle")
    whole = [1.0] * 12

    def events(absent: int) -> list[EpisodeEvent]:
        sizes = (*whole[:absent], 0.0, *whole[absent + 1 :])
        t, x = _emg_train(0.0, beats=12, f=7.0, sizes=sizes)
        return _run(ClonusDetector("emg", params, 1000.0), t, x)

    late = events(absent=8)
    (onset,) = _onsets(late)
    end = late[-1]
    assert end.event == "clonus.end" and end.episode == onset.episode
    assert end.beats == 12 and end.extra.get("inferred_beats") == 1
    assert "inferred_beats" not in onset.extra

    early = events(absent=3)
    (onset,) = _onsets(early)
    assert onset.beats == 6 and "inferred_beats" not in onset.extra
    sixth_after = 2.0 + (4 + 5 + 0.5) / 7.0  # burst 9, the sixth of bursts 4-11
    assert onset.t >= sixth_after
    assert early[-1].beats == 8


def _lobe_train(
    sizes: list[float], ratio: float | None, pause_after: int | None = None, pause: int = 20
) -> list[EpisodeEvent]:
    """Alternating lobes 18 samples apart at 200 Hz (5.6 Hz cycles): each cycle a larger
    half of `sizes[k]` (the contraction, the accelerometer's beat sign) and a smaller
    half of 0.8 of it; then quiet. Before cycle `pause_after`, a pause of `pause` samples
    (0.1 s: the rhythm breaks) lengthens one cycle."""
    from clonusd.dsp.episodes import EpisodeTracker

    tracker = EpisodeTracker(
        site_params("ankle"),
        200.0,
        "pairs",
        0.8,
        "m/s^2",
        lambda pos: pos / 200.0,
        polarity="size",
        onset_beat_ratio=ratio,
    )
    events: list[EpisodeEvent] = []
    prev: Lobe | None = None
    pos = 1000
    for k, size in enumerate(sizes):
        if k == pause_after:
            pos += pause
        for sign, peak in ((1, size), (-1, -0.8 * size)):
            lobe = Lobe(sign, pos, peak, pos + 4)
            if prev is not None:
                prev.closed, prev.close_pos = True, pos
                events += tracker.closed(prev)
            events += tracker.started(lobe)
            prev, pos = lobe, pos + 18
    for p in range(pos, pos + 400, 20):
        events += tracker.tick(p)
    return events


def test_a_stumble_after_a_stretch_and_four_beats_does_not_hold_off_the_rest() -> None:
    """A stretch (two cycles three times the beats' size, not counted), four beats, one
    uneven cycle, and twelve more beats. The first chain had more half-cycles than an
    episode has (12) but only four beats: it was taken for a rhythm that had run its
    course, and the rest of the clonus, starting within the re-arm time, was never
    alarmed (a 20-beat accelerometer episode of check seed 300 was missed this way)."""
    stretch, beats = [3.0, 3.0], [1.0] * 16
    (onset,) = _onsets(_lobe_train(stretch + beats, None, pause_after=6))
    assert onset.beats == 6  # the beats after the stumble: the four before are not carried
    # A rhythm counted past the threshold but not alarmed (here, under the amplitude
    # floor of 0.8) still holds off a chain that re-forms out of it.
    assert not _onsets(_lobe_train([0.7] * 7 + [1.0] * 12, None, pause_after=7))


def test_one_slow_cycle_inside_an_episode_does_not_break_its_count() -> None:
    """Six beats at 5.6 Hz, one cycle of them 39 % longer (4.0 Hz). Clonus slows at an
    episode's start and end, by up to 2 Hz (Wallace 2012), and the size of one cycle moves
    the timing of the next; within 35 % of the median such an episode broke into three
    beats and three, and was never alarmed (four acc3 episodes of 107 on held-out seeds
    900-909 were lost so). A 0.1 s pause (a cycle 56 % longer) still breaks it."""
    (onset,) = _onsets(_lobe_train([1.0] * 6, None, pause_after=3, pause=14))
    assert onset.beats == 6
    assert not _onsets(_lobe_train([1.0] * 6, None, pause_after=3))


def test_a_weak_cycle_after_five_beats_is_ringing_not_the_sixth_beat() -> None:
    """Five accelerometer beats, the last ones fading, and then a cycle at 0.6 of the
    chain (0.8 of the one before, so not cut as ringing by the tail rule): the limb and the
    band-pass ringing after the last contraction (tuning seeds: the 6th counted beat of
    5-beat episodes that alarmed was 0.51-0.67 of the beats before; of true onsets, 0.8 at
    the 5th percentile). It is not counted as the sixth; a full-size beat after it is."""
    five_and_ring = [1.0, 1.0, 1.0, 0.85, 0.75, 0.6]
    assert _onsets(_lobe_train(five_and_ring, None))  # what happened before
    assert not _onsets(_lobe_train(five_and_ring, 0.7))
    assert len(_onsets(_lobe_train([1.0] * 6, 0.7))) == 1
    (onset,) = _onsets(_lobe_train([*five_and_ring, 1.0], 0.7))
    assert onset.beats == 7


@pytest.mark.parametrize(("sensor", "ring"), [("acc3", 0.75), ("imu6", 0.6)])
def test_a_weak_cycle_after_five_beats_waits_for_the_next_beat(sensor: str, ring: float) -> None:
    """The line for a weak sixth beat, as the detector sets it for each motion sensor.
    Where a cycle after five beats made an alarm on the tuning and check seeds, it was
    0.70-0.77 of the beats before it on an accelerometer and 0.37-0.70 on a gyroscope:
    ringing after the last contraction, which alarmed 5-beat episodes or alarmed 6-beat
    ones after their end. True sixth beats were under the line (0.8, 0.7) in 1 onset of
    224 and 9 of 552; the next beat decides those."""
    ratio = ClonusDetector(sensor, site_params("ankle"), 104.0).episodes.onset_beat_ratio
    five = [1.0, 1.0, 1.0, 0.95, 0.9]
    assert not _onsets(_lobe_train([*five, ring], ratio))
    (onset,) = _onsets(_lobe_train([*five, 0.85], ratio))
    assert onset.beats == 6


# Beat-stage positions the band had run (at rest) before an envelope's first sample: a
# rhythm must start after the signal has (`min_seen_before_s`).
RESTED = 300


def _emg_bursts(env: np.ndarray) -> tuple[ClonusDetector, list[Lobe]]:
    """An ankle EMG detector (envelope at 200 Hz) and the bursts and troughs its burst
    tracker finds in envelope `env` (resting level 0.01), fed a tenth of a second at a
    time, `RESTED` positions after the band started."""
    det = ClonusDetector("emg", site_params("ankle"), 1000.0)
    assert det.beat_fs == 200.0
    lobes: list[Lobe] = []
    for at in range(0, env.size, 20):
        idx = np.arange(at, min(at + 20, env.size))
        lobes += det.bursts.process(idx + RESTED, env[idx], 0.01)
    return det, lobes


def _burst_starts(env: np.ndarray) -> list[int]:
    """Where (in `env`) the burst tracker of an ankle EMG detector times its bursts."""
    return [b.start_pos - RESTED for b in _emg_bursts(env)[1] if b.sign > 0]


def _envelope(bursts: list[tuple[float, float]]) -> np.ndarray:
    """An EMG envelope at rest (0.01) with a Gaussian burst for each (centre, spread)."""
    t = np.arange(400, dtype=np.float64)
    return 0.01 + sum((np.exp(-0.5 * ((t - c) / w) ** 2) for c, w in bursts), np.zeros(t.size))


def test_two_emg_bursts_the_envelope_did_not_part_are_two_beats() -> None:
    """Seven bursts every 25 samples (8 Hz at 200 Hz); the fourth and fifth are wide
    (standard deviation 9 samples) and merge into one hump, timed half a period late for
    the one and early for the other. The rhythm broke there and the episode was missed:
    most EMG misses on the tuning and check seeds were bursts at 7-9 Hz merged so. They
    are two beats, where they were. A narrow burst half a period late is one late beat."""
    centres = [50.0 + 25 * k for k in range(7)]
    found = _burst_starts(
        _envelope([(c, 9.0 if k in (3, 4) else 4.0) for k, c in enumerate(centres)])
    )
    assert len(found) == 7
    assert all(abs(f - c) <= 3 for f, c in zip(found, centres, strict=True))
    late = [*centres[:3], centres[2] + 37.5, *centres[5:]]
    found = _burst_starts(_envelope([(c, 4.0) for c in late]))
    assert len(found) == 6
    assert all(abs(f - c) <= 3 for f, c in zip(found, late, strict=True))


def _emg_onsets(env: np.ndarray) -> list[EpisodeEvent]:
    """The onsets the episode stage of an ankle EMG detector makes of the bursts its
    burst tracker finds in envelope `env`."""
    det, lobes = _emg_bursts(env)
    events: list[EpisodeEvent] = []
    for lobe in lobes:
        events += det.episodes.started(lobe) + det.episodes.closed(lobe)
    return _onsets(events)


@pytest.mark.parametrize("merged", [0, 1])
def test_a_rhythm_whose_first_emg_bursts_merged_counts_both(merged: int) -> None:
    """Six bursts every 25 samples (8 Hz at 200 Hz), two of the first three wide
    (standard deviation 9 samples): they make one hump, timed half a period late for the
    first of them. Too few bursts before it show the period, so the burst tracker hands
    it on as one burst: the episode counted five and was missed (four EMG misses on the
    tuning and check seeds). The bursts after it show it is two. A narrow burst where
    the hump was is one beat, and five beats are no alarm."""
    centres = [50.0 + 25 * k for k in range(6)]
    wide = (merged, merged + 1)
    (onset,) = _emg_onsets(
        _envelope([(c, 9.0 if k in wide else 4.0) for k, c in enumerate(centres)])
    )
    assert onset.beats == 6
    single = (centres[merged] + centres[merged + 1]) / 2
    narrow = sorted([single, *(c for k, c in enumerate(centres) if k not in wide)])
    assert not _emg_onsets(_envelope([(c, 4.0) for c in narrow]))


def test_an_emg_episode_fading_out_counts_its_small_last_burst() -> None:
    """Six bursts every 25 samples (8 Hz at 200 Hz), the sixth at 0.35 of the others:
    clonus fading out. The episode stage used to trim such a burst from the chain's end
    as if it were a band-pass ringing (under 0.4 of the chain, or half the burst before
    it), and the 6-beat episode counted five. EMG bursts are peaks of the envelope, and
    the burst tracker drops ripples under 0.3 of the recent bursts itself, so the burst
    counts. One at 0.25 is a ripple: five beats, no alarm."""
    centres = [50.0 + 25 * k for k in range(6)]
    t = np.arange(400, dtype=np.float64)
    five = _envelope([(c, 4.0) for c in centres[:5]])
    last = np.exp(-0.5 * ((t - centres[5]) / 4.0) ** 2)
    (onset,) = _emg_onsets(five + 0.35 * last)
    assert onset.beats == 6
    assert not _emg_onsets(five + 0.25 * last)
