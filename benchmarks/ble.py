"""CPU through the whole BLE stack, per band at its top rate: a virtual band on a fake
BlueZ -> bleak -> the band's parser -> detector -> MQTT.

    python benchmarks/ble.py [SECONDS_PER_BAND]      (BANDS=movesense,myo to pick some)

Prints, per band, the CPU (% of one core, from /proc) of the daemon process, of the fake
bluetoothd (this process) and of dbus-daemon: the daemon's share is what a Pi pays per
band; the other two stand in for BlueZ and the radio. Needs dbus-daemon and mosquitto.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

from broker import Daemon, Mosquitto, Subscriber, write_config  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.bands import (  # type: ignore[import-not-found]  # noqa: E402
    DIY_CONFIG,
    VirtualDiyBoard,
    VirtualMyo,
    VirtualPolar,
    VirtualThingy,
    VirtualWitMotion,
)
from fakebluez.bus import PrivateBus  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.movesense import VirtualMovesense  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.runner import FakeBluezThread  # type: ignore[import-not-found]  # noqa: E402

from clonusd.daemon.sources.simulation import Episode, SimulatedBand  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")

# band: (sensor, top rate, virtual band, [sensors.source] settings)
BANDS: dict[str, tuple[str, int, Any, str]] = {
    "movesense": ("imu6", 208, VirtualMovesense, "rate_hz = 208"),
    "polar-verity": (
        "imu6",
        416,
        lambda b: VirtualPolar(b, "Verity"),
        'profile = "polar"\nsensor = "imu6"\nrate_hz = 416',
    ),
    "polar-h10": (
        "acc3",
        200,
        lambda b: VirtualPolar(b, "H10"),
        'profile = "polar"\nsensor = "acc3"\nrate_hz = 200',
    ),
    "thingy52": ("imu6", 200, VirtualThingy, 'profile = "thingy52"\nrate_hz = 200'),
    "witmotion": ("imu6", 200, VirtualWitMotion, 'profile = "witmotion"\nrate_hz = 200'),
    "myo": ("emg", 200, VirtualMyo, 'profile = "myo"'),
    "generic": ("imu6", 200, VirtualDiyBoard, 'profile = "generic"\nrate_hz = 200\n' + DIY_CONFIG),
}
CHOSEN = os.environ.get("BANDS", ",".join(BANDS)).split(",")
HEADER = (
    f"{'band':>13} {'rate':>7}  {'daemon':>7}  {'fake bluez':>10}  {'dbus-daemon':>11}  "
    f"{'samples/s':>9}  onsets"
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> None:
    """Each band runs in a fresh process: measured one after another in one process, later
    daemons showed several times the CPU of the first (an artefact, not the daemon's cost)."""
    import subprocess

    seconds = sys.argv[1] if len(sys.argv) > 1 else "15"
    print(HEADER)
    for name in CHOSEN:
        subprocess.run([sys.executable, __file__, seconds, name], check=True)


def measure(seconds: float, name: str) -> None:
    sensor, rate, make, settings = BANDS[name]
    bus = PrivateBus()
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    os.environ["PATH"] = f"{HERE / 'tests' / 'fakebluez' / 'bin'}:{os.environ['PATH']}"
    work = Path(bus.dir)
    broker = Mosquitto(work)
    broker.start()
    fake = FakeBluezThread(bus.address)
    try:
        band = SimulatedBand(sensor, float(rate), seed=rate)
        for k in range(int(seconds // 6)):
            band.add(Episode.make(3.0 + 6 * k, 10, 5.5, seed=k))
        vm = make(band)
        fake.call(lambda: fake.bluez.add(vm))
        source = f'kind = "ble"\nname = "{vm.name}"\n{settings}'
        cfg = write_config(work / "c.toml", broker.port, work / "s", [], source=source)
        sub = Subscriber(broker.port)
        daemon = Daemon(cfg)
        daemon.start()
        assert daemon.proc is not None
        sub.wait_for(
            lambda: bool(sub.on("/status")) and sub.on("/status")[-1].get("rate_hz") is not None,
            30,
        )
        d0, f0, b0 = cpu_seconds(daemon.proc.pid), time.process_time(), cpu_seconds(bus.proc.pid)
        n0, w0 = vm.samples_sent, time.monotonic()
        time.sleep(seconds)
        wall = time.monotonic() - w0
        d1, f1, b1 = cpu_seconds(daemon.proc.pid), time.process_time(), cpu_seconds(bus.proc.pid)
        onsets = sum(1 for e in sub.events() if e["event"] == "clonus.onset")
        print(
            f"{name:>13} {rate:>4} Hz  {100 * (d1 - d0) / wall:>6.1f}%"
            f"  {100 * (f1 - f0) / wall:>9.1f}%  {100 * (b1 - b0) / wall:>10.1f}%"
            f"  {(vm.samples_sent - n0) / wall:>9.0f}  {onsets}",
            flush=True,
        )
        daemon.terminate()
        sub.close()
    finally:
        fake.close()
        broker.stop()
        bus.close()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        measure(float(sys.argv[1]), sys.argv[2])
    else:
        main()
