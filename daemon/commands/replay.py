"""Running the detector over a recording, as the live path would, as fast as possible."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from clonusd.daemon.sources.recording import Recording
from clonusd.dsp.detector import ClonusDetector
from clonusd.dsp.sites import site_params


def make_detector(rec: Recording, threshold_beats: int | None = None) -> ClonusDetector:
    params = site_params(rec.site)
    if threshold_beats is not None:
        params = params.with_overrides(threshold_beats=threshold_beats)
    return ClonusDetector(rec.sensor, params, rec.fs, n_channels=rec.x.shape[1])


def replay_events(
    rec: Recording,
    threshold_beats: int | None = None,
    chunk: int | None = None,
    beat_times: bool = False,
) -> Iterator[dict[str, Any]]:
    """Event payloads for `rec`, in order; `chunk` feeds that many samples per call.

    `beat_times` adds each event's counted beats (`beat_times_s`), and a `review.chain`
    item for each chain of beats that ended without an episode, for review pictures, with
    the line that refused it once it counted past the threshold (`refused_by`, or None)."""
    det = make_detector(rec, threshold_beats)
    det.episodes.report_beats = beat_times
    step = chunk or rec.t.size
    base = {"sensor": rec.sensor, "site": rec.site, "side": rec.side}

    def unreported() -> Iterator[dict[str, Any]]:
        for chain in det.episodes.unreported:
            yield {
                "event": "review.chain",
                "beats": len(chain.beat_times),
                "beat_times_s": chain.beat_times,
                "refused_by": chain.refused_by,
                **base,
            }
        det.episodes.unreported.clear()

    for start in range(0, rec.t.size, step):
        for ev in det.process(rec.t[start : start + step], rec.x[start : start + step]):
            yield {**ev.to_dict(), **base}
        yield from unreported()
    for ev in det.flush():
        yield {**ev.to_dict(), **base}
    yield from unreported()
