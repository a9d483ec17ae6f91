"""The central station, measured: an event's publish -> the page's DOM change, 20 beds.

    python benchmarks/web.py [EVENTS]

A private Mosquitto, `clonusd web` and headless Chromium (Debian's, driven by
Playwright). A publisher plays 20 daemons (one per bed: availability, status, a day's
history with its evidence, then onsets and ends) so the publish time is known exactly;
the page's own MutationObserver stamps each tile's alarm change with Date.now(). Prints
p50/p99/max of publish -> red tile (onset) and publish -> cleared tile (end).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broker import Mosquitto  # type: ignore[import-not-found]
from station import (  # type: ignore[import-not-found]
    CHROMIUM,
    CHROMIUM_ARGS,
    OBSERVER,
    Station,
    until,
)

BEDS = 20


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())


def _ident(bed: int) -> dict[str, Any]:
    return {
        "schema": "clonusd/2",
        "time": _now_iso(),
        "daemon": f"pi-{bed}",
        "bed": f"bed-{bed:02d}",
        "sensor": "ankle-l",
        "site": "ankle",
        "side": "left",
    }


def _retained(client: mqtt.Client, bed: int) -> None:
    base = f"clonusd/bed-{bed:02d}/ankle-l"
    avail = {"schema": "clonusd/2", "daemon": f"pi-{bed}", "state": "online", "reason": "x"}
    client.publish(f"clonusd/daemon/pi-{bed}/availability", json.dumps(avail), 1, True)
    status = {
        **_ident(bed),
        "sensor_kind": "imu6",
        "link": "connected",
        "rate_hz": 200.0,
        "nominal_rate_hz": 200.0,
        "packet_loss": 0.0,
        "battery_pct": 80,
        "quality": "ok",
        "stalled": False,
    }
    client.publish(f"{base}/status", json.dumps(status), 1, True)
    episodes = []
    for k in range(5):  # five earlier episodes, each with its evidence snippet
        eid = str(uuid.uuid4())
        y = np.sin(2 * np.pi * 5.5 * np.arange(400) / 66.7) * 900
        beats = [2.0 + j / 5.5 for j in range(12)]
        ev = {**_ident(bed), "episode": k + 1, "episode_id": eid, "final": True,
              "signal": "gyroscope, band-passed, principal axis", "unit": "deg/s",
              "fs_hz": 66.667, "t0": 0.0, "onset_s": 2.0, "last_beat_s": beats[-1],
              "scale": 0.1, "samples": [int(v) for v in y], "beats_s": beats,
              "beats_total": 12, "truncated": False}  # fmt: skip
        client.publish(f"{base}/evidence/{eid}", json.dumps(ev), 1, True)
        episodes.append({"episode_id": eid, "episode": k + 1, "onset": _now_iso(),
                         "end": _now_iso(), "end_epoch": time.time(), "duration_s": 2.0,
                         "beats": 12, "frequency_hz": 5.5, "end_reason": "rhythm_stopped",
                         "evidence": f"bed-{bed:02d}/ankle-l/evidence/{eid}"})  # fmt: skip
    client.publish(f"{base}/history", json.dumps({**_ident(bed), "episodes": episodes}), 1, True)
    client.publish(f"{base}/state", json.dumps({**_ident(bed), "clonus": False}), 1, True)


def _event(client: mqtt.Client, bed: int, episode: int, onset: bool) -> float:
    base = f"clonusd/bed-{bed:02d}/ankle-l"
    figures = {"episode": episode, "beats": 6, "frequency_hz": 5.5, "amplitude": 60.0,
               "amplitude_unit": "deg/s", "onset_t": 10.0, "t": 11.0}  # fmt: skip
    kind = "clonus.onset" if onset else "clonus.end"
    event = {**_ident(bed), "id": str(uuid.uuid4()), "event": kind, **figures}
    if not onset:
        event.update(duration_s=1.0, end_reason="rhythm_stopped")
    at = time.time()
    client.publish(f"{base}/event", json.dumps(event), 1, False)
    state = {**_ident(bed), "clonus": onset, **(figures if onset else {})}
    client.publish(f"{base}/state", json.dumps(state), 1, True)
    return at


def main() -> int:
    from playwright.sync_api import sync_playwright

    n_events = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        broker.start()
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        station: Station | None = None
        try:
            for bed in range(BEDS):
                _retained(pub, bed)
            station = Station(broker.port, work)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.add_init_script(OBSERVER)
                page.goto(station.url)
                until(page, f"document.querySelectorAll('.tile').length == {BEDS}", 20)
                until(page, f"document.querySelectorAll('.episode svg').length == {5 * BEDS}", 20)
                sent: list[tuple[str, str, float]] = []
                active = [False] * BEDS
                for i in range(n_events):
                    bed = i % BEDS
                    active[bed] = not active[bed]
                    at = _event(pub, bed, i // BEDS + 1, active[bed])
                    sent.append((f"bed-{bed:02d}/ankle-l", "clonus" if active[bed] else "none", at))
                    time.sleep(0.05)
                time.sleep(1.0)
                changes = page.evaluate("window.__alarms")
                browser.close()
        finally:
            if station is not None:
                station.stop()
            pub.loop_stop()
            pub.disconnect()
            broker.stop()
    lat: dict[str, list[float]] = {"clonus": [], "none": []}
    missed = 0
    for key, alarm, at in sent:
        seen = [c["at"] / 1000 for c in changes if c.get("key") == key and c.get("alarm") == alarm]
        after = [s for s in seen if s >= at - 0.002]
        if not after:
            missed += 1
            continue
        lat[alarm].append(min(after) - at)
    print(f"central station, {BEDS} beds, {n_events} events ({missed} without a DOM change)")
    for alarm, name in (("clonus", "onset -> red tile"), ("none", "end -> tile cleared")):
        ms = np.array(lat[alarm]) * 1000
        print(
            f"  {name:20s} p50 {np.percentile(ms, 50):6.1f} ms   p99 {np.percentile(ms, 99):6.1f}"
            f" ms   max {ms.max():6.1f} ms   (n={ms.size})"
        )
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
