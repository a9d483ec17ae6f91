"""Soak: 4 simulated bands (random episodes) -> `clonusd run` -> Mosquitto, for minutes.

    python benchmarks/soak.py [--minutes 8] [--speed 4] [--every 30]

The daemon runs as its own process; every `--every` seconds this prints its CPU (% of
one core over that interval), its RSS, the events delivered so far and the stall alarms.
A flat CPU and RSS over the run is the pass mark: nothing may cost more the longer the
daemon runs. The band is a physiological model, not patient data. Needs mosquitto.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broker import Mosquitto, Subscriber  # type: ignore[import-not-found]

TICK = os.sysconf("SC_CLK_TCK")


def config(port: int, state: Path) -> str:
    sensors = ""
    for i in range(4):
        sensors += f"""
[[sensors]]
id = "ankle-{"lr"[i % 2]}"
bed = "bed-{i // 2 + 1}"
site = "ankle"
side = "{("left", "right")[i % 2]}"
[sensors.source]
kind = "simulated"
random_every_s = 15
seed = {i}
"""
    return f"""
[daemon]
id = "soak"
state_dir = "{state}"
log_level = "warning"
[mqtt]
host = "127.0.0.1"
port = {port}
{sensors}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=30.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    broker = Mosquitto(work)
    broker.start()
    sub = Subscriber(broker.port)
    cfg = work / "soak.toml"
    cfg.write_text(config(broker.port, work / "state"))
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clonusd.daemon.cli",
            "run",
            "--config",
            str(cfg),
            "--speed",
            str(args.speed),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "daemon.log").open("w"),
    )
    print(f"soak: 4 bands at {args.speed}x for {args.minutes} min; log {work / 'daemon.log'}")
    print(f"{'t_min':>6} {'cpu_%':>6} {'rss_MiB':>8} {'events':>7} {'stalls':>6}")
    cpus: list[float] = []
    try:
        start = time.monotonic()
        last_t, last_cpu = start, cpu_seconds(daemon.pid)
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            if daemon.poll() is not None:
                raise SystemExit(f"soak: the daemon exited with {daemon.returncode}")
            now, cpu = time.monotonic(), cpu_seconds(daemon.pid)
            pct = 100 * (cpu - last_cpu) / (now - last_t)
            cpus.append(pct)
            last_t, last_cpu = now, cpu
            events = sub.events()
            stalls = sum(1 for e in events if e.get("event") == "sensor.stall")
            print(
                f"{(now - start) / 60:6.1f} {pct:6.1f} {rss_mib(daemon.pid):8.1f}"
                f" {len(events):7d} {stalls:6d}",
                flush=True,
            )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        sub.close()
        broker.stop()
    if len(cpus) >= 4:
        q = len(cpus) // 4
        first, last = sum(cpus[:q]) / q, sum(cpus[-q:]) / q
        print(f"soak: CPU first quarter {first:.1f} %, last quarter {last:.1f} % of a core")


if __name__ == "__main__":
    main()
