"""Pure, streaming signal processing for clonus detection (numpy/scipy only, no I/O)."""

from clonusd.dsp.detector import ClonusDetector, DetectorStats
from clonusd.dsp.events import EpisodeEvent
from clonusd.dsp.filters import StreamingSOS, bandpass_sos
from clonusd.dsp.ringbuffer import RingBuffer
from clonusd.dsp.sites import SENSORS, SITE_DEFAULTS, SITES, SiteParams, site_params

__all__ = [
    "SENSORS",
    "SITES",
    "SITE_DEFAULTS",
    "ClonusDetector",
    "DetectorStats",
    "EpisodeEvent",
    "RingBuffer",
    "SiteParams",
    "StreamingSOS",
    "bandpass_sos",
    "site_params",
]
