"""BLE bands through bleak (the default BlueZ backend, unmodified).

A `BleSource` waits for its band's advertisement on the shared scanner (by address or
advertised name), connects in the operations lane, and lets the band's profile start the
stream. When the link drops it always calls `disconnect()` (bleak 3.1 otherwise leaks a
BlueZ notify session per reconnect) and waits for the next advertisement, so it is back
as soon as the band is in range. Failed attempts wait by what BlueZ said, with jitter.
Never restarts the host's Bluetooth.

Why not bleak-retry-connector: it pulls in bluetooth-adapters (with USB and UART device
lookups and an OUI database) for a retry loop and error table of some forty lines here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator

import numpy as np
import structlog
from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError

from clonusd.daemon.config import BleSource as BleConfig
from clonusd.daemon.sources.base import LinkStatus, SampleChunk, SourceItem
from clonusd.daemon.sources.ble.profiles import BandSetupError, make_profile
from clonusd.daemon.sources.ble.scanner import SharedScanner

log = structlog.get_logger("clonusd.ble")
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
HOLD_S = 0.02  # longest a small notification waits to be batched with the next ones


def retry_delay(exc: BaseException, attempt: int) -> tuple[float, str]:
    """How long to wait before the next try, and why, by what BlueZ said (with jitter)."""
    base, why = min(30.0, 1.0 * 2 ** min(attempt, 5)), "backoff"
    text = str(exc).lower()
    if isinstance(exc, BandSetupError):
        base, why = 30.0, "band refused its set-up"  # a setting to fix, not a glitch
    elif isinstance(exc, BleakDeviceNotFoundError):
        base, why = 0.5, "BlueZ forgot the device: scan again"
    elif "slot" in text:
        base, why = max(base, 4.0), "out of connection slots: let another link go first"
    elif "le-connection-abort-by-local" in text:
        base, why = 0.5, "connect aborted by the controller (interference or range)"
    elif isinstance(exc, BleakDBusError):
        if exc.dbus_error == "org.bluez.Error.InProgress":
            base, why = 2.0, "another connect or scan is under way"
        elif exc.dbus_error in (
            "org.freedesktop.DBus.Error.ServiceUnknown",
            "org.freedesktop.DBus.Error.NoReply",
            "org.freedesktop.DBus.Error.Disconnected",
        ):
            base, why = max(base, 5.0), "bluetoothd is gone or restarting (not restarted by us)"
    elif isinstance(exc, EOFError | ConnectionError):
        base, why = max(base, 5.0), "D-Bus connection lost"
    return float(base * random.uniform(0.75, 1.25)), why  # jitter, not crypto


def _coalesce(items: list[SourceItem]) -> list[SourceItem]:
    """Runs of sample chunks joined into one; link changes kept in their place."""
    out: list[SourceItem] = []
    run: list[SampleChunk] = []
    for item in [*items, None]:
        if isinstance(item, SampleChunk):
            run.append(item)
            continue
        if run:
            out.append(
                SampleChunk(
                    np.concatenate([c.t for c in run]),
                    np.vstack([c.x for c in run]),
                    run[-1].received,
                )
                if len(run) > 1
                else run[0]
            )
            run = []
        if item is not None:
            out.append(item)
    return out


class BleSource:
    """One band on a BLE link, whichever profile it speaks."""

    def __init__(self, cfg: BleConfig) -> None:
        self.cfg = cfg
        self.profile = make_profile(cfg)
        self.sensor = self.profile.sensor
        self.fs = self.profile.fs
        self.n_channels = self.profile.n_channels
        self._queue: asyncio.Queue[SourceItem] = asyncio.Queue(maxsize=10_000)
        self._lost = asyncio.Event()
        self._failure: BaseException | None = None
        self.reconnects = 0

    @property
    def malformed(self) -> int:
        return self.profile.stats.malformed

    @property
    def last_data_at(self) -> float | None:
        """When the band last sent anything (for the stall check: a stall is silence)."""
        return self.profile.last_data_at

    def force_reconnect(self, reason: str) -> None:
        """The stall alarm's lever: a link that says it is up but delivers nothing (a dead
        bluetoothd leaves bleak reporting "connected") is torn down and set up again."""
        if not self._lost.is_set():
            log.warning("ble_force_reconnect", reason=reason)
            self._lost.set()

    def _matches(self, device: BLEDevice, adv: AdvertisementData) -> bool:
        if self.cfg.address is not None:
            return device.address.upper() == self.cfg.address.upper()
        return self.cfg.name in (adv.local_name, device.name)

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
                batch = [await self._queue.get()]
                first = batch[0]
                if isinstance(first, SampleChunk) and first.t.size < self.fs * HOLD_S:
                    # Bands that notify one or two samples at a time: let a few more
                    # arrive (at most HOLD_S), so the detector runs on a batch, not on
                    # every notification. Costs HOLD_S of alarm latency at most.
                    await asyncio.sleep(HOLD_S)
                    batch += self._drain()
                # Checked after the wait too: a failure drained with the batch must not
                # leave the next get() waiting for ever.
                if self._failure is not None:
                    raise self._failure
                for item in _coalesce(batch):
                    yield item
        finally:
            runner.cancel()
            # Let the band be stopped and the link closed before the daemon exits.
            await asyncio.wait({runner}, timeout=5.0)

    def _drain(self) -> list[SourceItem]:
        items = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    def _runner_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._failure = task.exception()
            self._queue.put_nowait(LinkStatus(connected=False, detail="BLE source failed"))

    async def _run(self) -> None:
        scanner = SharedScanner.get()
        attempt = 0
        target = self.cfg.address or self.cfg.name
        while True:
            device = await scanner.find(self._matches, timeout=self.cfg.scan_timeout_s)
            if device is None:
                # Out of range or switched off: keep listening, no connect attempts.
                log.warning("ble_not_seen", band=target, scanned_s=self.cfg.scan_timeout_s)
                self._put(LinkStatus(connected=False, detail=f"{target} not seen, scanning"))
                continue
            try:
                await self._session(device, scanner)
                attempt = 0
            except (BleakError, TimeoutError, OSError, EOFError) as exc:
                delay, why = retry_delay(exc, attempt)
                attempt += 1
                log.log(
                    40 if isinstance(exc, BandSetupError) else 30,
                    "ble_retry",
                    error=str(exc) or type(exc).__name__,
                    reason=why,
                    retry_in_s=round(delay, 2),
                    attempt=attempt,
                )
                self._put(LinkStatus(connected=False, detail=f"retrying: {exc}"[:160]))
                await asyncio.sleep(delay)

    async def _session(self, device: BLEDevice, scanner: SharedScanner) -> None:
        self._lost.clear()
        client = BleakClient(
            device,
            disconnected_callback=lambda _c: self._lost.set(),
            timeout=self.cfg.connect_timeout_s,
        )
        try:
            async with scanner.lane():
                await client.connect()
                await self.profile.start(client, self._put)
                battery = await self._battery(client)
            self._put(
                LinkStatus(
                    connected=True, battery_pct=battery, detail=f"{device.name} {device.address}"
                )
            )
            log.info(
                "ble_connected",
                address=device.address,
                name=device.name,
                profile=self.cfg.profile,
                battery_pct=battery,
            )
            await self._lost.wait()
            self.reconnects += 1
            self._put(LinkStatus(connected=False, battery_pct=battery, detail="link lost"))
            log.warning("ble_link_lost", address=device.address)
        finally:
            if client.is_connected and not self._lost.is_set():
                # Shutting down: stop the stream so the band does not drain its battery.
                with contextlib.suppress(BleakError, TimeoutError, OSError):
                    async with asyncio.timeout(2.0):
                        await self.profile.stop(client)
            try:
                await client.disconnect()  # always, even after a remote drop
            except (BleakError, TimeoutError, OSError) as exc:
                log.info("ble_disconnect_error", error=str(exc))

    async def _battery(self, client: BleakClient) -> int | None:
        try:
            return int((await client.read_gatt_char(BATTERY_LEVEL))[0])
        except (BleakError, IndexError):
            return None
