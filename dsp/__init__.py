"""Pure, streaming signal processing for clonus detection (numpy/scipy only, no I/O)."""

from dsp.detector import ClonusDetector, DetectorStats
from dsp.events import EpisodeEvent
from dsp.filters import StreamingSOS, bandpass_sos
from dsp.ringbuffer import RingBuffer
from dsp.sites import SENSORS, SITE_DEFAULTS, SITES, SiteParams, site_params

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
