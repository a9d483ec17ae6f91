"""One scanner and one operations lane for every band on the adapter.

BlueZ answers overlapping scan starts and connects with `InProgress`, and some adapters
abort a connect while discovery runs (`le-connection-abort-by-local`). So all bands
share one `BleakScanner`; a band that wants its link back registers what it looks for
and is woken by the very advertisement that shows it is in range again. Connects and
GATT set-up run one at a time in `lane()`, with scanning paused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import structlog
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

log = structlog.get_logger("clonusd.ble")
Matcher = Callable[[BLEDevice, AdvertisementData], bool]


class SharedScanner:
    """Scans while any band is waiting for its advertisement, and only then."""

    _by_loop: ClassVar[dict[asyncio.AbstractEventLoop, SharedScanner]] = {}

    @classmethod
    def get(cls) -> SharedScanner:
        loop = asyncio.get_running_loop()
        if loop not in cls._by_loop:
            cls._by_loop = {lp: s for lp, s in cls._by_loop.items() if not lp.is_closed()}
            cls._by_loop[loop] = cls()
        return cls._by_loop[loop]

    def __init__(self) -> None:
        self._waiters: dict[int, tuple[Matcher, asyncio.Future[BLEDevice]]] = {}
        self._next_key = 0
        self._lane = asyncio.Lock()
        self._scanner: BleakScanner | None = None
        self._stopping: asyncio.Task[None] | None = None  # held so it is not collected

    async def find(self, matcher: Matcher, timeout: float) -> BLEDevice | None:
        """The device from the next advertisement `matcher` accepts, or None on timeout."""
        fut: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
        key, self._next_key = self._next_key, self._next_key + 1
        self._waiters[key] = (matcher, fut)
        try:
            await self._set_scanning()
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        finally:
            del self._waiters[key]
            if not self._waiters:
                # Let a band that is about to look again keep the scan running.
                asyncio.get_running_loop().call_later(1.0, self._stop_if_idle)

    @contextlib.asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        """Hold for a connect and its GATT set-up: nothing else talks to BlueZ meanwhile."""
        async with self._lane:
            await self._stop()
            try:
                yield
            finally:
                if self._waiters:
                    await self._start()

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData) -> None:
        for matcher, fut in list(self._waiters.values()):
            if not fut.done() and matcher(device, adv):
                fut.set_result(device)

    async def _set_scanning(self) -> None:
        async with self._lane:
            if self._waiters and self._scanner is None:
                await self._start()

    def _stop_if_idle(self) -> None:
        if not self._waiters and self._scanner is not None and not self._lane.locked():
            self._stopping = asyncio.get_running_loop().create_task(self._stop_locked())

    async def _stop_locked(self) -> None:
        async with self._lane:
            if not self._waiters:
                await self._stop()

    async def _start(self) -> None:
        scanner = BleakScanner(detection_callback=self._on_advert)
        try:
            await scanner.start()
        except BleakError as exc:
            # bluetoothd down or busy: the waiting bands time out and try again.
            log.warning("ble_scan_failed", error=str(exc))
            return
        self._scanner = scanner

    async def _stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                await scanner.stop()
            except BleakError as exc:
                log.info("ble_scan_stop_failed", error=str(exc))
