"""`clonusd run`: every sensor's pipeline, the MQTT publisher, health and systemd."""

from __future__ import annotations

import asyncio
import signal
import time

import structlog

from clonusd.daemon.config import Config
from clonusd.daemon.mqtt.outbox import Outbox
from clonusd.daemon.mqtt.publisher import Publisher
from clonusd.daemon.service.pipeline import SensorPipeline
from clonusd.daemon.service.systemd import notify, watchdog_interval_s
from clonusd.daemon.sources.factory import make_source

log = structlog.get_logger("clonusd")


async def run_service(cfg: Config, speed: float = 1.0) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    outbox = Outbox(cfg.daemon.state_dir / "outbox.sqlite3")
    publisher = Publisher(cfg.mqtt, outbox, cfg.daemon.id)
    pipelines = [
        SensorPipeline(
            s, make_source(s, speed), publisher, cfg.mqtt.topic_prefix, cfg.daemon.state_dir
        )
        for s in cfg.sensors
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
    health_task = asyncio.create_task(_health(pipelines, stop, started), name="health")
    failed = False
    try:
        # Run until asked to stop. A source that ends (a replay without `loop`) leaves its
        # sensor idle; only a pipeline that fails stops the daemon (systemd restarts it).
        stop_task = asyncio.create_task(stop.wait())
        pending: set[asyncio.Task[None]] = set(pipe_tasks)
        while not stop.is_set() and not failed:
            done, _ = await asyncio.wait([*pending, stop_task], return_when=asyncio.FIRST_COMPLETED)
            for task in done & pending:
                pending.discard(task)
                if task.exception() is not None:
                    log.error("pipeline_failed", task=task.get_name(), error=repr(task.exception()))
                    failed = True
        stop_task.cancel()
    finally:
        notify("STOPPING=1")
        health_task.cancel()
        for task in pipe_tasks:
            task.cancel()
        await asyncio.gather(*pipe_tasks, health_task, return_exceptions=True)
        for p in pipelines:
            await p.finish()  # an episode in progress ends, and its end is stored
        publisher_stop.set()
        try:
            await asyncio.wait_for(pub_task, timeout=5.0)
        except TimeoutError:
            log.warning("shutdown_unpublished", pending=len(outbox))
            pub_task.cancel()
        log.info("stopped", pending_events=len(outbox))
        outbox.close()
    return 1 if failed else 0


async def _health(pipelines: list[SensorPipeline], stop: asyncio.Event, started: float) -> None:
    """Stall checks, READY once samples flow, and a watchdog fed only by real progress."""
    interval = watchdog_interval_s()
    ready = False
    while not stop.is_set():
        await asyncio.sleep(0.5)
        for p in pipelines:
            await p.check_stall()
        if not ready and all(p.started_streaming.is_set() for p in pipelines):
            ready = True
            notify("READY=1")
            log.info("ready", start_to_streaming_s=round(time.monotonic() - started, 3))
        if interval is not None and ready and all(_progressing(p) for p in pipelines):
            notify("WATCHDOG=1")


def _progressing(p: SensorPipeline) -> bool:
    """Samples are flowing, or the link is honestly down (reconnect is the source's job)."""
    if not p.link.connected:
        return True
    return p.last_sample_at is not None and not p.stalled
