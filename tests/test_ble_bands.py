"""Every band profile end to end: a virtual band speaking its real protocol on the fake
BlueZ -> bleak's unmodified BlueZ backend inside `clonusd run` -> Mosquitto -> a
subscriber. Each test checks the set-up the band was given, the episode the subscriber
got, and that the band was told to stop when the daemon shut down."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker import Daemon, Mosquitto, Subscriber, write_config
from fakebluez.bands import (
    DIY_CONFIG,
    DIY_CONTROL,
    VirtualBand,
    VirtualDiyBoard,
    VirtualMyo,
    VirtualPolar,
    VirtualThingy,
    VirtualWitMotion,
)
from fakebluez.movesense import VirtualMovesense
from fakebluez.runner import FakeBluezThread

from clonusd.daemon.sources.ble.bands import movesense as gsp
from clonusd.daemon.sources.ble.bands import myo, polar, thingy
from clonusd.daemon.sources.simulation import Episode, SimulatedBand


@dataclass
class Case:
    make: Callable[[SimulatedBand], VirtualBand]
    sensor: str
    fs: float
    source: str  # TOML under [sensors.source], after kind and name
    set_up: Callable[[Any], bool]  # what the band must have been told
    stopped: Callable[[Any], bool]  # ... and told on shutdown
    battery: int | None


CASES = {
    "movesense-acc": Case(
        VirtualMovesense,
        "acc3",
        104,
        'sensor = "acc3"\nrate_hz = 104',
        lambda v: v.streaming and not v._imu6,
        lambda v: (gsp.COMMAND, gsp.unsubscribe(0x63)) in v.commands,
        87,
    ),
    "myo-imu": Case(
        VirtualMyo,
        "imu6",
        50,
        'profile = "myo"\nsensor = "imu6"',
        lambda v: v.never_sleep and v.streaming,
        lambda v: (myo.COMMAND, myo.STOP) in v.commands,
        77,
    ),
    "polar-verity": Case(
        lambda b: VirtualPolar(b, "Verity"),
        "imu6",
        52,
        'profile = "polar"\nsensor = "imu6"\nrate_hz = 52',
        lambda v: set(v.started) == {polar.ACC, polar.GYRO},
        lambda v: (polar.CONTROL, polar.stop(polar.GYRO)) in v.commands,
        64,
    ),
    "polar-verity-sdk-mode": Case(
        lambda b: VirtualPolar(b, "Verity"),
        "imu6",
        104,
        'profile = "polar"\nrate_hz = 104',  # the model (and imu6) from its name
        lambda v: (
            v.started == {polar.ACC: 104, polar.GYRO: 104}
            and (polar.CONTROL, polar.start(polar.SDK_MODE, {})) in v.commands
        ),
        lambda v: v.commands[-1] == (polar.CONTROL, polar.stop(polar.SDK_MODE)),
        64,
    ),
    "polar-h10": Case(
        lambda b: VirtualPolar(b, "H10"),
        "acc3",
        100,
        'profile = "polar"\nsensor = "acc3"\nrate_hz = 100',
        lambda v: v.started == {polar.ACC: 100},
        lambda v: (polar.CONTROL, polar.stop(polar.ACC)) in v.commands,
        64,
    ),
    "thingy52": Case(
        VirtualThingy,
        "imu6",
        100,
        'profile = "thingy52"\nrate_hz = 100',
        lambda v: v.motion_hz == 100,
        lambda v: (thingy.RAW, b"cccd off") in v.commands,
        91,
    ),
    "witmotion": Case(
        VirtualWitMotion,
        "imu6",
        100,
        'profile = "witmotion"\nrate_hz = 100',
        lambda v: v.output_hz == 100 and v.saved_hz == 100 and v.frames_split > 0,
        lambda v: True,  # the module has no stop command; closing the link stops it
        None,
    ),
    "myo": Case(
        VirtualMyo,
        "emg",
        200,
        'profile = "myo"',
        lambda v: v.never_sleep and v.streaming,
        lambda v: (myo.COMMAND, myo.STOP) in v.commands,
        77,
    ),
    "generic": Case(
        VirtualDiyBoard,
        "imu6",
        100,
        'profile = "generic"\nrate_hz = 100\n' + DIY_CONFIG,
        lambda v: v.streaming,
        lambda v: (DIY_CONTROL, b"\x00") in v.commands,
        None,
    ),
}


def _kinds(sub: Subscriber) -> list[str]:
    return [e["event"] for e in sub.events()]


def _daemon(broker: Mosquitto, tmp_path: Path, band: VirtualBand, source: str) -> Daemon:
    """`clonusd run` with one sensor: `band`, found by its name, with `source` settings."""
    toml = f'kind = "ble"\nname = "{band.name}"\n{source}'
    daemon = Daemon(write_config(tmp_path / "c.toml", broker.port, tmp_path / "s", [], toml))
    daemon.start()
    return daemon


@pytest.mark.parametrize("name", list(CASES))
def test_band_profile_end_to_end(
    name: str, fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    case = CASES[name]
    band = SimulatedBand(case.sensor, case.fs, seed=5)
    band.add(Episode.make(2.5, 12, 5.5, seed=2))
    virtual = case.make(band)
    fake_bluez.call(lambda: fake_bluez.bluez.add(virtual))
    sub = Subscriber(broker.port)
    daemon = _daemon(broker, tmp_path, virtual, case.source)
    try:
        assert sub.wait_for(lambda: "clonus.end" in _kinds(sub), 40), daemon.logs()
        assert fake_bluez.call(lambda: case.set_up(virtual)), virtual.commands
        assert sub.wait_for(lambda: sub.on("/status")[-1]["rate_hz"] is not None, 10)
        status = sub.on("/status")[-1]
    finally:
        assert daemon.terminate() == 0, daemon.logs()
    assert fake_bluez.call(lambda: case.stopped(virtual)), virtual.commands
    onsets = [e for e in sub.events() if e["event"] == "clonus.onset"]
    end = next(e for e in sub.events() if e["event"] == "clonus.end")
    story = [(e["event"], e.get("end_reason"), e.get("beats")) for e in sub.events()]
    assert len(onsets) == 1, story
    assert abs(end["beats"] - 12) <= 1, (end, daemon.logs())
    assert end["sensor_kind"] == case.sensor
    assert status["link"] == "connected" and status["battery_pct"] == case.battery
    assert status["malformed_packets"] == 0
    assert status["rate_hz"] == pytest.approx(case.fs, rel=0.25)
    sub.close()


def test_polar_with_too_small_an_mtu_is_refused_with_a_clear_reason(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    virtual = VirtualPolar(SimulatedBand("imu6", 52), "Verity", mtu=185)
    fake_bluez.call(lambda: fake_bluez.bluez.add(virtual))
    sub = Subscriber(broker.port)
    daemon = _daemon(broker, tmp_path, virtual, 'profile = "polar"\nsensor = "imu6"')
    try:
        assert sub.wait_for(
            lambda: any("MTU is 185" in s["link_detail"] for s in sub.on("/status")), 30
        ), daemon.logs()
        assert daemon.proc is not None and daemon.proc.poll() is None  # still running
    finally:
        assert daemon.terminate() == 0
    logs = daemon.logs()
    assert "needs at least 232" in logs and "band refused its set-up" in logs
    assert not virtual.started  # never started a stream it could not carry
    sub.close()


def test_verity_without_sdk_mode_is_refused_a_rate_that_needs_it_with_the_fix(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    virtual = VirtualPolar(SimulatedBand("imu6", 104), "Verity", sdk=False)
    fake_bluez.call(lambda: fake_bluez.bluez.add(virtual))
    sub = Subscriber(broker.port)
    daemon = _daemon(broker, tmp_path, virtual, 'profile = "polar"\nrate_hz = 104')
    try:
        assert sub.wait_for(
            lambda: any("refused SDK mode" in s["link_detail"] for s in sub.on("/status")), 30
        ), daemon.logs()
    finally:
        assert daemon.terminate() == 0
    assert "rate_hz = 52 needs none" in daemon.logs()
    assert (polar.CONTROL, polar.start(polar.SDK_MODE, {})) in virtual.commands
    assert not virtual.started
    sub.close()


def test_a_polar_whose_device_information_names_another_model_is_refused_with_the_fix(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    """A Verity Sense under a name that does not say its model, configured as an H10: its
    Device Information's Model Number String says what it is, and the set-up stops there
    with the setting to change, before any stream is asked for."""
    virtual = VirtualPolar(SimulatedBand("imu6", 52), "Verity", name="Sense 5E1F", sdk=True)
    fake_bluez.call(lambda: fake_bluez.bluez.add(virtual))
    sub = Subscriber(broker.port)
    daemon = _daemon(broker, tmp_path, virtual, 'profile = "polar"\nmodel = "h10"')
    try:
        assert sub.wait_for(
            lambda: any("says it is a Polar Verity" in s["link_detail"] for s in sub.on("/status")),
            30,
        ), daemon.logs()
    finally:
        assert daemon.terminate() == 0
    assert 'not a Polar H10: set model = \\"verity\\"' in daemon.logs()
    assert not virtual.started
    sub.close()


def test_two_bands_at_once_share_one_scanner_and_keep_their_events_apart(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    """Both ankles: clonus on the left only (it is often one-sided)."""
    left_band = SimulatedBand("imu6", 104, seed=1)
    left_band.add(Episode.make(3.0, 12, 6.0, seed=4))
    left = VirtualMovesense(left_band)
    right = VirtualPolar(SimulatedBand("imu6", 52, seed=2), "Verity")
    fake_bluez.call(lambda: [fake_bluez.bluez.add(p) for p in (left, right)])
    sub = Subscriber(broker.port)
    cfg = write_config(
        tmp_path / "c.toml",
        broker.port,
        tmp_path / "s",
        [],
        f'kind = "ble"\nname = "{left.name}"\nrate_hz = 104',
    )
    cfg.write_text(
        cfg.read_text()
        + f"""
[[sensors]]
id = "ankle-r"
bed = "bed-12"
site = "ankle"
side = "right"
[sensors.source]
kind = "ble"
address = "{right.address}"
profile = "polar"
sensor = "imu6"
"""
    )
    daemon = Daemon(cfg)
    daemon.start()
    try:
        assert sub.wait_for(lambda: "clonus.end" in _kinds(sub), 40), daemon.logs()
        assert sub.wait_for(
            lambda: (
                {s["sensor"] for s in sub.on("/status") if s["rate_hz"]} == {"ankle-l", "ankle-r"}
            ),
            10,
        )
        stats = fake_bluez.call(lambda: dict(fake_bluez.bluez.stats))
    finally:
        assert daemon.terminate() == 0
    episode_events = [e for e in sub.events() if e["event"].startswith("clonus.")]
    assert {e["sensor"] for e in episode_events} == {"ankle-l"}
    assert {e["side"] for e in episode_events} == {"left"}
    assert stats["connects"] == 2
    assert stats["discovery_in_progress"] == 0  # one scanner: BlueZ never said InProgress
    sub.close()
