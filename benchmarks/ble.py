"""CPU through the whole BLE stack: virtual Movesense on a fake BlueZ -> bleak -> parser ->
detector -> MQTT, at each rate the band offers up to its top streaming rate.

    python benchmarks/ble.py [SECONDS_PER_RATE]

Prints, per rate, the CPU (% of one core, from /proc) of the daemon process, of the fake
bluetoothd (this process) and of dbus-daemon: the daemon's share is what a Pi pays per
band; the other two stand in for BlueZ and the radio. Needs dbus-daemon and mosquitto.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))

from broker import Daemon, Mosquitto, Subscriber, write_config  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.bus import PrivateBus  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.movesense import VirtualMovesense  # type: ignore[import-not-found]  # noqa: E402
from fakebluez.runner import FakeBluezThread  # type: ignore[import-not-found]  # noqa: E402

from daemon.simulation import Episode, SimulatedBand  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
RATES = [int(r) for r in os.environ.get("RATES", "52,104,208").split(",")]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def main() -> None:
    """Each rate runs in a fresh process: measured one after another in one process, later
    daemons showed several times the CPU of the first (an artefact, not the daemon's cost)."""
    import subprocess

    seconds = sys.argv[1] if len(sys.argv) > 1 else "15"
    print(
        f"{'rate':>6}  {'daemon':>8}  {'fake bluez':>10}  {'dbus-daemon':>11}  "
        f"{'samples/s':>9}  onsets"
    )
    for rate in RATES:
        subprocess.run([sys.executable, __file__, seconds, str(rate)], check=True)


def measure(seconds: float, rates: list[int]) -> None:
    bus = PrivateBus()
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
    os.environ["PATH"] = f"{HERE / 'tests' / 'fakebluez' / 'bin'}:{os.environ['PATH']}"
    work = Path(bus.dir)
    broker = Mosquitto(work)
    broker.start()
    print(
        f"{'rate':>6}  {'daemon':>8}  {'fake bluez':>10}  {'dbus-daemon':>11}  "
        f"{'samples/s':>9}  onsets"
    )
    try:
        for rate in RATES:
            fake = FakeBluezThread(bus.address)
            band = SimulatedBand("imu6", float(rate), seed=rate)
            for k in range(int(seconds // 6)):
                band.add(Episode.make(3.0 + 6 * k, 10, 5.5, seed=k))
            vm = VirtualMovesense(band, address=f"0C:8C:DC:00:{rate % 256:02X}:01")
            fake.call(lambda vm=vm, fake=fake: fake.bluez.add(vm))
            cfg = write_config(
                work / f"c{rate}.toml",
                broker.port,
                work / f"s{rate}",
                [],
                source=f'kind = "ble"\nname = "{vm.name}"\nrate_hz = {rate}',
            )
            sub = Subscriber(broker.port)
            daemon = Daemon(cfg)
            daemon.start()
            assert daemon.proc is not None
            sub.wait_for(
                lambda sub=sub: (
                    bool(sub.on("/status")) and sub.on("/status")[-1].get("rate_hz") is not None
                ),
                30,
            )
            d0, f0, b0 = (
                cpu_seconds(daemon.proc.pid),
                time.process_time(),
                cpu_seconds(bus.proc.pid),
            )
            n0, w0 = vm.samples_sent, time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - w0
            d1, f1, b1 = (
                cpu_seconds(daemon.proc.pid),
                time.process_time(),
                cpu_seconds(bus.proc.pid),
            )
            onsets = sum(1 for e in sub.events() if e["event"] == "clonus.onset")
            print(
                f"{rate:>4} Hz  {100 * (d1 - d0) / wall:>7.1f}%  {100 * (f1 - f0) / wall:>9.1f}%"
                f"  {100 * (b1 - b0) / wall:>10.1f}%  {(vm.samples_sent - n0) / wall:>9.0f}"
                f"  {onsets}"
            )
            daemon.terminate()
            sub.close()
            fake.close()
    finally:
        broker.stop()
        bus.close()


if __name__ == "__main__":
    if len(sys.argv) > 2:
        measure(float(sys.argv[1]), [int(sys.argv[2])])
    else:
        main()
