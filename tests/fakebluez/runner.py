"""Run the fake bluetoothd in a background thread, for tests that start the daemon as a
separate process on the same private bus."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fakebluez.bluez import FakeBluez

T = TypeVar("T")


class FakeBluezThread:
    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.bluez = FakeBluez()
        self.run(self.bluez.start(address))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def crash_and_restart(self, address: str, down_s: float) -> None:
        """Kill bluetoothd, keep it down for down_s, start a fresh one with the same bands."""
        import time

        peripherals = [d.p for d in self.bluez.devices.values()]
        self.run(self.bluez.crash())
        time.sleep(down_s)
        self.bluez = FakeBluez()
        self.run(self.bluez.start(address))
        for p in peripherals:
            self.call(lambda p=p: self.bluez.add(p))

    def close(self) -> None:
        self.run(self.bluez.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
