"""Real BLE path without hardware: a virtual Movesense on a fake BlueZ (private D-Bus) ->
bleak's unmodified BlueZ backend inside `clonusd run` -> Mosquitto -> a subscriber."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from broker import Daemon, Mosquitto, Subscriber, write_config
from conftest import clonusd
from fakebluez.movesense import VirtualMovesense
from fakebluez.runner import FakeBluezThread

from clonusd.daemon.sources.simulation import Episode, SimulatedBand


def _start(
    fake: FakeBluezThread,
    broker: Mosquitto,
    tmp_path: Path,
    band: VirtualMovesense,
    connect_errors: list[tuple[str, str]] | None = None,
) -> tuple[Subscriber, Daemon]:
    """The band on the fake BlueZ, a subscriber, and `clonusd run` connecting to the band;
    `connect_errors` are what BlueZ answers the first Connect calls with."""
    fake.call(lambda: fake.bluez.add(band))
    if connect_errors:
        fake.call(lambda: fake.bluez.device(band)).fail_next = list(connect_errors)
    sub = Subscriber(broker.port)
    source = f'kind = "ble"\nname = "{band.name}"\nrate_hz = 104'
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "s", [], source=source)
    daemon = Daemon(cfg)
    daemon.start()
    return sub, daemon


def _band(*episodes: tuple[float, int]) -> SimulatedBand:
    band = SimulatedBand("imu6", 104.0, seed=3)
    for i, (at, beats) in enumerate(episodes):
        band.add(Episode.make(at, beats, 5.5, seed=i))
    return band


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def _last_live_status(sub: Subscriber) -> dict[str, Any]:
    """The last status the running daemon published (after it, its goodbye on shutdown)."""
    statuses = sub.on("/status")
    assert statuses[-1]["link_detail"] == "daemon stopped"  # the goodbye
    return dict(statuses[-2])


def _link(sub: Subscriber) -> str | None:
    statuses = sub.on("/status")
    return statuses[-1]["link"] if statuses else None


def test_virtual_movesense_episode_reaches_subscriber(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band((2.0, 12), (6.0, 4)))
    sub, daemon = _start(fake_bluez, broker, tmp_path, band)
    try:
        assert sub.wait_for(lambda: "clonus.end" in _kinds(sub.events()), 30), daemon.logs()
        sub.wait_for(lambda: False, timeout=3.0)  # the 4-beat episode comes and goes
    finally:
        assert daemon.terminate() == 0
    onsets = [e for e in sub.events() if e["event"] == "clonus.onset"]
    ends = [e for e in sub.events() if e["event"] == "clonus.end"]
    assert len(onsets) == 1 and len(ends) == 1
    assert abs(ends[0]["beats"] - 12) <= 1
    status = _last_live_status(sub)
    assert status["battery_pct"] == 87 and "Movesense" in status["link_detail"]
    assert status["invalid_samples"] == 0
    sub.close()


def test_link_dropped_mid_episode_reconnects_without_leaking(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band((2.0, 40), (12.0, 12)))
    sub, daemon = _start(fake_bluez, broker, tmp_path, band)
    try:
        assert sub.wait_for(lambda: "clonus.onset" in _kinds(sub.events()), 30), daemon.logs()
        device = fake_bluez.call(lambda: fake_bluez.bluez.device(band))
        fake_bluez.call(lambda: fake_bluez.bluez.drop(device))  # link lost mid-episode
        assert sub.wait_for(lambda: any(s["link"] == "disconnected" for s in sub.on("/status")), 10)
        assert sub.wait_for(lambda: _kinds(sub.events()).count("clonus.onset") >= 2, 40), (
            daemon.logs()
        )
        assert sub.wait_for(lambda: sub.on("/status")[-1]["link"] == "connected", 10)
        assert sub.wait_for(lambda: sub.on("/status")[-1]["reconnects"] == 1, 10)
        assert sub.wait_for(lambda: sub.on("/status")[-1]["signal_gaps"] >= 1, 10)  # the outage
        stats = fake_bluez.call(lambda: dict(fake_bluez.bluez.stats))
    finally:
        assert daemon.terminate() == 0
    ends = [e for e in sub.events() if e["event"] == "clonus.end"]
    assert ends[0]["end_reason"] == "link_lost"  # the drop ended the first episode honestly
    assert stats["connects"] == 2 and stats["notify_sessions"] == 1
    assert "ble_link_lost" in daemon.logs()
    sub.close()


def test_scan_lists_bands_with_profile_and_signal(fake_bluez: FakeBluezThread) -> None:
    from fakebluez.bands import VirtualMyo, VirtualPolar, VirtualThingy, VirtualWitMotion
    from fakebluez.bluez import Peripheral

    class Unknown(Peripheral):
        pass

    other = Unknown()
    other.name, other.address, other.rssi = "Kettle", "11:22:33:44:55:66", -90
    band = VirtualMovesense(_band(), address="0C:8C:DC:00:00:09")
    band.rssi = -50
    others = [
        VirtualPolar(SimulatedBand("imu6", 52)),
        VirtualPolar(SimulatedBand("acc3", 100), "H10", address="A0:9E:1A:00:00:07"),
        VirtualThingy(SimulatedBand("imu6", 100)),
        VirtualWitMotion(SimulatedBand("imu6", 100)),
        VirtualMyo(SimulatedBand("emg", 200)),
    ]
    for i, p in enumerate(others):
        p.rssi = -60 - 5 * i if i else -58
    fake_bluez.call(lambda: [fake_bluez.bluez.add(p) for p in (band, other, *others)])
    proc = clonusd("scan", "--seconds", "1", timeout=60)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    # Strongest first, unknown devices last; RSSI as advertised (the fake wobbles by 1 dB).
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("0C:8C:DC:00:00:09", "movesense", "-"),
        (others[0].address, "polar", "verity"),  # the model, as the config's `model` names it
        (others[1].address, "polar", "h10"),
        (others[2].address, "thingy52", "-"),
        (others[3].address, "witmotion", "-"),
        (others[4].address, "myo", "-"),
        ("11:22:33:44:55:66", "-", "-"),
    ]
    assert int(rows[0][1]) in (-50, -51) and "Kettle" in rows[-1]


def test_in_progress_on_connect_is_retried_and_malformed_packets_are_counted(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band((2.0, 10)), garbage_every=10)
    sub, daemon = _start(
        fake_bluez,
        broker,
        tmp_path,
        band,
        connect_errors=[("org.bluez.Error.InProgress", "In Progress")],
    )
    try:
        assert sub.wait_for(lambda: "clonus.end" in _kinds(sub.events()), 40), daemon.logs()
        assert sub.wait_for(lambda: (sub.on("/status")[-1].get("malformed_packets") or 0) > 0, 10)
    finally:
        assert daemon.terminate() == 0
    logs = daemon.logs()
    assert "ble_retry" in logs and "InProgress" in logs
    end = next(e for e in sub.events() if e["event"] == "clonus.end")
    assert abs(end["beats"] - 10) <= 1  # garbage did not disturb the count
    assert band.garbage_sent > 0
    sub.close()


def test_dead_bluetoothd_is_caught_by_the_stall_alarm_and_the_band_comes_back(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band())
    sub, daemon = _start(fake_bluez, broker, tmp_path, band)
    try:
        assert sub.wait_for(
            lambda: any(s["link"] == "connected" and s["rate_hz"] for s in sub.on("/status")), 30
        ), daemon.logs()
        fake_bluez.crash_and_restart(fake_bluez.address, down_s=1.0)
        assert sub.wait_for(lambda: "sensor.stall" in _kinds(sub.events()), 15), daemon.logs()
        assert sub.wait_for(lambda: "sensor.stall_cleared" in _kinds(sub.events()), 40), (
            daemon.logs()
        )
    finally:
        assert daemon.terminate() == 0
    assert "ble_force_reconnect" in daemon.logs()
    assert _last_live_status(sub)["link"] == "connected"
    sub.close()


def test_connect_failures_each_get_their_own_wait_and_the_band_still_connects(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band((3.0, 10)))
    errors = [
        ("org.bluez.Error.Failed", "le-connection-abort-by-local"),  # bleak retries this
        ("org.freedesktop.DBus.Error.UnknownObject", "Method Connect doesn't exist"),
        ("org.bluez.Error.Failed", "No free connection slot"),
        ("org.bluez.Error.InProgress", "In Progress"),
    ]
    sub, daemon = _start(fake_bluez, broker, tmp_path, band, connect_errors=errors)
    try:
        assert sub.wait_for(lambda: "clonus.end" in _kinds(sub.events()), 60), daemon.logs()
        attempts = fake_bluez.call(lambda: list(fake_bluez.bluez.connect_log))
    finally:
        assert daemon.terminate() == 0
    logs = daemon.logs()
    for reason in (
        "BlueZ forgot the device: scan again",
        "out of connection slots",
        "another connect or scan is under way",
    ):
        assert reason in logs, reason
    assert len(attempts) == 5  # four refusals (one retried inside bleak), then the link
    waits = [b[0] - a[0] for a, b in itertools.pairwise(attempts[1:])]
    assert waits[0] < 1.5  # a forgotten device: just scan again
    assert waits[1] > 2.5  # out of slots: give another link time to go
    sub.close()


def test_band_out_of_range_is_reconnected_as_soon_as_it_advertises_again(
    fake_bluez: FakeBluezThread, broker: Mosquitto, tmp_path: Path
) -> None:
    band = VirtualMovesense(_band())
    sub, daemon = _start(fake_bluez, broker, tmp_path, band)
    try:
        assert sub.wait_for(lambda: _link(sub) == "connected", 30)
        fake_bluez.call(lambda: fake_bluez.bluez.vanish(band))
        assert sub.wait_for(lambda: _link(sub) == "disconnected", 10)
        gone = len(fake_bluez.call(lambda: list(fake_bluez.bluez.connect_log)))
        sub.wait_for(lambda: False, timeout=4.0)  # out of range for a while
        tried_while_gone = len(fake_bluez.call(lambda: list(fake_bluez.bluez.connect_log)))
        fake_bluez.call(lambda: fake_bluez.bluez.reappear(band))
        assert sub.wait_for(lambda: _link(sub) == "connected", 15)
        back = fake_bluez.call(lambda: fake_bluez.bluez.advert_log[-1][0])
        connect = fake_bluez.call(lambda: fake_bluez.bluez.connect_log[-1][0])
    finally:
        assert daemon.terminate() == 0
    assert tried_while_gone == gone  # no blind connects to a band that is not there
    assert 0 <= connect - back < 1.5  # back as soon as its advertisement is heard
    assert sub.on("/status")[-1]["reconnects"] == 1
    sub.close()


def test_scan_reads_the_model_of_a_polar_whose_name_does_not_say_it(
    fake_bluez: FakeBluezThread,
) -> None:
    """A Polar band advertising a name without its model is asked for its Device
    Information over a short connection, unless scan is told never to connect."""
    from fakebluez.bands import VirtualPolar

    band = VirtualPolar(SimulatedBand("acc3", 100), "H10", address="A0:9E:1A:00:00:0B", name="HRM")
    fake_bluez.call(lambda: fake_bluez.bluez.add(band))
    rows = {}
    for flags in ((), ("--no-connect",)):
        proc = clonusd("scan", "--seconds", "1", *flags, timeout=60)
        assert proc.returncode == 0, proc.stderr
        row = next(r.split() for r in proc.stdout.splitlines() if r.startswith(band.address))
        rows[flags] = (row[2], row[3])
    assert rows == {(): ("polar", "h10"), ("--no-connect",): ("polar", "-")}
    stats = fake_bluez.call(lambda: dict(fake_bluez.bluez.stats))
    assert stats["connects"] == 1  # once, for the first scan; and it let the band go again
    assert fake_bluez.call(lambda: band.link) is None
