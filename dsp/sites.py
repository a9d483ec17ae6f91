"""Per-site detector defaults, from the physiology notes (shared/research).

Clonus runs at about 3-9 Hz at every limb site (ankle 3.8-8 Hz, slower by up to 2 Hz at
the start and end of an episode; patellar and wrist clonus "similar to ankle", so they are
allowed to run a little faster). The band-pass is 2nd order (4 poles): higher orders ring
and invent beats. Amplitude floors reject physiological tremor (0.0015-0.035 g) and the
few-degree wobble of a limb at rest; they are per sensor because units differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Site = Literal["ankle", "wrist", "knee"]
SensorKind = Literal["imu6", "acc3", "emg"]

SITES: tuple[Site, ...] = ("ankle", "wrist", "knee")
SENSORS: tuple[SensorKind, ...] = ("imu6", "acc3", "emg")


@dataclass(frozen=True)
class SiteParams:
    """Everything the detector needs to know about where the band is worn."""

    site: Site
    band_hz: tuple[float, float]  # motion's clonus band-pass (EMG bursts need none)
    rate_hz: tuple[float, float]  # accepted beat rate (1 / inter-beat interval)
    # Smallest clonus lobe worth counting, per sensor unit: gyro deg/s, acc m/s^2.
    min_amplitude: dict[str, float] = field(default_factory=dict)
    threshold_beats: int = 5  # "more than five contractions in a row is sustained"
    # |IBI - median| / median accepted for a new beat. Clonus slows at an episode's start
    # and end (by up to 2 Hz, Wallace 2012), and one cycle's size moves the next one's
    # timing. At 0.35, 4 acc3 episodes of 107 on held-out seeds 900-909 broke apart.
    regularity_tolerance: float = 0.4
    # Motion only: a chain whose cycle is a cleaner sine than this (harmonic power over
    # fundamental, beyond what the band's noise explains, see dsp.waveform) is not
    # alarmed. A 45/55 clonic cycle measures 0.014 noise-free, less with jitter (the
    # daemon's own simulated band loses its first episode at 0.0047); a clean sine
    # (vibration, the evenest tremor or tapping) measures near 0, a noisy one a few
    # thousandths. 0 turns the check off.
    min_harmonic_ratio: float = 0.004
    # EMG only: a reflex burst is tens of ms long with a silent period after it, so the
    # envelope of a clonic chain drops back to rest between bursts. When its quietest tenth
    # stays above this share of its bursts' level (90th percentile), the muscle never
    # rested: voluntary or tonic activity, not clonus. 1 turns the check off.
    max_envelope_floor: float = 0.25
    # EMG only: the longest a clonic burst stays up, per cycle, in seconds. A reflex burst
    # is 50-100 ms (the plantarflexion phase about 72 ms) whatever the beat rate; a
    # voluntary tap or cyclic effort holds each burst for a good part of its cycle (and
    # bursts of 250 ms or more are seizure-like, not clonus). Measured as the time per
    # cycle the envelope spends above 0.3 of its bursts' level (90th percentile), which
    # the 12 Hz envelope low-pass widens a little. inf turns the check off.
    max_burst_s: float = 0.14
    # EMG only: the most a chain's burst-to-burst periods may vary, as their standard
    # deviation over their mean. Clonus is the oscillation of one reflex loop and keeps
    # its cycle to within a few per cent (the chains alarmed on the synthetic recordings:
    # 0.06 median, 0.13 at the 95th percentile); chance peaks in tonic activity reach the
    # count only by drifting from period to period. EMG bursts are timed to about 3 % of a
    # period; a motion lobe's timing jitters too much for this check. inf turns it off.
    max_period_cv: float = 0.2
    # EMG only: bursts that are big and small in turn are two humps of one burst a cycle
    # (a step's burst in walking), not one reflex burst each, when the largest of the
    # small ones stays under this share of the smallest of the big ones. Of the chains
    # that reached the count on the tuning and check seeds, 5 of 9 walking chains
    # alternated at 0.45-0.58, sustained clonus chains at 0.82 at the lowest (one
    # held-out clonus chain at 0.78). 0 turns it off.
    max_alternation: float = 0.65
    # EMG only: how much the envelope over a chain repeats itself one period on, less how
    # much half a period on (the correlation of the envelope with itself at those lags;
    # -2 to 2). A reflex loop fires one burst a cycle, so the envelope's ups and downs
    # come back a period later and are turned over half a period later (clonus on the
    # tuning and check seeds: 1.35 median, 0.65 at the 5th percentile). A held voluntary
    # contraction's envelope wanders at random: six of its peaks can fall evenly by
    # chance, but the waveform between them does not repeat (the 10 alarms on real
    # voluntary EMG looked at: -0.42 to 0.41). Judged at every check. -2 turns it off.
    min_envelope_rhythm: float = 0.3
    # Motion only: the largest swing clonus makes, as half the peak-to-peak excursion at
    # the beat rate: gyro degrees of rotation, acc metres of travel (acceleration / w^2).
    # Clonus is a small reflex oscillation (a few degrees; the physics table in the notes
    # goes to +-15 deg, 3.9 cm at a 15 cm lever on the foot, and a shank or wrist band
    # travels far less); a limb shaken at 3 g and 4.5 Hz (3.7 cm) is moved on purpose.
    max_excursion: dict[str, float] = field(default_factory=lambda: {"gyr": 20.0, "acc": 0.025})
    # Motion only: the most the beats that take a chain past the threshold (its second
    # beat on, the last `threshold_beats` seen) may scatter in size about their straight-
    # line trend, as the root mean square of the scatter over their mean. One reflex loop
    # repeats one contraction, growing or fading steadily; the first and last steps of a
    # walk mix stride swings with small knocks at 3-4 Hz. Three of the five chains that
    # alarmed on real gait (`benchmarks/real_gait.py`) scattered 0.58-0.84; on the five
    # synthetic splits (2981 sustained episodes) no figure moves at 0.5, and a line at 0.4
    # lost one episode. inf turns it off.
    max_beat_spread: float = 0.5
    # Motion only: how far the intervals between those beats may alternate, as the mean
    # change from one interval to the next over their mean. One reflex loop repeats at
    # one period; a shuffling or trembling foot (freezing of gait in Parkinson's disease)
    # makes two peaks per step, short and long intervals in turn. The one chain that
    # alarmed on real freezing of gait (Daphnet, `benchmarks/real_fog.py`) swung 0.81;
    # clonus on the five synthetic splits (1803 onsets) at most 0.40 (accelerometer) and
    # 0.25 (gyroscope), and trains whose intervals vary at random by a fifth 0.38. inf
    # turns it off.
    max_interval_swing: float = 0.55
    # Motion only: how much of the rhythm was already going before the chain's first
    # beat, as the band-passed signal's level (root mean square times the square root of
    # two, the peak of a sine) from 2 s to 0.3 s before it, over the chain's lobe size.
    # Clonus starts from rest or from a stretch; a tremor goes on, waxing and waning, and
    # a chain forms where it steadies (research: tremor persists without a trigger). On
    # real hand tremor and shaking (`benchmarks/real_tremor.py`) 6 of the 20 alarms
    # measured 0.36-1.04; synthetic clonus on the five splits 0.02 median, 0.14 at the
    # 99th percentile and above 0.5 in 1 of 1942 onsets. EMG: the envelope's mean from
    # 1 s to 0.15 s before the first burst, over the bursts' size: a reflex train starts
    # from a resting muscle, chance peaks of a held contraction come out of one already
    # working. On real voluntary EMG (`benchmarks/real_emg.py`) 6 of the 13 alarms
    # measured 0.54-1.4; synthetic clonus 0.02 median, 0.31 at the 99th percentile.
    # inf turns it off.
    max_lead_in: float = 0.5
    # How long the band's signal must have run before a chain's first half-cycle for the
    # chain to be alarmed as a new rhythm (until the signal first breaks off). Clonus
    # starts from rest or from a stretch; a tremor, or a hand shaken on purpose, was often
    # already going when the recording began. Of the 16 alarms on real hand tremor and
    # shaking (`benchmarks/real_tremor.py`), 7 came from rhythms that began in a
    # recording's first 0.8 s, where nothing before them could say how they started:
    # the lead-in line needs 1.15 s (half its span and its 0.3 s gap) to judge one. No
    # synthetic recording has anything in its first 3 s, so no figure there moves. The
    # cost: clonus already going when a band is switched on or the service starts is not
    # alarmed until it stops and starts again. 0 turns it off.
    min_seen_before_s: float = 1.15

    def with_overrides(self, **changes: object) -> SiteParams:
        """A copy with some fields replaced (config overrides)."""
        return replace(self, **changes)  # type: ignore[arg-type]


SITE_DEFAULTS: dict[Site, SiteParams] = {
    "ankle": SiteParams(
        site="ankle",
        band_hz=(2.5, 10.0),
        rate_hz=(3.0, 9.0),
        min_amplitude={"gyr": 8.0, "acc": 0.8},
    ),
    "knee": SiteParams(
        site="knee",
        band_hz=(2.5, 11.0),
        rate_hz=(3.0, 10.0),
        min_amplitude={"gyr": 8.0, "acc": 0.8},
    ),
    "wrist": SiteParams(
        site="wrist",
        band_hz=(3.0, 12.0),
        rate_hz=(3.5, 10.0),
        min_amplitude={"gyr": 8.0, "acc": 0.8},
    ),
}


def site_params(site: str) -> SiteParams:
    """The defaults for `site`, or a ValueError naming the known sites."""
    try:
        return SITE_DEFAULTS[site]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown site {site!r}; expected one of {', '.join(SITES)}") from None
