"""BLE bands through bleak (the default BlueZ backend, unmodified).

A `BleSource` finds its band by address or advertised name, connects, subscribes, and
turns notifications into sample chunks through the band's parser. When the link drops it
always calls `disconnect()` (bleak 3.1 otherwise leaks a BlueZ notify session per
reconnect), then reconnects with exponential backoff and jitter, scanning again first so
a device BlueZ has forgotten is found afresh. Never restarts the host's Bluetooth.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import numpy as np
import structlog
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakDBusError, BleakError

from daemon.bands import movesense as gsp
from daemon.bands.base import BandSamples
from daemon.config import BleSource as BleConfig
from daemon.sources import LinkStatus, SampleChunk, SourceItem

log = structlog.get_logger("clonusd.ble")
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
REF = 0x63


def retry_delay(exc: BaseException, attempt: int) -> float:
    """How long to wait before the next try, by what BlueZ said (with jitter)."""
    base = min(30.0, 1.0 * 2 ** min(attempt, 5))
    if isinstance(exc, BleakDBusError):
        if exc.dbus_error == "org.bluez.Error.InProgress":
            base = 2.0  # another connect/scan is under way: give it time to finish
        elif exc.dbus_error in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NoReply",
        ):
            base = max(base, 5.0)  # bluetoothd is gone or restarting: wait, do not restart it
        elif "le-connection-abort-by-local" in str(exc):
            base = 1.0
        elif exc.dbus_error == "org.bluez.Error.Failed" and "slot" in str(exc).lower():
            base = max(base, 10.0)  # out of connection slots: let another link go first
    return float(base * random.uniform(0.75, 1.25))  # jitter, not crypto


class BleSource:
    """A Movesense band streaming IMU6 over GSP (other profiles plug in the same way)."""

    def __init__(self, cfg: BleConfig) -> None:
        self.cfg = cfg
        self.sensor = "imu6"
        self.fs = float(cfg.rate_hz)
        self.n_channels = 6
        self.parser = gsp.MovesenseParser("IMU6", cfg.rate_hz, ref=REF)
        self._queue: asyncio.Queue[SourceItem] = asyncio.Queue(maxsize=10_000)
        self._lost = asyncio.Event()
        self._failure: BaseException | None = None
        self.reconnects = 0

    @property
    def malformed(self) -> int:
        return self.parser.stats.malformed

    def force_reconnect(self, reason: str) -> None:
        """The stall alarm's lever: a link that says it is up but delivers nothing (a dead
        bluetoothd leaves bleak reporting "connected") is torn down and set up again."""
        if not self._lost.is_set():
            log.warning("ble_force_reconnect", reason=reason)
            self._lost.set()

    def _matches(self, device: BLEDevice, _adv: object) -> bool:
        if self.cfg.address is not None:
            return device.address.upper() == self.cfg.address.upper()
        return device.name is not None and device.name == self.cfg.name

    def _on_notify(self, _char: object, data: bytearray) -> None:
        now = time.monotonic()
        for s in self.parser.feed(bytes(data)):
            self._put(self._chunk(s, now))

    def _chunk(self, s: BandSamples, received: float) -> SampleChunk:
        assert s.acc is not None and s.gyr is not None
        t = s.device_t if s.device_t is not None else received + np.arange(s.n) / self.fs
        return SampleChunk(np.asarray(t), np.hstack([s.acc, s.gyr]), received)

    def _put(self, item: SourceItem) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            log.warning("sample_queue_full", dropped=1)

    async def stream(self) -> AsyncIterator[SourceItem]:
        runner = asyncio.create_task(self._run())
        # A failure the retry loop does not expect must end the stream (and so the
        # pipeline, and systemd restarts the daemon) instead of leaving it waiting forever.
        runner.add_done_callback(self._runner_done)
        try:
            while True:
                item = await self._queue.get()
                if self._failure is not None:
                    raise self._failure
                yield item
        finally:
            runner.cancel()

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._queue.put_nowait(LinkStatus(connected=False, detail="BLE source failed"))

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._session()
                attempt = 0
            except (BleakError, TimeoutError, OSError) as exc:
                delay = retry_delay(exc, attempt)
                attempt += 1
                log.warning(
                    "ble_retry",
                    error=str(exc) or type(exc).__name__,
                    retry_in_s=round(delay, 2),
                    attempt=attempt,
                )
                self._put(LinkStatus(connected=False, detail=f"retrying: {exc}"[:120]))
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        device = await BleakScanner.find_device_by_filter(
            self._matches, timeout=self.cfg.scan_timeout_s
        )
        if device is None:
            raise BleakError(f"band {self.cfg.address or self.cfg.name!r} not found")
        self._lost.clear()
        client = BleakClient(
            device,
            disconnected_callback=lambda _c: self._lost.set(),
            timeout=self.cfg.connect_timeout_s,
        )
        await client.connect()
        try:
            await client.start_notify(gsp.DATA, self._on_notify)
            await client.write_gatt_char(
                gsp.COMMAND, gsp.subscribe(REF, "IMU6", self.cfg.rate_hz), response=True
            )
            battery = await self._battery(client)
            self._put(
                LinkStatus(
                    connected=True, battery_pct=battery, detail=f"{device.name} {device.address}"
                )
            )
            log.info("ble_connected", address=device.address, name=device.name, battery_pct=battery)
            await self._lost.wait()
            self.reconnects += 1
            self._put(LinkStatus(connected=False, battery_pct=battery, detail="link lost"))
            log.warning("ble_link_lost", address=device.address)
        finally:
            try:
                await client.disconnect()  # always, even after a remote drop
            except BleakError as exc:
                log.info("ble_disconnect_error", error=str(exc))

    async def _battery(self, client: BleakClient) -> int | None:
        try:
            return int((await client.read_gatt_char(BATTERY_LEVEL))[0])
        except (BleakError, IndexError):
            return None
