"""Clonus that goes on after a dropout is alarmed again: the detector's rule for a signal
that broke off inside an episode (a lost link, or lost packets), on generated episodes."""

from __future__ import annotations

import numpy as np
import pytest
from synth import clonus_band

from clonusd.dsp import ClonusDetector, EpisodeEvent, site_params

FS = 104.0


def _long_episode() -> tuple[np.ndarray, np.ndarray, list[float]]:
    return clonus_band("imu6", beats=60, fs=FS, seed=4)  # about 11 s of clonus


def _feed(det: ClonusDetector, t: np.ndarray, x: np.ndarray, step: int = 8) -> list[EpisodeEvent]:
    out: list[EpisodeEvent] = []
    for s in range(0, t.size, step):
        out += det.process(t[s : s + step], x[s : s + step])
    return out


def _kinds(events: list[EpisodeEvent]) -> list[str]:
    return [e.event for e in events]


@pytest.mark.parametrize("gap", [True, False])
def test_clonus_continuing_after_a_link_drop_is_alarmed_again_within_2_5_s(gap: bool) -> None:
    t, x, beats = _long_episode()
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    drop = beats[20]  # well inside the episode, after its onset
    before = t < drop
    events = _feed(det, t[before], x[before])
    assert _kinds(events) == ["clonus.onset", "clonus.update"] or "clonus.onset" in _kinds(events)
    ended = det.force_end_now("link_lost", gap=gap)
    assert [(e.event, e.extra.get("end_reason")) for e in ended] == [("clonus.end", "link_lost")]
    back = drop + 0.06  # reconnected 60 ms later; the band's clock ran on
    after = _feed(det, t[t >= back], x[t >= back])
    onsets = [e for e in after if e.event == "clonus.onset"]
    if not gap:
        # The old rule (a broken rhythm re-formed without rest is not a new clonus) keeps
        # it silent: this is what a dropout must not do.
        assert onsets == []
        return
    assert onsets, _kinds(after)
    assert onsets[0].t - back <= 2.5
    assert onsets[0].episode == 2


def test_a_long_loss_of_samples_inside_an_episode_ends_it_and_the_rest_is_alarmed() -> None:
    t, x, beats = _long_episode()
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    lost = (t >= beats[20]) & (t < beats[20] + 0.6)  # one big Polar frame, say
    events = _feed(det, t[~lost], x[~lost]) + det.flush()
    ends = [e for e in events if e.event == "clonus.end"]
    onsets = [e for e in events if e.event == "clonus.onset"]
    assert ends[0].extra["end_reason"] == "signal_gap"
    assert len(onsets) == 2 and onsets[1].t - (beats[20] + 0.6) <= 2.5
    assert det.stats.long_gaps == 1


def test_a_filled_in_loss_that_stops_the_rhythm_is_a_gap_not_a_rest() -> None:
    """A 0.45 s loss is filled in (straight lines, no beats): the rhythm stops inside it.
    That must not count as the rest that holds off the next alarm."""
    t, x, beats = _long_episode()
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    lost = (t >= beats[20]) & (t < beats[20] + 0.45)
    events = _feed(det, t[~lost], x[~lost]) + det.flush()
    assert det.stats.long_gaps == 0 and det.stats.missing_samples > 0
    onsets = [e for e in events if e.event == "clonus.onset"]
    ends = [e for e in events if e.event == "clonus.end"]
    # Either the episode carried over the fill, or it ended at the gap and the rest of
    # the clonus was alarmed again soon after.
    if len(ends) > 1:
        assert ends[0].extra["end_reason"] == "signal_gap"
        assert len(onsets) == 2 and onsets[1].t - (beats[20] + 0.45) <= 2.5
    else:
        assert len(onsets) == 1 and ends[0].last_beat_t > beats[40]


def test_an_episode_that_ends_by_itself_still_holds_off_its_ringing() -> None:
    """The rest rule is unchanged for a rhythm that stopped with the signal present."""
    t, x, _ = clonus_band("imu6", beats=20, fs=FS, seed=1)
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    events = _feed(det, t, x) + det.flush()
    assert _kinds(events).count("clonus.onset") == 1


def _pieces(gap_s: float, every_s: float) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """A long episode with `gap_s` of samples lost every `every_s` from its 4th beat on:
    no piece between two gaps holds more than the threshold's five beats."""
    t, x, beats = _long_episode()
    keep = np.ones(t.size, dtype=bool)
    g = beats[3]
    while g < beats[-1]:
        keep &= ~((t >= g) & (t < g + gap_s))
        g += every_s
    return t[keep], x[keep], beats


@pytest.mark.parametrize("bridge", [True, False])
def test_pieces_of_clonus_between_lost_frames_count_together(bridge: bool) -> None:
    """Lost 0.6 s frames every 1.3 s (a Verity Sense losing every other frame): the beats
    before a short gap count towards the threshold after it, at the same rate."""
    t, x, beats = _pieces(0.6, 1.3)
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    if not bridge:
        det.max_bridge_s = 0.0  # no gap is short enough: every piece counts alone
    events = _feed(det, t, x) + det.flush()
    onsets = [e for e in events if e.event == "clonus.onset"]
    if not bridge:
        assert onsets == []  # no piece alone passes the threshold
        return
    assert onsets and onsets[0].t < beats[12], _kinds(events)
    assert onsets[0].beats > 5 and onsets[0].extra["carried_beats"] > 0
    assert onsets[0].onset_t <= beats[1] + 0.05  # the first piece's first beat
    # Each later piece goes on the episode a gap ended, and says which.
    later = onsets[1:]
    assert later and all(e.extra.get("follows_episode") == e.episode - 1 for e in later)
    assert onsets[-1].t > beats[45]  # alarmed to the end, not once and then silence


def test_pieces_count_together_over_three_lost_polar_frames() -> None:
    """An H10 at 39 % frame loss lost three 0.38 s frames in a row (1.75 s) inside a
    17-beat episode, leaving two pieces of 5 beats; with a 1.2 s bridge that episode was
    never alarmed. Clonus does not pause while packets are lost."""
    t, x, _ = _pieces(1.75, 2.5)
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    onsets = [e for e in _feed(det, t, x) + det.flush() if e.event == "clonus.onset"]
    assert onsets and onsets[0].extra["carried_beats"] > 0


def test_beats_do_not_carry_over_a_long_gap() -> None:
    t, x, _ = _pieces(2.3, 3.0)  # gaps longer than max_bridge_s (2 s)
    det = ClonusDetector("imu6", site_params("ankle"), FS)
    events = _feed(det, t, x) + det.flush()
    assert "clonus.onset" not in _kinds(events)
