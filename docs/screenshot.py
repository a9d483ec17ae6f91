"""Regenerates docs/central-station.png: three simulated daemons (synthetic signals, not
patients) on a private Mosquitto, one killed, one bed in alarm, seen in headless Chromium.

    python docs/screenshot.py [OUT.png]      # needs mosquitto, chromium, the [browser] extra

The README's copy was then reduced with `pngquant --quality 60-85`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from broker import Daemon, Mosquitto, write_config  # type: ignore[import-not-found]
from station import CHROMIUM, CHROMIUM_ARGS, Station, until  # type: ignore[import-not-found]

BAND = 'kind = "simulated"\nsensor = "imu6"\nfs_hz = 200\n'
SECOND_SENSOR = """
[[sensors]]
id = "ankle-r"
bed = "bed-7"
site = "ankle"
side = "right"
[sensors.source]
kind = "simulated"
sensor = "imu6"
fs_hz = 200
episodes = []
"""
RED = "rgb(224, 0, 27)"  # the bright phase of the 2 Hz flash


def main() -> int:
    from playwright.sync_api import sync_playwright

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/central-station.png")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Mosquitto(work)
        broker.start()

        def daemon(name: str, bed: str, episodes: str, extra: str = "") -> Daemon:
            cfg = write_config(
                work / f"{name}.toml",
                broker.port,
                work / f"state-{name}",
                [],
                source=BAND + f"episodes = [{episodes}]",
                daemon_id=name,
                bed=bed,
            )
            cfg.write_text(cfg.read_text() + extra)
            return Daemon(cfg)

        daemons = [
            daemon(
                "pi-12",
                "bed-12",
                "{at_s = 3, beats = 14}, {at_s = 14, beats = 80, frequency_hz = 6}",
            ),
            daemon("pi-07", "bed-7", "{at_s = 4, beats = 10, frequency_hz = 6.5}", SECOND_SENSOR),
            daemon("pi-03", "bed-3", ""),
        ]
        station = Station(broker.port, work)
        try:
            for d in daemons:
                d.start()
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(station.url)
                page.fill("#nurse", "A. Nurse")
                page.click("#sound")
                page.wait_for_selector('[data-key="bed-3/ankle-l"]', timeout=30_000)
                page.wait_for_selector('[data-key="bed-12/ankle-l"]', timeout=30_000)
                time.sleep(2)
                daemons[2].kill()
                until(
                    page,
                    "document.querySelectorAll('.episode svg[data-final=true]').length >= 2",
                    40,
                )
                tile = '[data-key="bed-12/ankle-l"]'
                page.wait_for_selector(f'{tile}[data-alarm="clonus"]', timeout=30_000)
                time.sleep(3.0)
                until(
                    page,
                    f"getComputedStyle(document.querySelector('{tile}'))"
                    f".backgroundColor == '{RED}'",
                    3,
                )
                page.screenshot(path=str(out), full_page=True)
                browser.close()
        finally:
            station.stop()
            for d in daemons:
                if d.proc is not None and d.proc.poll() is None:
                    d.kill()
            broker.stop()
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
