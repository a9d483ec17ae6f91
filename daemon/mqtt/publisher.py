"""Publishing to MQTT: events through the durable outbox, state and status retained.

Events (QoS 1, not retained) are taken from the outbox in order and deleted only once
the broker acknowledged them with a success reason code (MQTT 5: a publish the broker's
ACL refuses comes back as a PUBACK with a failure code, and stays in the outbox).
Retained topics (availability, per-sensor state and status) hold the latest value and
are sent again after every reconnect, so a monitor that connects late sees an alarm that
is already on. The broker connection is retried every 0.5-2 s, so a backlog leaves within
seconds of the broker's return. A last will marks the daemon offline if it dies; a
crash disconnects "with will message", so the broker sends it then too.

When the outbox cannot take an event (disk full, read-only, I/O error) the event and a
`daemon.storage_failed` technical alarm are kept in memory and published directly, and
`failed` is set: the service then stops, non-zero, for systemd to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from clonusd.daemon.config import MqttConfig
from clonusd.daemon.mqtt import topics
from clonusd.daemon.mqtt.outbox import Outbox, StorageError

log = structlog.get_logger("clonusd.mqtt")

MIN_RETRY_S, MAX_RETRY_S = 0.5, 2.0
DENIED_RETRY_S = 30.0  # a refused event is offered again this often (the ACL may be fixed)
STUCK_S = 30.0  # connected, events pending, nothing acknowledged for this long: unhealthy


class PublisherError(Exception):
    """The publisher cannot go on (e.g. its TLS files are unreadable); the message says why."""


class _Client(aiomqtt.Client):
    """aiomqtt's client, plus the PUBACK reason code and a disconnect that leaves the will.

    aiomqtt 2.x drops the reason code of a publish; it is recorded here by message id. A
    clean DISCONNECT makes the broker discard the will, so leaving on an exception other
    than a lost connection sends "Disconnect with will message" (MQTT 5, 0x04) instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._codes: dict[int, ReasonCode] = {}

    def _on_publish(
        self,
        client: Any,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        self._codes[mid] = reason_code
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_checked(
        self, topic: str, payload: str, qos: int = 1, retain: bool = False
    ) -> ReasonCode | None:
        """Publish and wait for the broker; returns its reason code if it refused."""
        try:
            info = self._client.publish(topic, payload, qos, retain)
        except ValueError as exc:  # a topic or payload MQTT cannot carry: refuse it here
            log.error("mqtt_publish_invalid", topic=topic[:200], error=str(exc))
            return ReasonCode(PacketTypes.PUBACK, identifier=0x90)  # "Topic name invalid"
        if info.rc != 0:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            done = asyncio.Event()
            with self._pending_call(info.mid, done, self._pending_publishes):
                await self._wait_for(done.wait(), timeout=None)
        code = self._codes.pop(info.mid, None)
        return code if code is not None and code.is_failure else None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        crashed = exc_type is not None and not issubclass(exc_type, aiomqtt.MqttError)
        if crashed and not self._disconnected.done():
            rc = self._client.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
            )
            if rc == 0:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._disconnected), 2.0)
            if not self._disconnected.done():
                self._disconnected.set_result(None)
        await super().__aexit__(exc_type, exc, tb)


@dataclass
class _Refusal:
    retry_at: float
    topic: str


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Publisher:
    def __init__(
        self,
        cfg: MqttConfig,
        outbox: Outbox,
        daemon_id: str = "clonusd",
        client_id: str | None = None,
        password: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.daemon_id = daemon_id
        self.client_id = client_id or cfg.client_id or topics.default_client_id(daemon_id)
        self.password = password
        self.availability_topic = topics.availability(cfg.topic_prefix, daemon_id)
        self.daemon_event_topic = topics.daemon_event(cfg.topic_prefix, daemon_id)
        self.connected = asyncio.Event()
        self.failed = asyncio.Event()  # storage failed: the service must stop
        self.failure: str | None = None
        self.offline_reason = "shutdown"
        self._wake = asyncio.Event()
        self._retained: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._direct: list[tuple[str, str]] = []  # what the outbox could not take, in order
        self._refused: dict[int, _Refusal] = {}  # outbox seq -> when to offer it again
        self._refused_retained: dict[str, float] = {}
        self._alarmed_topics: set[str] = set()
        self._sent_unremoved: set[int] = set()  # acknowledged, but the outbox cannot delete
        self.last_attempt = time.monotonic()
        self.unreachable_since: float | None = time.monotonic()
        self.last_error = "not connected yet"
        self._stuck_since: float | None = None

    # -- what the pipelines and the service call -----------------------------------------

    async def publish_event(
        self,
        topic: str,
        payload: dict[str, Any],
        episode: tuple[str, int, bool] | None = None,
    ) -> None:
        """Store the event durably, then let the sender publish it. If the outbox cannot
        take it, it is published directly and the service is told to stop."""
        text = json.dumps(payload)
        if self.failure is None:
            try:
                await asyncio.to_thread(self.outbox.put, topic, text, 1, False, episode=episode)
            except StorageError as exc:
                self.storage_failed(str(exc))
                self._direct.append((topic, text))
        else:
            self._direct.append((topic, text))
        self._wake.set()

    async def new_episode_id(self) -> int:
        """A daemon-wide episode id, unique across restarts (counted in the outbox)."""
        if self.failure is None:
            try:
                return await asyncio.to_thread(self.outbox.next_episode)
            except StorageError as exc:
                self.storage_failed(str(exc))
        return int(time.time() * 1000)  # still unique, if not counted

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None:
        """Latest value of a retained topic; sent now if connected, else on reconnect."""
        text = json.dumps(payload)
        if self._retained.get(topic) != text:
            self._retained[topic] = text
            self._dirty.add(topic)
            self._wake.set()

    def technical_alarm(self, kind: str, detail: str, **fields: Any) -> None:
        """A daemon-level technical alarm on {prefix}/daemon/{id}/event, sent directly
        (it must not depend on the outbox, which may be what failed)."""
        payload = {
            "schema": topics.SCHEMA,
            "time": _now_iso(),
            "daemon": self.daemon_id,
            "id": str(uuid.uuid4()),
            "event": kind,
            "priority": "technical_alarm",
            "detail": detail,
            **fields,
        }
        self._direct.append((self.daemon_event_topic, json.dumps(payload)))
        self._wake.set()

    def clear_retained(self, topic: str) -> None:
        """Delete a retained topic at the broker (an empty retained payload)."""
        if self._retained.get(topic) != "":
            self._retained[topic] = ""
            self._dirty.add(topic)
            self._wake.set()

    def storage_failed(self, reason: str) -> None:
        if self.failure is not None:
            return
        self.failure = reason
        self.offline_reason = "storage_failed"
        log.error("storage_failed", error=reason)
        self.technical_alarm("daemon.storage_failed", reason)
        self.failed.set()

    @property
    def unstored(self) -> int:
        """Messages held only in memory (the outbox could not take them)."""
        return len(self._direct)

    def health(self) -> tuple[bool, str]:
        """(fit to feed the watchdog, what to tell systemd's STATUS=)."""
        now = time.monotonic()
        if self.failure is not None:
            return False, f"storage failed: {self.failure}"
        if self.connected.is_set():
            if self._stuck_since is not None and now - self._stuck_since > STUCK_S:
                return False, "broker connected but acknowledges nothing"
            refused = len(self._refused)
            extra = f"; {refused} event(s) refused by the broker" if refused else ""
            return True, f"connected to {self.cfg.host}:{self.cfg.port}{extra}"
        # Honestly unreachable: the retry loop is alive and says so.
        alive = now - self.last_attempt < 2 * MAX_RETRY_S + 15.0
        since = 0.0 if self.unreachable_since is None else now - self.unreachable_since
        return alive, (
            f"broker {self.cfg.host}:{self.cfg.port} unreachable for {since:.0f} s"
            f" ({self.last_error}); events wait in the outbox"
        )

    # -- the sender ----------------------------------------------------------------------

    def _client(self) -> _Client:
        return make_client(self.cfg, self.daemon_id, self.client_id, self.password)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = MIN_RETRY_S
        while not stop.is_set():
            self.last_attempt = time.monotonic()
            try:
                async with self._client() as client:
                    await self._online(client)
                    backoff = MIN_RETRY_S
                    while True:
                        self._wake.clear()
                        await self._flush(client)
                        if stop.is_set():
                            break
                        await _wait_any(self._wake, stop, timeout=1.0)
                    await self._flush(client)
                    await self._publish_retained(
                        client,
                        self.availability_topic,
                        _availability(self.daemon_id, False, self.offline_reason),
                    )
                    log.info("mqtt_offline_published", reason=self.offline_reason)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._stuck_since = None
                if self.unreachable_since is None:
                    self.unreachable_since = time.monotonic()
                self.last_error = str(exc)
                delay = backoff * random.uniform(0.5, 1.0)  # jitter, not crypto
                log.warning(
                    "mqtt_unavailable",
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                    pending=len(self.outbox),
                )
                await _sleep_or_stop(delay, stop)
                backoff = min(backoff * 2, MAX_RETRY_S)
        self.connected.clear()

    async def _online(self, client: _Client) -> None:
        await self._publish_retained(
            client,
            self.availability_topic,
            _availability(self.daemon_id, True, "connected"),
        )
        self._dirty = set(self._retained)
        for r in self._refused.values():
            r.retry_at = 0.0  # a new connection may carry new rights
        self._refused_retained.clear()
        self.connected.set()
        self.unreachable_since = None
        log.info(
            "mqtt_connected",
            host=self.cfg.host,
            port=self.cfg.port,
            protocol="5",
            pending=len(self.outbox),
        )

    async def _flush(self, client: _Client) -> None:
        await self._flush_outbox(client)
        while self._direct:
            topic, payload = self._direct[0]
            code = await client.publish_checked(topic, payload, qos=1)
            if code is not None:
                log.error("mqtt_publish_denied", topic=topic, reason=str(code), kept="no")
            self._direct.pop(0)
        for topic in list(self._dirty):
            self._dirty.discard(topic)
            if self._refused_retained.get(topic, 0.0) > time.monotonic():
                continue
            try:
                await self._publish_retained(client, topic, self._retained[topic])
            except aiomqtt.MqttError:
                self._dirty.add(topic)
                raise

    async def _flush_outbox(self, client: _Client) -> None:
        while True:
            now = time.monotonic()
            skip = frozenset(
                {s for s, r in self._refused.items() if r.retry_at > now} | self._sent_unremoved
            )
            try:
                rows = await asyncio.to_thread(self.outbox.pending, 100, skip)
            except StorageError as exc:
                self.storage_failed(str(exc))
                return
            if not rows:
                self._stuck_since = None
                return
            if self._stuck_since is None:
                self._stuck_since = now
            for row in rows:
                code = await client.publish_checked(
                    row.topic, row.payload, qos=row.qos, retain=row.retain
                )
                if code is not None:
                    self._refuse(row.seq, row.topic, code)
                    continue
                self._stuck_since = time.monotonic()
                self._refused.pop(row.seq, None)
                self._cleared(row.topic)
                try:
                    await asyncio.to_thread(self.outbox.ack, row.seq)
                except StorageError as exc:
                    self._sent_unremoved.add(row.seq)
                    self.storage_failed(str(exc))
            self._stuck_since = None

    def _refuse(self, seq: int, topic: str, code: ReasonCode) -> None:
        first = seq not in self._refused
        self._refused[seq] = _Refusal(time.monotonic() + DENIED_RETRY_S, topic)
        if first:
            log.error(
                "mqtt_publish_denied",
                topic=topic,
                reason=str(code),
                kept="in the outbox",
                retry_in_s=DENIED_RETRY_S,
            )
        self._alarm_denied(topic, code)

    def _alarm_denied(self, topic: str, code: ReasonCode) -> None:
        """One technical alarm per refused topic, until a publish to it succeeds again
        (`_cleared`)."""
        if topic in self._alarmed_topics:
            return
        self._alarmed_topics.add(topic)
        self.technical_alarm(
            "daemon.publish_denied",
            f"the broker refused a publish to {topic}: {code}",
            topic=topic,
            reason_code=int(code.value),
        )

    def _cleared(self, topic: str) -> None:
        if topic in self._alarmed_topics:
            self._alarmed_topics.discard(topic)
            log.info("mqtt_publish_allowed_again", topic=topic)

    async def _publish_retained(self, client: _Client, topic: str, payload: str) -> None:
        code = await client.publish_checked(topic, payload, qos=1, retain=True)
        if code is None:
            self._cleared(topic)
            return
        self._refused_retained[topic] = time.monotonic() + DENIED_RETRY_S
        log.error("mqtt_publish_denied", topic=topic, reason=str(code), retained=True)
        if topic != self.daemon_event_topic:
            self._alarm_denied(topic, code)


def _availability(daemon_id: str, online: bool, reason: str) -> str:
    return json.dumps(topics.availability_payload(daemon_id, online, reason))


def make_client(cfg: MqttConfig, daemon_id: str, client_id: str, password: str | None) -> _Client:
    """An MQTT 5 client whose last will marks this daemon offline ("connection_lost").

    TLS files are read at each connection attempt (aiomqtt reports a missing one only as
    "No such file or directory"), so they are checked here first and named."""
    files = [p for p in (cfg.tls_ca, cfg.tls_cert, cfg.tls_key) if p is not None]
    for path in files:
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            log.error("mqtt_tls_files_unusable", path=str(path), error=exc.strerror or str(exc))
            raise PublisherError(f"TLS file {path}: {exc.strerror or exc}") from None
    tls = None
    if cfg.tls_ca is not None:
        tls = aiomqtt.TLSParameters(
            ca_certs=str(cfg.tls_ca),
            certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
            keyfile=str(cfg.tls_key) if cfg.tls_key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    try:
        return _Client(
            hostname=cfg.host,
            port=cfg.port,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            username=cfg.username,
            password=password,
            keepalive=cfg.keepalive_s,
            tls_params=tls,
            will=aiomqtt.Will(
                topics.availability(cfg.topic_prefix, daemon_id),
                _availability(daemon_id, False, "connection_lost"),
                qos=1,
                retain=True,
            ),
            timeout=10,
        )
    except (OSError, ssl.SSLError) as exc:
        names = ", ".join(str(p) for p in files)
        log.error("mqtt_tls_files_unusable", paths=names, error=str(exc))
        raise PublisherError(f"TLS files {names}: {exc}") from None


async def announce_failure(
    cfg: MqttConfig,
    daemon_id: str,
    client_id: str,
    password: str | None,
    kind: str,
    detail: str,
    reason: str,
) -> bool:
    """Before exiting on a failure at start: a technical alarm and "offline" with its
    reason, best effort within a few seconds (the broker may be unreachable too)."""
    payload = {
        "schema": topics.SCHEMA,
        "time": _now_iso(),
        "daemon": daemon_id,
        "id": str(uuid.uuid4()),
        "event": kind,
        "priority": "technical_alarm",
        "detail": detail,
    }
    try:
        async with asyncio.timeout(5.0), make_client(cfg, daemon_id, client_id, password) as c:
            topic = topics.daemon_event(cfg.topic_prefix, daemon_id)
            await c.publish_checked(topic, json.dumps(payload))
            await c.publish_checked(
                topics.availability(cfg.topic_prefix, daemon_id),
                _availability(daemon_id, False, reason),
                retain=True,
            )
        return True
    except (aiomqtt.MqttError, TimeoutError, PublisherError, OSError) as exc:
        log.warning("failure_not_announced", error=str(exc))
        return False


async def _wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=timeout)
    finally:
        for t in tasks:
            t.cancel()


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
