"""The real-BlueZ tier: `clonusd` on a real kernel, dbus-daemon and bluetoothd in a VM.

The guest (Debian bookworm, as on a Raspberry Pi: BlueZ 5.66, Python 3.11) runs the
project's wheel, installed as a user installs it, unchanged: `clonusd scan` and
`clonusd run`. Its hci0 is a bumble virtual controller on the host, reached through
/dev/vhci and a virtio serial port; the bands on the same virtual air are the fake
BlueZ's virtual bands (real Movesense GSP and Polar PMD bytes, the project's simulated
clonus signal), here as bumble GATT servers. A subscriber on the guest's Mosquitto
streams every message back to the host.

One VM run does the whole scenario (module fixture); each test checks one part of it.
A VM that cannot boot fails every test with the reason: this tier is never skipped.

    pytest -m vm tests/vm          (needs root, qemu-system-x86; see tests/vm/README.md)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from machine import Machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("CLONUSD_VM_CACHE", "/var/cache/clonusd-vm"))

pytestmark = pytest.mark.vm
SCENARIO_TIMEOUT_S = 420  # boot to power-off; a typical run takes 60-120 s

MOVESENSE, POLAR = "ankle-r", "ankle-l"  # sensor ids in the daemon's config
# stall_after_s: an emulated guest on a shared CPU can stop for seconds; a stall would
# force a reconnect the tests do not expect (the fake-BlueZ tier tests stalls).
CONFIG = """
[daemon]
state_dir = "/tmp/clonusd-state"
[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "clonusd-vm"
keepalive_s = 5
[[sensors]]
id = "{movesense}"
bed = "bed-7"
site = "ankle"
side = "right"
stall_after_s = 10
[sensors.source]
kind = "ble"
profile = "movesense"
name = "{movesense_name}"
rate_hz = 104
[[sensors]]
id = "{polar}"
bed = "bed-7"
site = "ankle"
side = "left"
stall_after_s = 10
[sensors.source]
kind = "ble"
profile = "polar"
sensor = "imu6"
name = "{polar_name}"
rate_hz = 52
"""


@dataclass
class Run:
    """What one VM run produced; `failure` is set when it could not be run at all."""

    failure: str | None = None
    marks: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    messages: list[tuple[float, str, Any]] = field(default_factory=list)
    scan: dict[str, Any] = field(default_factory=dict)
    commands: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    connects: dict[str, int] = field(default_factory=dict)
    bands: dict[str, str] = field(default_factory=dict)
    daemon_rc: str | None = None
    share: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def log(self, name: str) -> str:
        if self.share is None or not (self.share / name).exists():
            return f"({name}: none)"
        return (self.share / name).read_text(errors="replace")

    def evidence(self) -> str:
        tail = "\n".join(self.log("daemon.log").splitlines()[-25:])
        return f"steps: {self.marks}\nerrors: {self.errors}\ndaemon.log (end):\n{tail}"

    def on(self, sensor: str, suffix: str) -> list[dict[str, Any]]:
        return [
            p
            for _, topic, p in self.messages
            if topic.endswith(f"/{sensor}/{suffix}") and isinstance(p, dict)
        ]

    def kinds(self, sensor: str) -> list[str]:
        return [e["event"] for e in self.on(sensor, "event")]


def requirements(path: Path) -> Path:
    """The image's Python packages: the project's own dependencies (its wheel goes in at
    boot) plus `installer`, which installs that wheel."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    path.write_text("\n".join([*deps, "installer==0.7.0"]) + "\n")
    return path


def build_image(workdir: Path) -> Path:
    script = HERE / "build-image.sh"
    reqs = requirements(workdir / "requirements.txt")
    env = {**os.environ, "CLONUSD_VM_CACHE": str(CACHE)}
    proc = subprocess.run(
        ["bash", str(script), str(reqs)], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building the VM image failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def build_wheel(workdir: Path) -> Path:
    out = workdir / "wheel"
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building the project's wheel failed:\n{proc.stderr[-3000:]}")
    return next(out.glob("clonusd-*.whl"))


class Scenario:
    """Drives the VM. Each step waits for what it needs (a band streaming, an event at
    the subscriber) instead of sleeping a fixed time, so a slow (TCG, shared-CPU) guest
    only makes the steps later."""

    def __init__(self, run: Run, vm: Machine) -> None:
        self.run, self.vm = run, vm
        self.t0 = time.monotonic()

    def mark(self, name: str) -> None:
        self.run.marks[name] = round(time.monotonic() - self.t0, 2)

    async def wait(self, what: str, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                self.run.errors.append(f"timed out after {timeout:.0f} s: {what}")
                self.mark(f"TIMEOUT {what}")
                return False
            await asyncio.sleep(0.05)
        self.mark(what)
        return True

    def status(self, sensor: str) -> dict[str, Any]:
        s = self.run.on(sensor, "status")
        return s[-1] if s else {}

    async def main(self) -> None:
        from air import Air, advertiser
        from fakebluez.bands import VirtualPolar
        from fakebluez.movesense import VirtualMovesense
        from machine import BootError, read_mqtt

        from clonusd.daemon.sources.simulation import Episode, SimulatedBand

        vm, run = self.vm, self.run
        air = Air()
        await air.open(f"unix:{vm.socket('hci')}")
        await vm.connect()
        assert vm.mqtt is not None
        mqtt_task = asyncio.get_running_loop().create_task(read_mqtt(vm.mqtt, run.messages))
        try:
            up = await vm.answer("ready", 150)
        except (TimeoutError, BootError) as exc:
            agent = "\n".join(run.log("cmd.log").splitlines()[-10:])
            raise BootError(
                f"the VM never got to a powered hci0 ({exc or 'timed out'}); "
                f"console:\n{vm.console_tail()}\nagent:\n{agent}"
            ) from None
        self.mark("guest ready")
        run.timings["guest_uptime_at_ready_s"] = float(up[0])
        # Bands the daemon is not told about, for `clonusd scan` to list: the daemon's own
        # bands stop advertising once it connects to them, which may be before the scan.
        bystanders = [
            advertiser("Movesense 000000000009", "0C:8C:DC:00:00:09"),
            advertiser("Polar H10 0A1B2C3D", "A0:9E:1A:00:00:03"),
            advertiser("Kettle", "11:22:33:44:55:66"),
        ]
        movesense = VirtualMovesense(SimulatedBand("imu6", 104.0, seed=3))
        pol = VirtualPolar(SimulatedBand("imu6", 52.0, seed=4), "Verity")
        for p in bystanders:
            await air.add(p)
        bm = await air.add(movesense)
        await air.add(pol)
        run.bands = {b.peripheral.name: b.address for b in air.bands}
        config = CONFIG.format(
            movesense=MOVESENSE,
            polar=POLAR,
            movesense_name=movesense.name,
            polar_name=pol.name,
        )
        (vm.share / "clonusd.toml").write_text(config)
        await vm.send("mqtt")
        await vm.answer("mqtt", 30)
        await vm.send("scan 3")
        await vm.send("run clonusd.toml")
        await vm.answer("running", 10)
        self.mark("scan and daemon started")
        try:
            await self.steps(bm, movesense, pol, Episode)
        finally:
            run.scan = {
                "rc": await self._scanned(),
                "stdout": run.log("scan.out"),
                "stderr": run.log("scan.err"),
            }
            await vm.send("stop")
            try:
                run.daemon_rc = (await vm.answer("stopped", 30))[0]
            except TimeoutError:
                run.daemon_rc = "did not stop within 30 s"
            self.mark("daemon stopped")
            await asyncio.sleep(0.5)  # the replies to the last stop commands
            run.commands = {"movesense": list(movesense.commands), "polar": list(pol.commands)}
            run.connects = {b.peripheral.name: b.connects for b in air.bands}
            await vm.send("bye")
            with contextlib.suppress(TimeoutError, BootError):
                await vm.answer("bye", 10)
            mqtt_task.cancel()
            await air.close()

    async def _scanned(self) -> str:
        for _, line in self.vm.answers:
            if line.startswith("scanned"):
                return line.split()[1]
        try:
            return (await self.vm.answer("scanned", 90))[0]
        except TimeoutError:
            return "scan did not finish"

    async def steps(self, bm: Any, movesense: Any, pol: Any, episode: Any) -> None:
        # Waits on what the bands see (the daemon's status reaches the subscriber only
        # every few seconds); the subscriber's view is what the tests then check.
        if not await self.wait(
            "both bands streaming", lambda: movesense.streaming and pol.streaming, 120
        ):
            return
        # Each band's clonus starts two seconds from now on its own clock: a rhythm that
        # begins in a band's first 1.15 s of signal is not alarmed as new.
        movesense.band.add(episode.make(movesense.clock() + 2.0, 12, 5.5, seed=1))
        pol.band.add(episode.make(pol.clock() + 2.0, 10, 5.0, seed=2))
        await self.wait(
            "movesense episode ended", lambda: "clonus.end" in self.run.kinds(MOVESENSE), 40
        )
        await self.wait("polar episode ended", lambda: "clonus.end" in self.run.kinds(POLAR), 20)

        self.mark("movesense out of range")
        await bm.drop()
        await self.wait(
            "movesense link down", lambda: self.status(MOVESENSE).get("link") == "disconnected", 20
        )
        await asyncio.sleep(2.0)
        await bm.advertise()
        self.mark("movesense back in range")
        if not await self.wait(
            "movesense reconnected", lambda: bm.connects == 2 and movesense.streaming, 60
        ):
            return
        movesense.band.add(episode.make(movesense.clock() + 1.0, 12, 6.0, seed=3))
        await self.wait(
            "movesense episode after the reconnect ended",
            lambda: self.run.kinds(MOVESENSE).count("clonus.end") >= 2,
            40,
        )
        await self.wait(
            "the subscriber saw the reconnect",
            lambda: (
                self.status(MOVESENSE).get("link") == "connected"
                and self.status(MOVESENSE).get("reconnects") == 1
            ),
            20,
        )


@pytest.fixture(scope="module")
def vm_run(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Run]:
    from machine import BootError, Machine

    work = tmp_path_factory.mktemp("vm")
    run = Run()
    try:
        import bumble  # noqa: F401
    except ImportError:
        run.failure = "bumble is not installed on the host: pip install -e '.[vm]'"
        yield run
        return
    t = time.monotonic()
    try:
        image = build_image(work)
        run.timings["image_s"] = round(time.monotonic() - t, 1)
        wheel = build_wheel(work)
    except RuntimeError as exc:
        run.failure = str(exc)
        yield run
        return
    vm = Machine(image, work)
    run.share = vm.share
    vm.prepare(wheel)
    t = time.monotonic()
    try:
        vm.start()
        asyncio.run(asyncio.wait_for(Scenario(run, vm).main(), SCENARIO_TIMEOUT_S))
    except BootError as exc:
        run.failure = f"the VM did not boot: {exc}"
    except Exception as exc:
        run.failure = f"the scenario broke: {type(exc).__name__}: {exc}\n{run.evidence()}"
    finally:
        vm.stop()
        run.timings["vm_s"] = round(time.monotonic() - t, 1)
    # The figures go to the terminal also when pytest captures output (CI reads them).
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nvm tier: {run.timings}\nvm tier steps (s from boot): {run.marks}")
    yield run


def ran(run: Run) -> Run:
    """The run, or this test FAILS (inside the test, so it counts as a failure, not as
    an error or a skip) when the VM could not be built, booted or driven."""
    if run.failure:
        pytest.fail(run.failure, pytrace=False)
    return run


def test_the_vm_runs_a_real_bluetoothd_with_a_powered_adapter(vm_run: Run) -> None:
    r = ran(vm_run)
    assert "Bluetooth daemon 5." in r.log("bluetoothd.log")
    assert r.timings["guest_uptime_at_ready_s"] > 0  # the agent saw hci0 powered


def test_scan_lists_the_bands_in_range_with_their_profiles(vm_run: Run) -> None:
    r = ran(vm_run)
    assert r.scan["rc"] == "0", r.scan
    rows = {line.split()[0]: line.split() for line in r.scan["stdout"].splitlines()[1:]}
    expect = {
        r.bands["Movesense 000000000009"]: "movesense",
        r.bands["Polar H10 0A1B2C3D"]: "polar",
        r.bands["Kettle"]: "-",
    }
    for address, profile in expect.items():
        assert address in rows, r.scan["stdout"]
        assert rows[address][2] == profile, rows[address]
    # The daemon's own bands may have been connected (and silent) before the scan heard them.
    for name in ("Movesense 000000000001", "Polar Sense B5E1F002"):
        if r.bands[name] in rows:
            assert rows[r.bands[name]][2] != "-"
    order = [rows[a][2] for a in rows]
    assert order[-1] == "-", "unknown devices come last"


def test_an_episode_reaches_the_subscriber_from_each_band(vm_run: Run) -> None:
    r = ran(vm_run)
    for sensor, beats in ((MOVESENSE, 12), (POLAR, 10)):
        events = r.on(sensor, "event")
        # Episode ids are the daemon's (unique across restarts): the first one seen.
        ids = [e["episode"] for e in events if "episode" in e]
        first = [e for e in events if ids and e.get("episode") == ids[0]]
        kinds = [e["event"] for e in first]
        assert kinds and kinds[0] == "clonus.onset" and "clonus.end" in kinds, (
            f"{sensor}: {kinds}\n{r.evidence()}"
        )
        end = next(e for e in first if e["event"] == "clonus.end")
        assert abs(end["beats"] - beats) <= 1, end
        assert end["end_reason"] == "rhythm_stopped", end


def test_a_lost_link_is_reconnected_and_the_band_streams_again(vm_run: Run) -> None:
    r = ran(vm_run)
    assert not r.errors, r.evidence()
    statuses = r.on(MOVESENSE, "status")
    links = [s["link"] for s in statuses]
    assert "disconnected" in links, links
    after = links[links.index("disconnected") :]
    assert "connected" in after, links
    assert statuses[-1]["reconnects"] == 1, statuses[-1]
    assert r.connects["Movesense 000000000001"] == 2
    assert r.connects["Polar Sense B5E1F002"] == 1  # the other band kept its link
    assert r.kinds(MOVESENSE).count("clonus.onset") == 2  # and one after the reconnect
    assert "ble_link_lost" in r.log("daemon.log")


def test_the_bands_are_told_to_stop_when_the_daemon_stops(vm_run: Run) -> None:
    r = ran(vm_run)
    from clonusd.daemon.sources.ble.bands import movesense as gsp
    from clonusd.daemon.sources.ble.bands import polar

    assert r.daemon_rc == "0", r.daemon_rc
    gsp_commands = [d for u, d in r.commands["movesense"] if u == gsp.COMMAND]
    subscribe = max(i for i, d in enumerate(gsp_commands) if d[0] == 1)
    assert gsp.unsubscribe(gsp_commands[subscribe][1]) in gsp_commands[subscribe:]
    stops = {d for u, d in r.commands["polar"] if u == polar.CONTROL and d[0] == polar.STOP}
    assert stops == {polar.stop(polar.ACC), polar.stop(polar.GYRO)}
