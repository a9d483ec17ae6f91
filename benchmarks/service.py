"""The running service, measured: 4 simulated 200 Hz bands -> clonusd -> Mosquitto.

    python benchmarks/service.py [SECONDS]

Prints the latency from the arrival of the sample chunk that completed an episode's
decision to a subscriber receiving the event (p50/p99), CPU per sensor, peak RSS, time
from start to streaming, and the longest single detector call (how long DSP can hold the
event loop). Needs mosquitto (apt-get install mosquitto). The chunk's arrival time is
matched to the event id by instrumenting this process only.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broker import Mosquitto, Subscriber  # type: ignore[import-not-found]

from clonusd.daemon.config import parse_config
from clonusd.daemon.logs import configure_logging
from clonusd.daemon.mqtt.publisher import Publisher
from clonusd.daemon.service import pipeline as pipeline_mod
from clonusd.daemon.service.run import run_service
from clonusd.daemon.sources.base import SampleChunk

N_SENSORS = 4


def config(port: int, state: Path) -> str:
    sensors = []
    for i in range(N_SENSORS):
        episodes = ", ".join(f"{{at_s = {3 + 7 * k + i}, beats = 10}}" for k in range(40))
        sensors.append(f"""
[[sensors]]
id = "band-{i}"
bed = "bed-{i // 2}"
site = "ankle"
side = "{"left" if i % 2 else "right"}"
[sensors.source]
kind = "simulated"
fs_hz = 200
chunk = 8
seed = {i}
episodes = [{episodes}]
""")
    return (
        f'[daemon]\nstate_dir = "{state}"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        + "".join(sensors)
    )


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 45.0
    configure_logging("warning")
    work = Path(tempfile.mkdtemp())
    broker = Mosquitto(work)
    broker.start()
    sub = Subscriber(broker.port)
    received_at: dict[str, float] = {}
    current: dict[int, float] = {}
    pipelines: list[pipeline_mod.SensorPipeline] = []
    first_chunk: list[float] = []

    original_samples = pipeline_mod.SensorPipeline._samples

    async def samples(self: pipeline_mod.SensorPipeline, chunk: SampleChunk) -> None:
        if self not in pipelines:
            pipelines.append(self)
            first_chunk.append(time.monotonic())
        current[id(self.publisher)] = chunk.received
        await original_samples(self, chunk)

    original_publish = Publisher.publish_event

    async def publish(
        self: Publisher,
        topic: str,
        payload: dict[str, Any],
        episode: tuple[str, int, bool] | None = None,
    ) -> None:
        received_at[payload["id"]] = current.get(id(self), time.monotonic())
        await original_publish(self, topic, payload, episode)

    pipeline_mod.SensorPipeline._samples = samples  # type: ignore[method-assign]
    Publisher.publish_event = publish  # type: ignore[method-assign]

    cfg = parse_config(config(broker.port, work / "state"))
    loop_start = time.monotonic()
    cpu0 = time.process_time()

    async def run() -> int:
        asyncio.get_running_loop().call_later(seconds, os.kill, os.getpid(), signal.SIGTERM)
        return await run_service(cfg)

    asyncio.run(run())
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - loop_start
    time.sleep(0.5)
    arrivals: dict[str, float] = {}
    with sub._lock:
        for t, topic, payload, _ in sub.messages:
            if topic.endswith("/event") and isinstance(payload, dict):
                arrivals.setdefault(payload["id"], t)
    lat = np.array([arrivals[i] - received_at[i] for i in arrivals if i in received_at]) * 1e3
    sub.close()
    broker.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{N_SENSORS} simulated 200 Hz IMU bands, 8-sample notifications, {wall:.0f} s")
    if lat.size:
        print(
            f"sample arrival -> subscriber latency: p50 {np.percentile(lat, 50):.1f} ms, "
            f"p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms ({lat.size} events)"
        )
    print(
        f"CPU: {100 * cpu / wall:.1f} % of one core in all, "
        f"{100 * cpu / wall / N_SENSORS:.2f} % per sensor (includes MQTT and the generator)"
    )
    print(f"peak RSS: {rss_mb:.0f} MiB")
    worst = max((p.max_process_s for p in pipelines), default=0.0)
    print(f"longest single detector call: {worst * 1e3:.2f} ms")
    if len(first_chunk) == N_SENSORS:
        print(
            f"start to streaming (all {N_SENSORS} bands): "
            f"{(max(first_chunk) - loop_start) * 1e3:.0f} ms"
        )


if __name__ == "__main__":
    main()
