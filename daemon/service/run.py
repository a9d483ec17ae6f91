"""`clonusd run`: every sensor's pipeline, the MQTT publisher, health and systemd.

The daemon either alarms or says loudly that it cannot:
- what cannot work at start (a config file, the state directory) is a one-line error and
  a non-zero exit, announced over MQTT when the broker can be reached;
- a task that dies, or an outbox that stops taking events, stops the daemon non-zero
  (systemd restarts it), after a technical alarm and "offline" with the reason;
- the watchdog is fed only while samples come in, the detectors run, the outbox takes
  writes and the broker acknowledges (or is honestly unreachable, which STATUS= says).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog

from clonusd.daemon.config import Config
from clonusd.daemon.mqtt import topics
from clonusd.daemon.mqtt.outbox import MIN_FREE_BYTES, Outbox, StorageError, check_state_dir
from clonusd.daemon.mqtt.publisher import Publisher, announce_failure
from clonusd.daemon.service.pipeline import SensorPipeline
from clonusd.daemon.service.preflight import build_sources
from clonusd.daemon.service.systemd import notify, watchdog_interval_s

log = structlog.get_logger("clonusd")

HEARTBEAT_S = 30.0  # how often the outbox is proven writable when no event comes
LAG_S = 1.0  # a health tick this late means the event loop itself was held up


async def run_service(cfg: Config, speed: float = 1.0) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status.

    Raises ConfigError or StorageError (one line each) when it cannot start."""
    sources = build_sources(cfg, speed)
    password = cfg.mqtt.resolved_password()
    path = cfg.daemon.state_dir / "outbox.sqlite3"
    try:
        check_state_dir(cfg.daemon.state_dir)
        outbox = Outbox(path)
    except StorageError as exc:
        await announce_failure(
            cfg.mqtt,
            cfg.daemon.id,
            cfg.client_id,
            password,
            "daemon.storage_unusable",
            str(exc),
            "storage_unusable",
        )
        raise
    publisher = Publisher(cfg.mqtt, outbox, cfg.daemon.id, cfg.client_id, password)
    if outbox.replaced is not None:
        log.error("outbox_corrupt_moved_aside", path=str(path), moved_to=str(outbox.replaced))
        publisher.technical_alarm(
            "daemon.outbox_replaced",
            f"{path} was not a sound database; kept as {outbox.replaced}, a fresh one started."
            " Events stored in it before were not delivered from it.",
            moved_to=str(outbox.replaced),
        )
    await _end_interrupted(outbox, publisher)
    pipelines = [
        SensorPipeline(s, src, publisher, cfg.mqtt.topic_prefix, cfg.daemon.state_dir)
        for s, src in zip(cfg.sensors, sources, strict=True)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    log.info(
        "starting",
        daemon=cfg.daemon.id,
        client_id=publisher.client_id,
        sensors=[p.cfg.id for p in pipelines],
        pending_events=len(outbox),
    )

    # The publisher stops only after the pipelines have ended their episodes, so the
    # final clonus.end and the cleared state go out before "offline".
    publisher_stop = asyncio.Event()
    pub_task = asyncio.create_task(publisher.run(publisher_stop), name="mqtt")
    pipe_tasks = [asyncio.create_task(p.run(), name=f"sensor-{p.cfg.id}") for p in pipelines]
    health_task = asyncio.create_task(
        _health(pipelines, publisher, outbox, stop, started), name="health"
    )
    failed: str | None = None  # the offline reason: storage_failed or task_failed
    failed_task = ""
    try:
        failed, failed_task = await supervise(
            pipe_tasks, [pub_task, health_task], stop, publisher.failed
        )
    finally:
        notify("STOPPING=1")
        if failed is not None:
            why = f"storage failed: {publisher.failure}" if publisher.failure else failed_task
            notify(f"STATUS=stopping, {why}")
            if publisher.failure is None:
                publisher.offline_reason = failed
                publisher.technical_alarm("daemon.failed", f"{failed_task}; the daemon restarts")
        health_task.cancel()
        for task in pipe_tasks:
            task.cancel()
        await asyncio.gather(*pipe_tasks, health_task, return_exceptions=True)
        for p in pipelines:
            await p.finish()  # an episode in progress ends, and its end is stored
        publisher_stop.set()
        if not pub_task.done():
            # Events the outbox could not take exist only in memory: wait longer for the
            # broker (within systemd's 15 s watchdog), and say how many are lost if not.
            wait_s = 10.0 if publisher.unstored else 5.0
            try:
                await asyncio.wait_for(pub_task, timeout=wait_s)
            except TimeoutError:
                log.warning("shutdown_unpublished", pending=len(outbox))
                if publisher.unstored:
                    log.error("events_lost", unstored=publisher.unstored)
                pub_task.cancel()
                await asyncio.gather(pub_task, return_exceptions=True)
            except Exception as exc:
                log.error("task_failed", task="mqtt", error=repr(exc))
                failed = failed or "task_failed"
        log.info("stopped", pending_events=len(outbox), failure=failed)
        outbox.close()
    return 1 if failed else 0


async def supervise(
    pipe_tasks: list[asyncio.Task[Any]],
    others: list[asyncio.Task[Any]],
    stop: asyncio.Event,
    storage_failed: asyncio.Event,
) -> tuple[str | None, str]:
    """Wait until asked to stop, or until something fails; returns the failure
    ("storage_failed", "task_failed" or None) and what failed.

    A sensor task whose source ended (a replay without `loop`) leaves its sensor idle.
    Any other task that ends, or raises, is a failure, unless it ended because the daemon
    is stopping: the health loop returns once `stop` is set, and on a busy machine it can
    finish in the same turn of the event loop as the stop itself (a SIGTERM then exited
    1 with "task health failed: None")."""
    stop_task = asyncio.create_task(stop.wait())
    fail_task = asyncio.create_task(storage_failed.wait())
    watched: set[asyncio.Task[Any]] = {*pipe_tasks, *others}
    failed: str | None = None
    failed_task = ""
    try:
        while not stop.is_set() and failed is None:
            done, _ = await asyncio.wait(
                [*watched, stop_task, fail_task], return_when=asyncio.FIRST_COMPLETED
            )
            if fail_task in done:
                failed = "storage_failed"
            for task in done & watched:
                watched.discard(task)
                error = task.exception()
                if error is None and (task in pipe_tasks or stop.is_set()):
                    continue  # its source ended, or it stopped with the daemon
                log.error("task_failed", task=task.get_name(), error=repr(error))
                failed = "task_failed"
                failed_task = f"task {task.get_name()} failed: {error!r}"[:300]
    finally:
        stop_task.cancel()
        fail_task.cancel()
    return failed, failed_task


async def _end_interrupted(outbox: Outbox, publisher: Publisher) -> None:
    """An episode that was open when the previous process died is ended now, with
    end_reason "daemon_restarted", so every onset a monitor saw has an end."""
    try:
        interrupted = await asyncio.to_thread(outbox.open_episodes)
    except StorageError as exc:
        publisher.storage_failed(str(exc))
        return
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for ep in interrupted:
        try:
            last = json.loads(ep.payload)
        except ValueError:
            last = {}
        if not isinstance(last, dict):
            last = {}
        end = {
            **last,
            "schema": topics.SCHEMA,
            "time": now,
            "daemon": publisher.daemon_id,
            "id": str(uuid.uuid4()),
            "event": "clonus.end",
            "priority": "information",
            "episode": ep.episode,
            "end_reason": "daemon_restarted",
        }
        log.warning("episode_ended_by_restart", sensor=ep.sensor, episode=ep.episode)
        await publisher.publish_event(ep.topic, end, episode=(ep.sensor, ep.episode, False))
        state = {k: last[k] for k in ("bed", "sensor", "site", "side") if k in last}
        publisher.set_retained(
            ep.topic.rsplit("/", 1)[0] + "/state",
            {
                "schema": topics.SCHEMA,
                "time": now,
                "daemon": publisher.daemon_id,
                **state,
                "clonus": False,
            },
        )


async def _health(
    pipelines: list[SensorPipeline],
    publisher: Publisher,
    outbox: Outbox,
    stop: asyncio.Event,
    started: float,
) -> None:
    """Stall checks, READY once samples flow, and a watchdog fed only while the whole
    chain works; STATUS= says what is wrong when something is."""
    interval = watchdog_interval_s()
    ready = False
    last_tick = time.monotonic()
    last_heartbeat = last_tick
    low_space = False
    status = ""
    while not stop.is_set():
        await asyncio.sleep(0.5)
        now = time.monotonic()
        lag = now - last_tick - 0.5
        last_tick = now
        if lag > LAG_S:
            log.warning("event_loop_held_up", for_s=round(lag, 2))
            for p in pipelines:
                p.excuse_lag(now)
        for p in pipelines:
            await p.check_stall()
        if now - last_heartbeat > HEARTBEAT_S and publisher.failure is None:
            last_heartbeat = now
            try:
                await asyncio.to_thread(outbox.heartbeat)
                free = _free_bytes(outbox)
                if (free < 4 * MIN_FREE_BYTES) != low_space:
                    low_space = not low_space
                    if low_space:
                        log.error("storage_low", free_bytes=free)
                        publisher.technical_alarm(
                            "daemon.storage_low",
                            f"{outbox.path.parent}: {free // 1024} KiB free",
                            free_bytes=free,
                        )
            except StorageError as exc:
                publisher.storage_failed(str(exc))
        if not ready and all(p.started_streaming.is_set() for p in pipelines):
            ready = True
            notify("READY=1")
            log.info("ready", start_to_streaming_s=round(time.monotonic() - started, 3))
        pub_ok, pub_status = publisher.health()
        stalled = [p.cfg.id for p in pipelines if not _progressing(p)]
        if interval is not None and ready and pub_ok and not stalled:
            notify("WATCHDOG=1")
        text = pub_status + (f"; no samples from {', '.join(stalled)}" if stalled else "")
        if text != status:
            status = text
            notify(f"STATUS={text}")


def _free_bytes(outbox: Outbox) -> int:
    st = os.statvfs(outbox.path.parent)
    return st.f_bavail * st.f_frsize


def _progressing(p: SensorPipeline) -> bool:
    """Samples are flowing, or the link is honestly down (reconnect is the source's job)."""
    if not p.link.connected:
        return True
    return p.last_sample_at is not None and not p.stalled
