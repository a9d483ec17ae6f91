"""The central station for tests: `clonusd web` as a process, and headless Chromium.

Chromium is Debian's (`apt-get install chromium`), driven by Playwright's Python package;
no browser is downloaded. Without them the browser tests skip, except under CI=true,
where they fail: CI must install both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# A tile's alarm changes, recorded by the page's own clock (Date.now) the moment the DOM
# changes: independent of the page's code, which only sets data-alarm.
OBSERVER = """
window.__alarms = [];
new MutationObserver((records) => {
  for (const r of records) {
    const t = r.target;
    if (t.dataset && t.dataset.key && r.attributeName === "data-alarm") {
      window.__alarms.push({key: t.dataset.key, alarm: t.dataset.alarm, at: Date.now()});
    }
    if (t.dataset && t.dataset.bed && r.attributeName === "data-daemon") {
      window.__alarms.push({bed: t.dataset.bed, daemon: t.dataset.daemon, at: Date.now()});
    }
  }
}).observe(document, {subtree: true, attributes: true,
                      attributeFilter: ["data-alarm", "data-daemon"]});
"""


def need_browser() -> Any:
    """Playwright's sync API, or skip (fail under CI) when it or chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(CHROMIUM).exists():
        why = "needs Debian's chromium and the [browser] extra (playwright)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return sync_playwright


class Station:
    """`clonusd web` on a free loopback port."""

    def __init__(self, broker_port: int, workdir: Path, *extra: str) -> None:
        self.log = workdir / "web.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clonusd.daemon.cli",
                "web",
                "--broker",
                f"127.0.0.1:{broker_port}",
                "--listen",
                "127.0.0.1:0",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log.open("a"),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "clonusd web: http://127.0.0.1:PORT/ ..."
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"clonusd web did not start: {line!r} {self.log.read_text()}")
        self.url = line.split()[2]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def until(page: Any, expression: str, timeout: float = 5.0) -> None:
    """Wait until a JS expression is true. (wait_for_function evaluates its string with
    eval, which the page's Content-Security-Policy rightly refuses.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {expression}")
        page.wait_for_timeout(50)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


def wall_offset() -> float:
    """Add to time.monotonic() for the wall clock (the browser's Date.now() / 1000)."""
    return time.time() - time.monotonic()
