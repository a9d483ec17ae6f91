"""What `check-config` and `run` both check before anything starts, so a config that
passes `check-config` is one that `run` can run: the named files, each sensor's source
and its detector built and fed one second of signal."""

from __future__ import annotations

import warnings

import numpy as np

from clonusd.daemon.config import Config, ConfigError, check_files
from clonusd.daemon.sources.base import Source
from clonusd.daemon.sources.factory import make_source
from clonusd.daemon.sources.recording import RecordingError
from clonusd.dsp.detector import ClonusDetector


def build_sources(cfg: Config, speed: float = 1.0) -> list[Source]:
    """Each sensor's source, and a dry run of its detector; ConfigError names the sensor."""
    check_files(cfg)
    sources: list[Source] = []
    for i, s in enumerate(cfg.sensors):
        where = f"sensors.{i} ({s.bed}/{s.id})"
        try:
            source = make_source(s, speed)
        except RecordingError as exc:
            raise ConfigError(f"{where}.source.file: {exc}") from None
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"{where}.source: cannot be used: {exc}") from None
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                det = ClonusDetector(
                    source.sensor, s.site_params(), source.fs, n_channels=source.n_channels
                )
                n = max(1, round(source.fs))
                det.process(np.arange(n) / source.fs, np.zeros((n, source.n_channels)))
                det.flush()
        except (ValueError, TypeError, ArithmeticError, IndexError, MemoryError) as exc:
            raise ConfigError(
                f"{where}: the detector cannot run with these settings"
                f" (fs {source.fs} Hz, detector {s.detector.model_dump(exclude_none=True)}): {exc}"
            ) from None
        sources.append(source)
    return sources
