"""The central station in headless Chromium, fed by a real daemon through Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from broker import Daemon, Mosquitto, Subscriber, write_config
from station import (
    CHROMIUM,
    CHROMIUM_ARGS,
    OBSERVER,
    Station,
    artifact,
    need_browser,
    until,
    wall_offset,
)

pytestmark = pytest.mark.browser

# The demo's simulated band (config/demo.toml): imu6 at 200 Hz.
DEMO_BAND = 'kind = "simulated"\nsensor = "imu6"\nfs_hz = 200\n'


def _source(episodes: str) -> str:
    return DEMO_BAND + f"episodes = [{episodes}]"


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    sync_playwright = need_browser()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _new_page(browser: Any, **kw: Any) -> tuple[Any, list[str]]:
    """A page whose script errors are collected: a page that throws fails its test."""
    page = browser.new_page(**kw)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return page, errors


def _alarm_changes(page: Any) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = page.evaluate("window.__alarms")
    return changes


def test_alarm_shows_within_1s_clears_lists_history_and_draws_beats_then_offline(
    broker: Mosquitto, browser: Any, tmp_path: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        broker.port,
        tmp_path / "state",
        [],
        source=_source("{ at_s = 6, beats = 14, frequency_hz = 5.5 }"),
        daemon_id="pi-12",
    )
    sub = Subscriber(broker.port)
    daemon = Daemon(cfg)
    station = Station(broker.port, tmp_path)
    page, errors = _new_page(browser, viewport={"width": 1000, "height": 900})
    try:
        page.add_init_script(OBSERVER)
        daemon.start()
        page.goto(station.url)
        tile = page.locator('[data-key="bed-12/ankle-l"]')
        tile.wait_for(timeout=20_000)
        assert tile.get_attribute("data-alarm") == "none"

        assert sub.wait_for(lambda: any(e["event"] == "clonus.onset" for e in sub.events()), 30)
        offset = wall_offset()
        onset_at = (
            next(
                at
                for at, topic, p, _ in sub.messages
                if topic.endswith("/event") and p["event"] == "clonus.onset"
            )
            + offset
        )
        page.wait_for_selector('[data-key="bed-12/ankle-l"][data-alarm="clonus"]', timeout=5_000)
        shown = next(c for c in _alarm_changes(page) if c.get("alarm") == "clonus")
        latency = shown["at"] / 1000 - onset_at
        print(f"onset at broker -> red tile: {latency * 1000:.0f} ms")
        assert latency < 1.0
        # Red, flashing at 2 Hz (high priority: 1.4-2.8 Hz), with its text.
        anim = tile.evaluate(
            "t => { const s = getComputedStyle(t); "
            "return [s.animationName, s.animationDuration, s.backgroundColor]; }"
        )
        assert anim[0] == "high-flash" and anim[1] == "0.5s"
        r, g, b = (int(v) for v in anim[2].removeprefix("rgb(").rstrip(")").split(","))
        assert r > 90 and g < 30 and b < 40, anim[2]
        detail = tile.locator(".detail").inner_text()
        assert "bed-12" in detail and "left ankle" in detail and "beats" in detail
        assert "Hz" in detail and "since onset" in detail
        page.wait_for_selector(".tile[data-alarm=clonus] .live-evidence svg", timeout=3_000)
        shot = artifact("central-station-alarm.png")
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")

        # It clears on the end; the history lists the episode, and its evidence the beats.
        assert sub.wait_for(lambda: any(e["event"] == "clonus.end" for e in sub.events()), 30)
        end = next(e for e in sub.events() if e["event"] == "clonus.end")
        page.wait_for_selector('[data-key="bed-12/ankle-l"][data-alarm="none"]', timeout=3_000)
        row = page.locator(f'.episode[data-beats="{end["beats"]}"]')
        row.wait_for(timeout=5_000)
        assert f"{end['beats']} beats" in row.inner_text()
        assert "rhythm stopped" in row.inner_text()
        svg = row.locator('svg[data-final="true"]')
        svg.wait_for(timeout=8_000)
        assert svg.locator("circle.beat").count() == end["beats"]
        assert svg.locator("polyline.trace").count() == 1
        shot = artifact("central-station-history.png")
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")

        # The history is the daemon's, retained at the broker: a reload, and a new web
        # server, still list it with its evidence.
        page.reload()
        page.locator(f'.episode[data-beats="{end["beats"]}"] circle.beat').first.wait_for(
            timeout=5_000
        )
        station.stop()
        station = Station(broker.port, tmp_path)
        page.goto(station.url)
        page.locator(f'.episode[data-beats="{end["beats"]}"] circle.beat').first.wait_for(
            timeout=5_000
        )
        errors.clear()  # the old page's stream was refused while no server was there

        # SIGKILL: the bed says its daemon is offline within the last will's time.
        killed = time.monotonic()
        daemon.kill()
        bed = page.locator('section.bed[data-bed="bed-12"]')
        page.wait_for_selector(
            'section.bed[data-bed="bed-12"][data-daemon="offline"]', timeout=12_000
        )
        change = next(c for c in _alarm_changes(page) if c.get("daemon") == "offline")
        took = change["at"] / 1000 - (killed + offset)
        print(f"SIGKILL -> bed offline: {took:.2f} s (keepalive 5 s x 1.5 = 7.5 s)")
        assert took <= 7.5 + 0.5
        assert "DAEMON OFFLINE" in bed.inner_text()
        assert tile.get_attribute("data-alarm") == "technical"
        assert errors == []
    finally:
        page.close()
        station.stop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        sub.close()


def test_audio_pause_holds_2_minutes_on_the_test_clock_and_acknowledge_names_who(
    broker: Mosquitto, browser: Any, tmp_path: Path
) -> None:
    # A long episode (about 65 s), so the alarm stays on while the page's clock is moved.
    cfg = write_config(
        tmp_path / "c.toml",
        broker.port,
        tmp_path / "state",
        [],
        source=_source("{ at_s = 4, beats = 400, frequency_hz = 6.0 }"),
        daemon_id="pi-12",
    )
    daemon = Daemon(cfg)
    station = Station(broker.port, tmp_path)
    page, errors = _new_page(browser)
    try:
        page.clock.install()
        daemon.start()
        page.goto(station.url)
        page.fill("#nurse", "Anna")
        page.click("#sound")
        page.wait_for_selector("body[data-audio=quiet]")
        page.wait_for_selector('[data-key="bed-12/ankle-l"][data-alarm="clonus"]', timeout=30_000)
        page.wait_for_selector("body[data-audio=sounding]")
        assert page.evaluate("window.station.beeps") >= 1

        page.click("#pause")
        page.wait_for_selector("body[data-audio=paused]")
        info = page.inner_text("#pauseinfo")
        assert info.startswith("Audio paused by Anna at") and "2:00 left" in info
        beeps = page.evaluate("window.station.beeps")
        page.clock.fast_forward("01:59")
        page.wait_for_timeout(600)  # a few render ticks on the (running) test clock
        assert page.get_attribute("body", "data-audio") == "paused"
        assert page.evaluate("window.station.beeps") == beeps
        assert "0:00 left" in page.inner_text("#pauseinfo") or "0:01 left" in page.inner_text(
            "#pauseinfo"
        )
        # The alarm stays visible (and flashing) while the audio is paused.
        tile = page.locator('[data-key="bed-12/ankle-l"]')
        assert tile.get_attribute("data-alarm") == "clonus"
        page.clock.fast_forward("00:02")
        page.wait_for_selector("body[data-audio=sounding]", timeout=2_000)
        until(page, f"window.station.beeps > {beeps}", 2.0)
        assert page.inner_text("#pauseinfo") == ""

        tile.locator("button.ack").click()
        page.wait_for_selector("body[data-audio=quiet]")
        assert tile.locator(".ackinfo").inner_text().startswith("Acknowledged by Anna at")
        assert tile.get_attribute("data-alarm") == "clonus"
        assert errors == []
    finally:
        page.close()
        station.stop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()


def _publish(client: Any, topic: str, payload: dict[str, Any], retain: bool = True) -> None:
    client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(5)


@pytest.fixture
def pub(broker: Mosquitto):  # type: ignore[no-untyped-def]
    """A plain MQTT client on the test's broker, publishing what a daemon would."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.loop_stop()
        client.disconnect()


def _bed_on_air(
    client: Any, daemon: str, bed: str, sensor: str, side: str, battery_pct: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A daemon online with one ankle band, no clonus and a connected status, as its
    retained topics say: (the sensor's identity fields, its status)."""
    ident = {"schema": "clonusd/2", "daemon": daemon, "bed": bed, "sensor": sensor,
             "site": "ankle", "side": side}  # fmt: skip
    status = {**ident, "sensor_kind": "imu6", "link": "connected", "link_detail": "ok",
              "rate_hz": 100.0, "nominal_rate_hz": 100.0, "packet_loss": 0.0,
              "battery_pct": battery_pct, "quality": "ok", "stalled": False}  # fmt: skip
    online = {**ident, "state": "online", "reason": "x"}
    _publish(client, f"clonusd/daemon/{daemon}/availability", online)
    _publish(client, f"clonusd/{bed}/{sensor}/state", {**ident, "clonus": False})
    _publish(client, f"clonusd/{bed}/{sensor}/status", status)
    return ident, status


def test_technical_alarms_have_their_own_colours_and_never_read_as_all_well(
    broker: Mosquitto, browser: Any, pub: Any, tmp_path: Path
) -> None:
    _, status = _bed_on_air(pub, "pi-3", "bed-3", "ankle-r", "right", battery_pct=12)
    station = Station(broker.port, tmp_path)
    page, errors = _new_page(browser)
    tile = page.locator('[data-key="bed-3/ankle-r"]')

    def strip() -> tuple[str, str]:
        el = tile.locator(".tech div").first
        return el.inner_text(), el.evaluate("e => getComputedStyle(e).backgroundColor")

    try:
        page.clock.install()
        page.goto(station.url)
        page.fill("#nurse", "Bo")
        page.click("#sound")
        page.wait_for_selector('[data-key="bed-3/ankle-r"][data-alarm="low"]')
        # Low priority (battery): cyan, silent, and the bed is still watched.
        assert strip() == ("BATTERY LOW 12 %", "rgb(0, 200, 230)")
        assert tile.locator(".headline").inner_text() == "monitoring · no clonus"
        assert page.get_attribute("body", "data-audio") == "quiet"

        # A stall, then a lost link: yellow, "NOT MONITORED", never red nor flashing.
        _publish(pub, "clonusd/bed-3/ankle-r/status", {**status, "stalled": True})
        page.wait_for_selector('[data-key="bed-3/ankle-r"][data-alarm="technical"]')
        assert strip() == ("SENSOR STALLED: no samples", "rgb(255, 212, 0)")
        assert tile.locator(".headline").inner_text() == "NOT MONITORED"
        anim = tile.evaluate(
            "t => [getComputedStyle(t).animationName, getComputedStyle(t).animationDuration]"
        )
        assert anim == ["medium-flash", "1.4s"]  # 0.7 Hz: medium priority, not red's 2 Hz
        # Medium priority sounds its own burst until acknowledged; a new fault sounds again.
        page.wait_for_selector("body[data-audio=medium]")
        assert page.evaluate("window.station.mediumBeeps") >= 1
        assert page.evaluate("window.station.beeps") == 0
        tile.locator("button.ack").click()
        page.wait_for_selector("body[data-audio=quiet]")
        assert tile.locator(".ackinfo").inner_text().startswith("Acknowledged by Bo at")
        _publish(
            pub,
            "clonusd/bed-3/ankle-r/status",
            {**status, "link": "disconnected", "link_detail": "out of range"},
        )
        until(
            page,
            "document.querySelector('[data-key=\"bed-3/ankle-r\"] .tech').innerText"
            ".includes('LINK LOST: out of range')",
        )
        page.wait_for_selector("body[data-audio=medium]")
        # No status for 15 s (test clock): the bed's data is stale and says so.
        _publish(pub, "clonusd/bed-3/ankle-r/status", status)
        page.wait_for_selector('[data-key="bed-3/ankle-r"][data-alarm="low"]')
        page.clock.fast_forward("00:16")
        page.wait_for_selector('section.bed[data-bed="bed-3"][data-stale="true"]')
        assert "NO DATA for 0:1" in tile.locator(".tech").inner_text()
        assert tile.get_attribute("data-alarm") == "technical"

        # The station loses the broker: a banner, and every bed is marked not monitored.
        broker.stop()
        page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        assert "NOT MONITORED" in page.inner_text("#banner")
        assert page.get_attribute("#link", "data-state") == "lost"
        assert "no link to the broker" in tile.locator(".tech").inner_text()
        shot = artifact("central-station-technical.png")
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert errors == []
    finally:
        page.close()
        station.stop()


def test_a_daemon_that_goes_silent_is_marked_offline_within_keepalive_x_1_5(
    broker: Mosquitto, browser: Any, tmp_path: Path
) -> None:
    """SIGSTOP: the socket stays open (as when a Pi loses power or its network), so only
    the broker's keepalive check sends the last will (keepalive_s = 5: 7.5 s by the spec,
    later on a busy machine, when Mosquitto gets round to it). What is ours to hold: the
    bed turns offline because of the will, within 1 s of the will reaching a subscriber,
    and not before the keepalive could have expired."""
    import os
    import signal

    cfg = write_config(
        tmp_path / "c.toml", broker.port, tmp_path / "state", [], source=_source(""),
        daemon_id="pi-12",
    )  # fmt: skip
    daemon = Daemon(cfg)
    station = Station(broker.port, tmp_path)
    page, errors = _new_page(browser)
    try:
        page.add_init_script(OBSERVER)
        daemon.start()
        page.goto(station.url)
        page.wait_for_selector(
            'section.bed[data-bed="bed-12"][data-daemon="online"]', timeout=30_000
        )
        assert daemon.proc is not None
        sub = Subscriber(broker.port)
        stopped = time.monotonic() + wall_offset()
        os.kill(daemon.proc.pid, signal.SIGSTOP)

        def will_at() -> float | None:
            with sub._lock:
                return next(
                    (
                        t
                        for t, topic, p, _ in sub.messages
                        if topic.endswith("/availability")
                        and isinstance(p, dict)
                        and p.get("reason") == "connection_lost"
                    ),
                    None,
                )

        assert sub.wait_for(lambda: will_at() is not None, 60), "the broker sent no will"
        page.wait_for_selector(
            'section.bed[data-bed="bed-12"][data-daemon="offline"]', timeout=15_000
        )
        change = next(c for c in _alarm_changes(page) if c.get("daemon") == "offline")
        took = change["at"] / 1000 - stopped
        after_will = change["at"] / 1000 - (will_at() or 0.0) - wall_offset()
        print(f"SIGSTOP -> bed offline: {took:.2f} s; will -> page: {after_will:.3f} s")
        assert took >= 5.0, "offline before the keepalive could expire"
        assert after_will <= 1.0
        assert errors == []
    finally:
        page.close()
        station.stop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGCONT)
            daemon.kill()


def test_an_event_the_broker_sends_again_after_newer_ones_changes_nothing(
    broker: Mosquitto, browser: Any, pub: Any, tmp_path: Path
) -> None:
    # QoS 1 is at least once: a bridge whose link failed between a PUBLISH and its PUBACK
    # sends the event again, possibly after newer ones. An onset sent again after its end
    # must not put the bed back into alarm.
    ident, _ = _bed_on_air(pub, "pi-4", "bed-4", "ankle-l", "left", battery_pct=80)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    onset = {**ident, "id": "e-onset", "event": "clonus.onset", "episode": 1, "t": 10.0,
             "onset_t": 9.0, "beats": 6, "frequency_hz": 6.1, "time": now}  # fmt: skip
    end = {**onset, "id": "e-end", "event": "clonus.end", "beats": 14, "duration_s": 2.3}
    station = Station(broker.port, tmp_path)
    page, errors = _new_page(browser)
    tile = '[data-key="bed-4/ankle-l"]'
    try:
        page.goto(station.url)
        page.wait_for_selector(f'{tile}[data-alarm="none"]')
        _publish(pub, "clonusd/bed-4/ankle-l/event", onset, retain=False)
        page.wait_for_selector(f'{tile}[data-alarm="clonus"]')
        _publish(pub, "clonusd/bed-4/ankle-l/event", end, retain=False)
        page.wait_for_selector(f'{tile}[data-alarm="none"]')
        _publish(pub, "clonusd/bed-4/ankle-l/event", onset, retain=False)  # the resend
        until(page, "window.station.repeats === 1")
        page.wait_for_timeout(600)  # a few render ticks
        assert page.get_attribute(tile, "data-alarm") == "none"
        # A new event (its own id) is shown as ever.
        _publish(pub, "clonusd/bed-4/ankle-l/event", {**onset, "id": "e-next", "episode": 2},
                 retain=False)  # fmt: skip
        page.wait_for_selector(f'{tile}[data-alarm="clonus"]')
        assert page.evaluate("window.station.repeats") == 1
        assert errors == []
    finally:
        page.close()
        station.stop()
