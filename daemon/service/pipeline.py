"""One pipeline per sensor: source -> detector -> publisher, with signal health.

Health is data-plane: the measured sample rate, packet loss and the age of the last
sample, not just whether the link says it is up. A link that claims to be connected but
delivers nothing for `stall_after_s` raises a stall (a technical alarm).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from clonusd.daemon.config import SensorConfig
from clonusd.daemon.mqtt import topics
from clonusd.daemon.mqtt.publisher import Publisher
from clonusd.daemon.service.evidence import EpisodeRecord
from clonusd.daemon.service.health import SignalMeter
from clonusd.daemon.sources.base import (
    LinkStatus,
    SampleChunk,
    Source,
    force_reconnect,
    last_data_at,
    malformed_packets,
    reconnects,
)
from clonusd.dsp.detector import ClonusDetector
from clonusd.dsp.events import EpisodeEvent

PRIORITY = {
    "clonus.onset": "physiological_alarm",
    "clonus.update": "physiological_alarm",
    "clonus.end": "information",
    "sensor.stall": "technical_alarm",
    "sensor.stall_cleared": "information",
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SensorPipeline:
    def __init__(
        self,
        cfg: SensorConfig,
        source: Source,
        publisher: Publisher,
        prefix: str,
        state_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.publisher = publisher
        self.detector = ClonusDetector(
            source.sensor, cfg.site_params(), source.fs, n_channels=source.n_channels
        )
        self.log = structlog.get_logger("clonusd.sensor").bind(
            sensor=cfg.id, bed=cfg.bed, site=cfg.site, side=cfg.side
        )
        self.event_topic = topics.event(prefix, cfg.bed, cfg.id)
        self.state_topic = topics.state(prefix, cfg.bed, cfg.id)
        self.status_topic = topics.status(prefix, cfg.bed, cfg.id)
        self.link = LinkStatus(connected=False, detail="starting")
        self.last_sample_at: float | None = None
        self._stall_origin = 0.0  # no stall counts from before this (the loop was held up)
        self._storing = False
        self._episode_ids: dict[int, int] = {}  # detector's episode number -> daemon-wide id
        self._ended_ids: dict[int, int] = {}  # the same, for the last episodes that ended
        self.stalled = False
        self.started_streaming = asyncio.Event()
        self.meter = SignalMeter(source.fs)
        self.max_process_s = 0.0  # longest detector call, to show DSP never hogs the loop
        self._last_status_key: dict[str, Any] | None = None
        self._last_status_at = 0.0
        self.record = EpisodeRecord(  # history and evidence snippets (service/evidence.py)
            publisher,
            prefix,
            cfg.bed,
            cfg.id,
            source.sensor,
            self.detector.episodes.amplitude_unit,
            self._identity,
            state_dir,
        )

    # -- running -------------------------------------------------------------------------

    async def run(self) -> None:
        self._publish_state(None)
        self.record.start()
        async for item in self.source.stream():
            if isinstance(item, LinkStatus):
                if self.link.connected and not item.connected:
                    # While the link is down nobody can tell whether clonus goes on: end
                    # the episode now rather than let an alarm stand on no data.
                    for ev in self.detector.force_end_now("link_lost", gap=True):
                        await self._episode_event(ev)
                if not item.connected:
                    self.meter.link_down()
                self.link = item
                self.log.info(
                    "link",
                    connected=item.connected,
                    detail=item.detail,
                    battery_pct=item.battery_pct,
                )
                self._publish_status()
            else:
                await self._samples(item)

    async def _samples(self, chunk: SampleChunk) -> None:
        now = time.monotonic()
        self.last_sample_at = now
        self.meter.add(chunk.t)
        if self.stalled:
            self.stalled = False
            await self._technical("sensor.stall_cleared")
        started = time.perf_counter()
        events = self.detector.process(chunk.t, chunk.x)
        self.max_process_s = max(self.max_process_s, time.perf_counter() - started)
        if not self.started_streaming.is_set():
            self.started_streaming.set()
            self.log.info("streaming", fs_hz=self.source.fs)
            self._publish_status()
        for ev in events:
            await self._episode_event(ev)
        self.record.poll(self.detector)

    def excuse_lag(self, now: float) -> None:
        """The event loop itself was held up (CPU starved, process stopped): samples that
        arrived meanwhile are still queued, so their silence is no evidence of a stall."""
        self._stall_origin = now

    async def check_stall(self) -> None:
        """Called periodically: a connected link over which the band sends nothing is a
        stall. Notifications that decode to no samples (a stream of one IMU sensor lost
        while the other's arrives) are a gap, not a stall, unless they go on for four
        times as long."""
        if not self.link.connected or self.last_sample_at is None or self.stalled:
            return
        if self._storing:
            return  # waiting on its own outbox write is no stall of the band
        now = time.monotonic()
        heard = max(self.last_sample_at, last_data_at(self.source) or 0.0, self._stall_origin)
        silent = now - heard > self.cfg.stall_after_s
        since_samples = now - max(self.last_sample_at, self._stall_origin)
        if silent or since_samples > 4 * self.cfg.stall_after_s:
            self.stalled = True
            self.log.warning(
                "stall",
                no_samples_for_s=round(now - self.last_sample_at, 1),
                no_data_for_s=round(now - heard, 1),
            )
            await self._technical("sensor.stall")
            force_reconnect(
                self.source,
                "nothing from the band while the link claims to be up"
                if silent
                else "notifications arrive but decode to no samples",
            )
        self._publish_status()

    async def finish(self) -> None:
        for ev in self.detector.flush():
            await self._episode_event(ev)
        self.record.flush(self.detector)
        # The retained status must not go on saying "connected" once the daemon is gone.
        self.link = LinkStatus(False, self.link.battery_pct, "daemon stopped")
        self._publish_status(force=True)

    # -- payloads ------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """What every payload starts with: schema, wall-clock time, and which sensor."""
        return {
            "schema": topics.SCHEMA,
            "time": _now_iso(),
            "daemon": self.publisher.daemon_id,
            "bed": self.cfg.bed,
            "sensor": self.cfg.id,
            "site": self.cfg.site,
            "side": self.cfg.side,
        }

    def _base(self, kind: str) -> dict[str, Any]:
        return {
            **self._identity(),
            "id": str(uuid.uuid4()),
            "event": kind,
            "priority": PRIORITY[kind],
            "sensor_kind": self.source.sensor,
        }

    async def _episode_event(self, ev: EpisodeEvent) -> None:
        figures = ev.to_dict()
        payload = {**self._base(ev.event), **{k: v for k, v in figures.items() if k != "event"}}
        # Episode ids are the daemon's, unique across restarts; the open episode is stored
        # with each of its events, so a restart after a crash can end it.
        episode = self._episode_ids.get(ev.episode)
        if episode is None:
            episode = await self.publisher.new_episode_id()
            self._episode_ids[ev.episode] = episode
        ended = ev.event == "clonus.end"
        if ended:
            del self._episode_ids[ev.episode]
            self._ended_ids[ev.episode] = episode
            while len(self._ended_ids) > 16:
                del self._ended_ids[next(iter(self._ended_ids))]
        payload["episode"] = episode
        follows = payload.get("follows_episode")
        if isinstance(follows, int) and follows in self._ended_ids:
            payload["follows_episode"] = self._ended_ids[follows]  # in the daemon's ids too
        self.log.info(
            ev.event,
            episode=episode,
            beats=ev.beats,
            frequency_hz=round(ev.frequency_hz, 2),
            t=round(ev.t, 3),
        )
        await self._store(payload, (f"{self.cfg.bed}/{self.cfg.id}", episode, not ended))
        self._publish_state(None if ended else payload)
        self.record.on_event(ev, payload, self.detector)

    async def _store(
        self, payload: dict[str, Any], episode: tuple[str, int, bool] | None = None
    ) -> None:
        """Store an event, even if this pipeline is being cancelled (a SIGTERM): the
        pipeline ends only once the event is stored. While the outbox write (an fsync,
        seconds on a busy disk) is under way the pipeline takes no samples, and that is
        no stall of the band."""
        self._storing = True
        put = asyncio.ensure_future(
            self.publisher.publish_event(self.event_topic, payload, episode)
        )
        try:
            await asyncio.shield(put)
        except asyncio.CancelledError:
            await put
            raise
        finally:
            self._storing = False
            self._stall_origin = time.monotonic()

    async def _technical(self, kind: str) -> None:
        payload = {**self._base(kind), "stall_after_s": self.cfg.stall_after_s}
        await self._store(payload)
        self._publish_status()

    def _publish_state(self, active: dict[str, Any] | None) -> None:
        state: dict[str, Any] = {
            **self._identity(),
            "clonus": active is not None,
        }
        if active is not None:
            for key in (
                "episode",
                "beats",
                "frequency_hz",
                "amplitude",
                "amplitude_unit",
                "onset_t",
                "t",
            ):
                state[key] = active[key]
        self.publisher.set_retained(self.state_topic, state)

    def status(self) -> dict[str, Any]:
        stats = self.detector.stats
        loss = self.meter.loss
        rate = self.meter.rate_hz()
        age = (time.monotonic() - self.last_sample_at) if self.last_sample_at else None
        return {
            **self._identity(),
            "sensor_kind": self.source.sensor,
            "link": "connected" if self.link.connected else "disconnected",
            "link_detail": self.link.detail,
            "battery_pct": self.link.battery_pct,
            "rate_hz": round(rate, 1) if rate is not None else None,  # on the band's clock
            "nominal_rate_hz": self.source.fs,
            "packet_loss": round(loss, 4),  # samples lost while the link was up
            "signal_gaps": stats.gaps,  # lost packets and link outages seen in sample times
            "invalid_samples": stats.nan_rows,
            "malformed_packets": malformed_packets(self.source),
            "reconnects": reconnects(self.source),
            "last_sample_age_s": round(age, 2) if age is not None else None,
            "stalled": self.stalled,
            "quality": "stalled" if self.stalled else ("lossy" if loss > 0.1 else "ok"),
        }

    def _publish_status(self, force: bool = False) -> None:
        """On any change of what a nurse would act on, and at least every 5 s."""
        status = self.status()
        key = {
            k: v
            for k, v in status.items()
            if k not in ("time", "last_sample_age_s", "rate_hz", "packet_loss")
        }
        now = time.monotonic()
        if force or key != self._last_status_key or now - self._last_status_at >= 5.0:
            self._last_status_key, self._last_status_at = key, now
            self.publisher.set_retained(self.status_topic, status)
