"""Publishing to MQTT: events through the durable outbox, state and status retained.

Events (QoS 1, not retained) are taken from the outbox in order and deleted only once
the broker acknowledged them. Retained topics (availability, per-sensor state and
status) hold the latest value and are sent again after every reconnect, so a monitor that
connects late sees an alarm that is already on. The broker connection is retried with
exponential backoff and jitter; a last will on this daemon's own availability topic marks
it (and only it) offline if it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
from typing import Any

import aiomqtt
import structlog

from clonusd.daemon.config import MqttConfig
from clonusd.daemon.mqtt import topics
from clonusd.daemon.mqtt.outbox import Outbox

log = structlog.get_logger("clonusd.mqtt")


class Publisher:
    def __init__(self, cfg: MqttConfig, outbox: Outbox, daemon_id: str) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.daemon_id = daemon_id
        self.client_id = cfg.client_id or topics.default_client_id(daemon_id)
        self.availability_topic = topics.availability(cfg.topic_prefix, daemon_id)
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._retained: dict[str, str] = {}
        self._dirty: set[str] = set()

    # -- what the pipelines call ---------------------------------------------------------

    async def publish_event(self, topic: str, payload: dict[str, Any]) -> None:
        """Store the event durably, then let the sender publish it."""
        await asyncio.to_thread(self.outbox.put, topic, json.dumps(payload), 1, False)
        self._wake.set()

    def set_retained(self, topic: str, payload: dict[str, Any]) -> None:
        """Latest value of a retained topic; sent now if connected, else on reconnect."""
        text = json.dumps(payload)
        if self._retained.get(topic) != text:
            self._retained[topic] = text
            self._dirty.add(topic)
            self._wake.set()

    def clear_retained(self, topic: str) -> None:
        """Delete a retained topic at the broker (an empty retained payload)."""
        if self._retained.get(topic) != "":
            self._retained[topic] = ""
            self._dirty.add(topic)
            self._wake.set()

    # -- the sender ----------------------------------------------------------------------

    def _availability(self, online: bool, reason: str) -> str:
        return json.dumps(topics.availability_payload(self.daemon_id, online, reason))

    def _client(self) -> aiomqtt.Client:
        tls = None
        if self.cfg.tls_ca is not None:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(self.cfg.tls_ca),
                certfile=str(self.cfg.tls_cert) if self.cfg.tls_cert else None,
                keyfile=str(self.cfg.tls_key) if self.cfg.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        return aiomqtt.Client(
            hostname=self.cfg.host,
            port=self.cfg.port,
            identifier=self.client_id,
            username=self.cfg.username,
            password=self.cfg.resolved_password(),
            keepalive=self.cfg.keepalive_s,
            tls_params=tls,
            will=aiomqtt.Will(
                self.availability_topic,
                self._availability(False, "connection_lost"),
                qos=1,
                retain=True,
            ),
            timeout=10,
        )

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                async with self._client() as client:
                    await client.publish(
                        self.availability_topic,
                        self._availability(True, "connected"),
                        qos=1,
                        retain=True,
                    )
                    self._dirty = set(self._retained)
                    self.connected.set()
                    log.info(
                        "mqtt_connected",
                        host=self.cfg.host,
                        port=self.cfg.port,
                        pending=len(self.outbox),
                    )
                    backoff = 1.0
                    while True:
                        self._wake.clear()
                        await self._flush(client)
                        if stop.is_set():
                            break
                        await _wait_any(self._wake, stop)
                    await self._flush(client)
                    await client.publish(
                        self.availability_topic,
                        self._availability(False, "shutdown"),
                        qos=1,
                        retain=True,
                    )
                    log.info("mqtt_offline_published")
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = backoff * random.uniform(0.5, 1.0)  # jitter, not crypto
                log.warning(
                    "mqtt_unavailable",
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                    pending=len(self.outbox),
                )
                await _sleep_or_stop(delay, stop)
                backoff = min(backoff * 2, 30.0)
        self.connected.clear()

    async def _flush(self, client: aiomqtt.Client) -> None:
        while True:
            rows = await asyncio.to_thread(self.outbox.pending, 100)
            if not rows:
                break
            for row in rows:
                await client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
                await asyncio.to_thread(self.outbox.ack, row.seq)
        while self._dirty:
            topic = self._dirty.pop()
            try:
                await client.publish(topic, self._retained[topic], qos=1, retain=True)
            except aiomqtt.MqttError:
                self._dirty.add(topic)
                raise


async def _wait_any(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


async def _sleep_or_stop(delay: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay)
