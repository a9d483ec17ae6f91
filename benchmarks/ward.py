"""A ward on one broker, measured: N clonusd processes -> one Mosquitto -> three monitors.

    python benchmarks/ward.py [N_DAEMONS] [SECONDS]     (default 20 daemons, 180 s)

Each daemon is a real `clonusd run` process with its own `[daemon] id` and the default
client id, and one or two simulated 100 Hz bands (every other daemon has two) with random
sustained episodes (`random_every_s`), as on a ward of beds. Three monitors subscribe as
`clonusd monitor` does (the same topic filters): two displays and one member of the
shared group "pager"; each is a process of its own that records every event it gets.

Prints, per monitor, events decided (counted from the daemons' own logs) against events
received (none lost, none twice), and the latency from the event's `time` (the wall
clock when the daemon built it, before its outbox write) to the monitor receiving it,
p50/p99/max, beside the latency of a probe message published twice a second straight to
the broker (the broker hop alone); the broker's CPU, memory and message rates (counted
at the monitors); the daemons' RSS and CPU. Everything runs on this one machine, so the
figures include the daemons, the broker and the monitors competing for its cores.
Needs mosquitto (apt-get install mosquitto).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broker import Mosquitto  # type: ignore[import-not-found]

PREFIX = "clonusd"
PROBE = "clonusd-bench/probe"  # outside the clonusd tree
CLK_TCK = os.sysconf("SC_CLK_TCK")


def daemon_config(i: int, port: int, state: Path) -> str:
    bands = []
    for b in range(1 + i % 2):
        bands.append(f"""
[[sensors]]
id = "ankle-{"lr"[b]}"
bed = "bed-{i:02d}"
site = "ankle"
side = "{("left", "right")[b]}"
[sensors.source]
kind = "simulated"
fs_hz = 100
chunk = 10
seed = {100 * i + b}
random_every_s = 20
""")
    return (
        f'[daemon]\nid = "pi-bed-{i:02d}"\nstate_dir = "{state}"\nlog_level = "info"\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {port}\n' + "".join(bands)
    )


# -- a monitor process -------------------------------------------------------------------


def monitor(port: int, out: Path, share: str | None) -> None:
    """Subscribe as `clonusd monitor [--share]` does; write one JSON line per event."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from clonusd.daemon.commands.monitor import subscriptions

    sink = out.open("w", buffering=1)
    counted = [0]

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        for topic in [*subscriptions(PREFIX, share), PROBE]:
            c.subscribe(topic, qos=1)
        sink.write(json.dumps({"connected": time.time()}) + "\n")

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        if msg.topic == PROBE:
            sink.write(json.dumps({"probe": now - float(msg.payload)}) + "\n")
            return
        counted[0] += 1
        p = json.loads(msg.payload)
        if msg.topic.endswith("/availability"):
            sink.write(json.dumps({"daemon": p["daemon"], "state": p["state"]}) + "\n")
        if not msg.topic.endswith("/event"):
            return
        sent = datetime.fromisoformat(p["time"]).timestamp()
        row = {"id": p["id"], "daemon": p["daemon"], "event": p["event"], "lat": now - sent}
        sink.write(json.dumps(row) + "\n")

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{out.stem}")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=30)
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.loop_forever()
    sink.write(json.dumps({"messages": counted[0]}) + "\n")


class Probe:
    """Publishes its own wall-clock time twice a second (QoS 1) beside the ward's traffic:
    the broker hop alone, to set against the events' latency from the daemon's decision."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.client.publish(PROBE, repr(time.time()), qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.loop_stop()
        self.client.disconnect()


# -- measuring ---------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def mem_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


CLONUS = ("clonus.onset", "clonus.update", "clonus.end")


def decided(log: Path) -> dict[str, int]:
    """Clonus events by kind, as the daemon logged deciding them (technical events, a
    stall if a starved process delivers no samples for 3 s, are counted at the monitors
    only: the daemon does not log a stall's clearing)."""
    kinds: dict[str, int] = {}
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = rec.get("event")
        if kind in CLONUS:
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 180.0
    work = Path(tempfile.mkdtemp(prefix="clonusd-ward-"))
    broker = Mosquitto(work)
    broker.start()
    assert broker.proc is not None
    me = [sys.executable, str(Path(__file__).resolve())]
    monitors = {
        name: subprocess.Popen(
            [
                *me,
                "--monitor",
                str(broker.port),
                str(work / f"{name}.jsonl"),
                *(["pager"] if name == "pager" else []),
            ]
        )
        for name in ("display-1", "display-2", "pager")
    }
    while not all(
        (work / f"{m}.jsonl").exists() and (work / f"{m}.jsonl").stat().st_size for m in monitors
    ):
        time.sleep(0.1)
    daemons = []
    for i in range(n):
        cfg = work / f"pi-bed-{i:02d}.toml"
        cfg.write_text(daemon_config(i, broker.port, work / f"state-{i:02d}"))
        log = (work / f"pi-bed-{i:02d}.log").open("w")
        cmd = [sys.executable, "-m", "clonusd.daemon.cli", "run", "--config", str(cfg)]
        daemons.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log))
        time.sleep(0.3)  # a ward does not boot all its Pis in the same second
    broker_cpu0, t0 = cpu_s(broker.proc.pid), time.monotonic()
    daemon_cpu0 = sum(cpu_s(d.pid) for d in daemons)
    probe = Probe(broker.port)
    time.sleep(seconds)
    probe.stop()
    wall = time.monotonic() - t0
    broker_cpu = cpu_s(broker.proc.pid) - broker_cpu0
    daemon_cpu = sum(cpu_s(d.pid) for d in daemons) - daemon_cpu0
    rss = [mem_mib(d.pid, "VmRSS") for d in daemons]
    broker_rss, broker_hwm = mem_mib(broker.proc.pid, "VmRSS"), mem_mib(broker.proc.pid, "VmHWM")
    for d in daemons:
        d.send_signal(signal.SIGTERM)  # episodes in progress end, and their ends go out
    codes = [d.wait(timeout=60) for d in daemons]
    time.sleep(3.0)
    for m in monitors.values():
        m.send_signal(signal.SIGTERM)
        m.wait(timeout=10)
    broker.stop()

    want: dict[str, int] = {}
    per_daemon: dict[str, int] = {}
    for i in range(n):
        kinds = decided(work / f"pi-bed-{i:02d}.log")
        per_daemon[f"pi-bed-{i:02d}"] = sum(kinds.values())
        for k, v in kinds.items():
            want[k] = want.get(k, 0) + v
    total = sum(want.values())
    bands = sum(1 + i % 2 for i in range(n))
    print(f"{n} daemons ({bands} simulated 100 Hz bands), one Mosquitto, {wall:.0f} s measured")
    print(f"events decided: {total} ({', '.join(f'{k} {v}' for k, v in sorted(want.items()))})")
    print(f"daemons exited 0: {codes.count(0)}/{n}")
    messages_in = messages_out = 0
    for name in monitors:
        rows = [json.loads(ln) for ln in (work / f"{name}.jsonl").read_text().splitlines()]
        count = sum(r["messages"] for r in rows if "messages" in r)
        messages_out += count
        messages_in = max(messages_in, count if name.startswith("display") else 0)
        hop = [1e3 * r["probe"] for r in rows if "probe" in r]
        online = {r["daemon"] for r in rows if r.get("state") == "online"}
        events = [r for r in rows if "id" in r]
        technical = len([r for r in events if r["event"] not in CLONUS])
        rows = [r for r in events if r["event"] in CLONUS]
        ids = [r["id"] for r in rows]
        got: dict[str, int] = {}
        for r in rows:
            got[r["daemon"]] = got.get(r["daemon"], 0) + 1
        short = [d for d, k in per_daemon.items() if got.get(d, 0) < k]
        lat = [1e3 * r["lat"] for r in rows]
        line = (
            f"{name:9s}: received {len(ids)}/{total}, duplicates {len(ids) - len(set(ids))}, "
            f"daemons short {len(short)}, technical events {technical}, "
            f"daemons seen online {len(online)}/{n}"
        )
        if lat:
            line += (
                f"; latency p50 {pct(lat, 50):.1f} ms, p99 {pct(lat, 99):.1f} ms, "
                f"max {max(lat):.1f} ms"
            )
        if hop:
            line += f"; probe (broker hop) p50 {pct(hop, 50):.1f} ms, p99 {pct(hop, 99):.1f} ms"
        print(line)
    print(
        f"broker: CPU {100 * broker_cpu / wall:.1f} % of one core, RSS {broker_rss:.1f} MiB "
        f"(peak {broker_hwm:.1f} MiB); {messages_in / wall:.1f} messages/s in (as a display "
        f"received them), {messages_out / wall:.1f} out to the three monitors"
    )
    print(
        f"daemons: RSS mean {sum(rss) / len(rss):.0f} MiB, max {max(rss):.0f} MiB, "
        f"{sum(rss):.0f} MiB in all; CPU {100 * daemon_cpu / wall:.1f} % of one core in all, "
        f"{100 * daemon_cpu / wall / n:.2f} % per daemon"
    )
    takeovers = broker.logs().count("already connected")
    print(f"broker log: {takeovers} client-id takeovers ('already connected')")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the end (shared)")
    print(f"work folder: {work}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--monitor":
        monitor(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        main()
