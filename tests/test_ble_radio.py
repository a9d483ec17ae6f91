"""BLE under radio conditions, end to end: virtual bands on the fake BlueZ lose whole
notifications (seeded, or at chosen times), `clonusd run` is unchanged, a subscriber
on Mosquitto judges. The reference is what the detector decides on the band's samples
with nothing lost (what `clonusd replay` of the original recording decides)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from broker import Daemon, Mosquitto, Subscriber, write_config
from fakebluez.bands import RadioLoss, VirtualBand, VirtualPolar
from fakebluez.movesense import VirtualMovesense
from fakebluez.runner import FakeBluezThread

from clonusd.daemon.sources.ble.bands import polar
from clonusd.daemon.sources.simulation import Episode, SimulatedBand
from clonusd.dsp import ClonusDetector, site_params


def _band(sensor: str, fs: float, episodes: list[tuple[float, int]]) -> SimulatedBand:
    band = SimulatedBand(sensor, fs, seed=5)
    for i, (at, beats) in enumerate(episodes):
        band.add(Episode.make(at, beats, 5.5, seed=2 + i))
    return band


def _replay(sensor: str, fs: float, episodes: list[tuple[float, int]], seconds: float) -> list[Any]:
    """Onsets the detector finds on the same band's samples, nothing lost."""
    t, x = _band(sensor, fs, episodes).next_chunk(round(seconds * fs))
    det = ClonusDetector(sensor, site_params("ankle"), fs)
    return [e for e in det.process(t, x) + det.flush() if e.event == "clonus.onset"]


def _run(
    fake: FakeBluezThread,
    broker: Mosquitto,
    tmp_path: Path,
    virtual: VirtualBand,
    source: str,
    until: Callable[[Subscriber], bool],
    timeout: float,
) -> tuple[Subscriber, Daemon]:
    fake.call(lambda: fake.bluez.add(virtual))
    sub = Subscriber(broker.port)
    toml = f'kind = "ble"\nname = "{virtual.name}"\n{source}'
    daemon = Daemon(write_config(tmp_path / "c.toml", broker.port, tmp_path / "s", [], toml))
    daemon.start()
    try:
        assert sub.wait_for(lambda: until(sub), timeout), daemon.logs()
    finally:
        assert daemon.terminate() == 0, daemon.logs()
    return sub, daemon


def _kinds(sub: Subscriber) -> list[str]:
    return [e["event"] for e in sub.events()]


def _at(payload: dict[str, Any]) -> float:
    return datetime.fromisoformat(payload["time"]).timestamp()


LOSSY = {
    # band, its config, sensor, rate, the band's frames (samples per notification)
    "polar-h10": (
        lambda b: VirtualPolar(b, "H10", frame=38),
        'profile = "polar"\nsensor = "acc3"\nrate_hz = 100',
        "acc3",
        100,
    ),
    "movesense": (VirtualMovesense, 'sensor = "imu6"\nrate_hz = 104', "imu6", 104),
}


@pytest.mark.parametrize("name", list(LOSSY))
def test_lost_notifications_are_counted_as_loss_and_the_episode_is_still_alarmed(
    name: str, fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    make, source, sensor, fs = LOSSY[name]
    episodes = [(3.0, 40)]  # about 7 s of clonus
    virtual = make(_band(sensor, fs, episodes))
    virtual.loss = RadioLoss(p=0.2, seed=11)
    sub, daemon = _run(
        fake_bluez,
        broker,
        tmp_path,
        virtual,
        source,
        lambda s: "clonus.end" in _kinds(s) and virtual.samples_sent > 13 * fs,
        45,
    )
    true_loss = virtual.samples_lost / virtual.samples_sent
    statuses = sub.on("/status")
    final = statuses[-1]
    assert 0.1 < true_loss < 0.5  # the radio did lose a fair share
    assert final["packet_loss"] == pytest.approx(true_loss, rel=0.3), (final, true_loss)
    assert final["signal_gaps"] > 0
    rates = [s["rate_hz"] for s in statuses if s["rate_hz"] is not None]
    assert rates and all(abs(r - fs) <= 0.02 * fs for r in rates), rates
    assert "sensor.stall" not in _kinds(sub)
    assert _replay(sensor, fs, episodes, 14.0), "the reference alarms this episode"
    assert "clonus.onset" in _kinds(sub), daemon.logs()
    # The last retained status is the daemon's goodbye, not a link that looks up.
    assert final["link"] == "disconnected" and final["link_detail"] == "daemon stopped"
    sub.close()


def test_verity_pairs_acc_and_gyro_by_time_and_gyro_loss_is_a_gap_not_a_shift_or_a_stall(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    """The gyroscope loses one frame between two episodes (the accelerometer none), then
    every frame for 3.5 s: more than stall_after_s (3 s) without a paired sample."""
    episodes = [(3.0, 20), (16.5, 20)]
    virtual = VirtualPolar(_band("imu6", 52, episodes), "Verity", frame=30)
    gyro_only = lambda _uuid, data: data[0] == polar.GYRO  # noqa: E731
    virtual.loss = RadioLoss(windows=((9.0, 9.55), (11.0, 14.5)), only=gyro_only)
    sub, daemon = _run(
        fake_bluez,
        broker,
        tmp_path,
        virtual,
        'profile = "polar"\nsensor = "imu6"\nrate_hz = 52',
        lambda s: _kinds(s).count("clonus.end") >= 2,
        60,
    )
    assert virtual.loss.dropped >= 6
    kinds = _kinds(sub)
    assert "sensor.stall" not in kinds, daemon.logs()
    assert "ble_force_reconnect" not in daemon.logs()
    live = [e for e in sub.events() if e["event"] == "clonus.onset"]
    ref = _replay("imu6", 52, episodes, 24.0)
    assert len(live) == len(ref) == 2, kinds
    # One link session, one clock offset: intervals on the host axis are the band's.
    for key in ("t", "onset_t"):
        live_gap = live[1][key] - live[0][key]
        ref_gap = getattr(ref[1], key) - getattr(ref[0], key)
        assert abs(live_gap - ref_gap) <= 0.1, (key, live_gap, ref_gap)
    final = sub.on("/status")[-1]
    assert final["malformed_packets"] == 0  # a lost frame is not a malformed one
    true_loss = virtual.samples_lost / virtual.samples_sent
    assert final["packet_loss"] == pytest.approx(true_loss, rel=0.3), (final, true_loss)
    rates = [s["rate_hz"] for s in sub.on("/status") if s["rate_hz"] is not None]
    assert rates and all(abs(r - 52) <= 0.02 * 52 for r in rates), rates
    sub.close()


def test_clonus_going_on_after_a_link_drop_is_alarmed_again_within_2_5_s_of_the_reconnect(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    virtual = VirtualMovesense(_band("imu6", 104, [(2.0, 70)]))  # about 13 s of clonus
    fake_bluez.call(lambda: fake_bluez.bluez.add(virtual))
    sub = Subscriber(broker.port)
    toml = f'kind = "ble"\nname = "{virtual.name}"\nrate_hz = 104'
    daemon = Daemon(write_config(tmp_path / "c.toml", broker.port, tmp_path / "s", [], toml))
    daemon.start()
    try:
        assert sub.wait_for(lambda: "clonus.update" in _kinds(sub), 30), daemon.logs()
        device = fake_bluez.call(lambda: fake_bluez.bluez.device(virtual))
        fake_bluez.call(lambda: fake_bluez.bluez.drop(device))  # mid-episode
        assert sub.wait_for(lambda: _kinds(sub).count("clonus.onset") >= 2, 15), daemon.logs()
    finally:
        assert daemon.terminate() == 0, daemon.logs()
    events = sub.events()
    end = next(e for e in events if e["event"] == "clonus.end")
    assert end["end_reason"] == "link_lost"
    statuses = sub.on("/status")
    down = next(i for i, s in enumerate(statuses) if s["link_detail"] == "link lost")
    back = next(s for s in statuses[down:] if s["link"] == "connected")
    again = [e for e in events if e["event"] == "clonus.onset"][1]
    # a new episode (ids are daemon-wide, unique across restarts), for clonus after the drop
    assert again["episode"] != end["episode"] and again["onset_t"] > end["t"]
    # Both stamped by the daemon as it published them.
    assert 0 < _at(again) - _at(back) <= 2.5, (back["time"], again["time"])
    # Seen to go on after a short outage (two beats), or counted afresh after a long one.
    assert again.get("follows_episode") == end["episode"] or again["beats"] > 5, again
    assert np.isfinite(again["frequency_hz"])
    sub.close()
