"""What each band needs on a live link: its start and stop sequence, and its samples.

A profile sits between bleak's client and a pure parser from `daemon.bands`: it
subscribes, writes the band's start commands, turns decoded notifications into sample
chunks in SI units on one time axis, and stops the band before the link is closed (an
unstopped Polar or Movesense stream drains the band's battery). All profiles share one
interface, so the BLE source's connection handling is the same for every band.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import structlog
from bleak import BleakClient
from bleak.exc import BleakError

from clonusd.daemon.config import BleSource as BleConfig
from clonusd.daemon.sources.base import SampleChunk
from clonusd.daemon.sources.ble.bands import movesense as gsp
from clonusd.daemon.sources.ble.bands import myo, polar, thingy, witmotion
from clonusd.daemon.sources.ble.bands.base import BandSamples, FloatArray, Parser, ParserStats

log = structlog.get_logger("clonusd.ble")
Emit = Callable[[SampleChunk], None]


async def read_model_number(client: BleakClient) -> str | None:
    """The Model Number String of the connected band's Device Information Service, or
    None when the band has none (`clonusd scan` and the Polar set-up both ask it)."""
    if client.services.get_characteristic(polar.MODEL_NUMBER) is None:
        return None
    return polar.model_number(bytes(await client.read_gatt_char(polar.MODEL_NUMBER)))


class BandSetupError(BleakError):
    """The band refused its start sequence (wrong rate, MTU too small, no such sensor).

    Retrying soon will not help; the message says what to change."""


class DeviceClock:
    """Device timestamps onto the host's monotonic axis: the band's own spacing between
    samples, anchored once per link session (a band's clock may restart with the band)."""

    def __init__(self) -> None:
        self._offset: float | None = None
        self._last = -np.inf

    def reset(self) -> None:
        self._offset = None

    def map(self, device_t: FloatArray, received: float) -> FloatArray:
        if self._offset is None or device_t[0] + self._offset <= self._last:
            self._offset = received - float(device_t[-1])
            # Never step back in time, even if the old anchor ran ahead of arrivals.
            self._offset += max(0.0, self._last + 1e-3 - (device_t[0] + self._offset))
        t = device_t + self._offset
        self._last = float(t[-1])
        return t


class HostClock:
    """Sample times for bands with no clock: evenly spaced at the nominal rate, re-anchored
    to the arrival time when arrivals fall behind by more than a burst (a loss or a slower
    band; the detector then sees the gap) or when the schedule runs ahead of now."""

    def __init__(self, fs: float) -> None:
        self.period = 1.0 / fs
        self._last: float | None = None
        self.slack = max(0.1, 6 * self.period)

    def reset(self) -> None:
        self._last = None

    def times(self, n: int, received: float) -> FloatArray:
        last = self._last
        if last is None or received - (last + n * self.period) > self.slack:
            last = received - n * self.period
        # A schedule ahead of arrivals (a band slightly faster than nominal) is kept:
        # stepping back would break the strictly increasing time axis.
        t: FloatArray = last + self.period * np.arange(1, n + 1, dtype=np.float64)
        self._last = float(t[-1])
        return t


class BandProfile:
    """The base every band's profile fills in."""

    name: ClassVar[str]
    parser: Parser  # bands whose notifications all go through one parser

    def __init__(self, cfg: BleConfig) -> None:
        self.cfg = cfg
        self.sensor = cfg.sensor_kind
        self.fs = float(cfg.rate)
        self.n_channels = 6 if self.sensor == "imu6" else 3 if self.sensor == "acc3" else 1
        self.stats = ParserStats()
        self.last_data_at: float | None = None  # host time of the last notification
        self._emit: Emit | None = None
        self.device_clock = DeviceClock()
        self.host_clock = HostClock(self.fs)

    async def start(self, client: BleakClient, emit: Emit) -> None:
        """Subscribe and start streaming; samples go to `emit` from now on."""
        self._emit = emit
        self.device_clock.reset()
        self.host_clock.reset()
        await self._start(client)

    async def stop(self, client: BleakClient) -> None:
        """Stop the band's stream (best effort: the link may already be gone)."""
        await self._stop(client)

    async def _start(self, client: BleakClient) -> None:
        raise NotImplementedError

    async def _stop(self, client: BleakClient) -> None:
        return None

    def _on_data(self, _c: object, data: bytearray) -> None:
        now = self.last_data_at = time.monotonic()
        for s in self.parser.feed(bytes(data)):
            self._send(s, now)

    def _send(self, s: BandSamples, received: float) -> None:
        if self._emit is None or s.n == 0:
            return
        if self.sensor == "emg":
            x = s.emg
        elif self.sensor == "imu6":
            x = None if s.acc is None or s.gyr is None else np.hstack([s.acc, s.gyr])
        else:
            x = s.acc
        if x is None:
            return
        t = (
            self.device_clock.map(s.device_t, received)
            if s.device_t is not None
            else self.host_clock.times(s.n, received)
        )
        self._emit(SampleChunk(t, x, received))


class MovesenseProfile(BandProfile):
    """Movesense GSP: notifications on before SUBSCRIBE /Meas/IMU6/<rate> (or /Meas/Acc
    for an acc3 sensor), as the official clients do; UNSUBSCRIBE on stop."""

    name = "movesense"
    ref = 0x63

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        self.resource = "IMU6" if self.sensor == "imu6" else "Acc"
        self.parser = gsp.MovesenseParser(self.resource, cfg.rate, ref=self.ref)
        self.stats = self.parser.stats

    async def _start(self, client: BleakClient) -> None:
        await client.start_notify(gsp.DATA, self._on_data)
        await client.write_gatt_char(
            gsp.COMMAND, gsp.subscribe(self.ref, self.resource, self.cfg.rate), response=True
        )

    async def _stop(self, client: BleakClient) -> None:
        await client.write_gatt_char(gsp.COMMAND, gsp.unsubscribe(self.ref), response=True)


class PolarProfile(BandProfile):
    """Polar PMD: H10 accelerometer (acc3) or Verity Sense accelerometer + gyroscope
    (imu6). Checks the MTU (PMD needs 232), enables control-point indications before
    any command, puts a Verity Sense in SDK mode for a rate other than 52 Hz, asks the
    band which settings it offers, starts each measurement with them and keeps the FACTOR
    each start reply carries; STOP on stop (and SDK mode off again)."""

    name = "polar"

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        self.model = polar.MODELS[cfg.polar_model or "verity"]
        self.sdk_mode = self.model.key == "verity" and cfg.rate not in self.model.normal_rates
        self.model_number: str | None = None  # what the band's Device Information says
        self.types = [polar.ACC, polar.GYRO] if self.sensor == "imu6" else [polar.ACC]
        self.parsers = {m: polar.PolarParser(m, self.fs) for m in self.types}
        for p in self.parsers.values():
            p.stats = self.stats  # one count of malformed frames for the band
        self._replies: asyncio.Queue[polar.ControlResponse] = asyncio.Queue()
        self._pending: dict[int, tuple[FloatArray, FloatArray]] = {}
        self.unpaired = 0  # samples whose pair the other stream lost

    def _on_control(self, _c: object, data: bytearray) -> None:
        reply = polar.parse_control(bytes(data))
        if reply is None:
            self.stats.ignored += 1  # e.g. the device-initiated "measurement stopped"
            return
        self._replies.put_nowait(reply)

    def _on_data(self, _c: object, data: bytearray) -> None:
        now = self.last_data_at = time.monotonic()
        mtype = data[0] & 0x3F if data else -1
        parser = self.parsers.get(mtype)
        if parser is None:
            self.stats.packets += 1
            self.stats.bad(f"frame of measurement type {mtype}, not started")
            return
        for s in parser.feed(bytes(data)):
            assert s.device_t is not None
            values = s.acc if s.acc is not None else s.gyr
            assert values is not None
            if len(self.types) == 1:
                self._send(s, now)
            else:
                self._merge(mtype, s.device_t, values, now)

    def _merge(self, mtype: int, t: FloatArray, values: FloatArray, now: float) -> None:
        """ACC and GYRO arrive as separate frames, each stamped by the band's clock: pair
        their samples by time (within half a period). A sample the other stream has gone
        past without a partner lost it to a dropped frame: it is left out, so the loss is
        a gap in the paired stream, never a shift of one stream against the other. What
        the other stream has not reached yet waits, for at most two seconds."""
        old_t, old_v = self._pending.get(mtype, (t[:0], values[:0]))
        self._pending[mtype] = (np.concatenate([old_t, t]), np.vstack([old_v, values]))
        acc, gyr = self._pending.get(polar.ACC), self._pending.get(polar.GYRO)
        if acc is None or gyr is None or not acc[0].size or not gyr[0].size:
            self._bound()
            return
        (at, av), (gt, gv) = acc, gyr
        tol = 0.5 / self.fs
        horizon = min(at[-1], gt[-1]) + tol  # past this the other stream may still come
        j = np.clip(np.searchsorted(gt, at), 1, gt.size) - 1
        nxt = np.minimum(j + 1, gt.size - 1)
        pick = np.where(np.abs(gt[nxt] - at) < np.abs(gt[j] - at), nxt, j)
        paired = np.abs(gt[pick] - at) <= tol
        ready_a, ready_g = at <= horizon, gt <= horizon
        use = paired & ready_a
        taken = np.zeros(gt.size, dtype=bool)
        taken[pick[use]] = True
        self.unpaired += int(np.count_nonzero(ready_a & ~use))
        self.unpaired += int(np.count_nonzero(ready_g & ~taken))
        self._pending[polar.ACC] = (at[~ready_a], av[~ready_a])
        self._pending[polar.GYRO] = (gt[~ready_g], gv[~ready_g])
        n = int(np.count_nonzero(use))
        if n:
            self._send(BandSamples(n, at[use], acc=av[use], gyr=gv[pick[use]]), now)
        self._bound()

    def _bound(self) -> None:
        """A stream that stopped must not let the other's backlog grow without end."""
        limit = int(2 * self.fs)
        for mtype, (t, v) in self._pending.items():
            if t.size > limit:
                self.unpaired += t.size - limit
                self._pending[mtype] = (t[-limit:], v[-limit:])

    async def _command(self, client: BleakClient, data: bytes) -> polar.ControlResponse:
        while not self._replies.empty():
            self._replies.get_nowait()
        await client.write_gatt_char(polar.CONTROL, data, response=True)
        try:
            async with asyncio.timeout(5.0):
                while True:
                    reply = await self._replies.get()
                    if reply.opcode == data[0] and reply.mtype == data[1]:
                        return reply
        except TimeoutError:
            raise BleakError(f"Polar control point: no reply to {data.hex(' ')}") from None

    async def _start(self, client: BleakClient) -> None:
        self._pending.clear()
        char = client.services.get_characteristic(polar.DATA)
        if char is None:
            raise BandSetupError("no Polar PMD data characteristic: is this a Polar band?")
        mtu = char.max_write_without_response_size + 3
        if mtu < polar.MIN_MTU:
            raise BandSetupError(
                f"ATT MTU is {mtu}, Polar PMD needs at least {polar.MIN_MTU}; "
                "the adapter or BlueZ did not negotiate a large enough MTU"
            )
        await self._check_model(client)
        features = bytes(await client.read_gatt_char(polar.CONTROL))
        await client.start_notify(polar.CONTROL, self._on_control)
        await client.start_notify(polar.DATA, self._on_data)
        if self.sdk_mode:
            await self._enter_sdk_mode(client, features)
        for mtype in self.types:
            if len(features) < 2 or not features[1] & (1 << mtype):
                what = "accelerometer" if mtype == polar.ACC else "gyroscope"
                raise BandSetupError(
                    f"this Polar band has no {what} stream (features {features.hex()})"
                )
            reply = await self._command(client, polar.get_settings(mtype))
            if not reply.ok:
                raise BandSetupError(f"Polar settings query refused: {reply.status_name}")
            try:
                offered = polar.parse_settings(reply.params)
            except ValueError as exc:
                self.stats.bad(f"settings reply: {exc}")
                raise BandSetupError(f"Polar settings reply unreadable: {exc}") from None
            settings = self._choose(mtype, offered)
            reply = await self._command(client, polar.start(mtype, settings))
            if reply.status == 6:  # ALREADY_IN_STATE: a stream we did not stop; restart it
                await self._command(client, polar.stop(mtype))
                reply = await self._command(client, polar.start(mtype, settings))
            if not reply.ok:
                raise BandSetupError(f"Polar start refused: {reply.status_name}")
            self.parsers[mtype].restart(reply.factor())

    async def _check_model(self, client: BleakClient) -> None:
        """The band's Model Number String, when it has one, must name the model the config
        was checked against (by its `model` or the advertised name): an H10 driven as a
        Verity Sense would be refused its gyroscope, or a rate, at every retry."""
        self.model_number = await read_model_number(client)
        if self.model_number is None:
            return
        said = polar.model_from_number(self.model_number)
        log.info("polar_model", model_number=self.model_number, model=said and said.key)
        if said is not None and said.key != self.model.key:
            raise BandSetupError(
                f"this band says it is a {said.label} (model number {self.model_number!r}), "
                f'not a {self.model.label}: set model = "{said.key}" and a sensor and '
                "rate_hz it offers (clonusd check-config says which)"
            )

    async def _enter_sdk_mode(self, client: BleakClient, features: bytes) -> None:
        """Verity Sense: ACC/GYRO at 26-416 Hz need SDK mode (it turns the band's own
        HR/PPI algorithms off until it is left again). Asked even when the features do
        not list it (some firmware may not say): the band's answer decides."""
        listed = len(features) >= 3 and bool(features[2] & (1 << (polar.SDK_MODE - 8)))
        reply = await self._command(client, polar.start(polar.SDK_MODE, {}))
        if not reply.ok and reply.status != 6:  # ALREADY_IN_STATE: it is in SDK mode
            why = "" if listed else ", and its features do not list it (firmware 1.1.5+ has it)"
            raise BandSetupError(
                f"Verity Sense refused SDK mode ({reply.status_name}{why}), which rate_hz "
                f"{self.cfg.rate} needs; rate_hz = 52 needs none"
            )

    def _choose(self, mtype: int, offered: dict[int, list[int]]) -> dict[int, int]:
        rates = offered.get(polar.SAMPLE_RATE, [])
        if self.cfg.rate not in rates:
            raise BandSetupError(
                f"this Polar band offers {rates} Hz, not rate_hz {self.cfg.rate}; set one of them"
            )
        settings = {polar.SAMPLE_RATE: self.cfg.rate}
        for kind, prefer in (
            (polar.RESOLUTION, 16),
            (polar.RANGE, 8 if mtype == polar.ACC else 2000),
        ):
            values = offered.get(kind)
            if values:
                settings[kind] = prefer if prefer in values else max(values)
        if polar.CHANNELS in offered:
            settings[polar.CHANNELS] = 3
        return settings

    async def _stop(self, client: BleakClient) -> None:
        for mtype in self.types:
            await client.write_gatt_char(polar.CONTROL, polar.stop(mtype), response=True)
        if self.sdk_mode:
            await client.write_gatt_char(polar.CONTROL, polar.stop(polar.SDK_MODE), response=True)


class ThingyProfile(BandProfile):
    """Nordic Thingy:52: read-modify-write the motion rate in the config characteristic,
    then enabling notifications on raw motion starts the stream (and disabling stops it)."""

    name = "thingy52"

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        self.parser = thingy.ThingyParser()
        self.stats = self.parser.stats

    async def _start(self, client: BleakClient) -> None:
        current = bytes(await client.read_gatt_char(thingy.CONFIG))
        if len(current) != 9:
            current = thingy.DEFAULT_CONFIG
        await client.write_gatt_char(
            thingy.CONFIG, thingy.config_with_rate(current, self.cfg.rate), response=True
        )
        await client.start_notify(thingy.RAW, self._on_data)

    async def _stop(self, client: BleakClient) -> None:
        await client.stop_notify(thingy.RAW)


class WitMotionProfile(BandProfile):
    """WitMotion BWT901BLE: unlock, set the output rate, save (all three awaited: the
    vendor's own example forgets to, and the rate never changes)."""

    name = "witmotion"

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        self.parser = witmotion.WitMotionParser()
        self.stats = self.parser.stats

    async def _start(self, client: BleakClient) -> None:
        await client.start_notify(witmotion.NOTIFY, self._on_data)
        for command in (witmotion.unlock(), witmotion.set_rate(self.cfg.rate), witmotion.save()):
            await client.write_gatt_char(witmotion.WRITE, command, response=True)
            await asyncio.sleep(0.1)  # the vendor's pacing between register writes


class MyoProfile(BandProfile):
    """Myo armband: all four EMG characteristics (two 8-channel samples each, in arrival
    order) or, for an imu6 sensor, its IMU characteristic; then "raw EMG + IMU,
    classifier off" and "never sleep"; streaming off on stop."""

    name = "myo"

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        if self.sensor == "emg":
            self.parser, self.chars, self.n_channels = myo.MyoEmgParser(), myo.EMG_DATA, 8
        else:
            self.parser, self.chars = myo.MyoImuParser(), (myo.IMU_DATA,)
        self.stats = self.parser.stats

    async def _start(self, client: BleakClient) -> None:
        for uuid in self.chars:
            await client.start_notify(uuid, self._on_data)
        await client.write_gatt_char(myo.COMMAND, myo.RAW_EMG_AND_IMU, response=True)
        await client.write_gatt_char(myo.COMMAND, myo.NEVER_SLEEP, response=True)

    async def _stop(self, client: BleakClient) -> None:
        await client.write_gatt_char(myo.COMMAND, myo.STOP, response=True)


class GenericProfile(BandProfile):
    """A band described in the config: subscribe, write the start bytes, decode with
    `struct`; write the stop bytes on stop."""

    name = "generic"

    def __init__(self, cfg: BleConfig) -> None:
        super().__init__(cfg)
        g = cfg.generic
        assert g is not None
        self.g = g
        self.parser = g.parser()
        self.stats = self.parser.stats
        if self.sensor == "emg":
            self.n_channels = sum(1 for f in g.fields if f.startswith("emg"))

    async def _start(self, client: BleakClient) -> None:
        for uuid in self.g.notify:
            await client.start_notify(uuid, self._on_data)
        for w in self.g.start:
            await client.write_gatt_char(w.char, w.data(), response=w.response)

    async def _stop(self, client: BleakClient) -> None:
        for w in self.g.stop:
            await client.write_gatt_char(w.char, w.data(), response=w.response)


PROFILES: dict[str, type[BandProfile]] = {
    p.name: p
    for p in (
        MovesenseProfile,
        PolarProfile,
        ThingyProfile,
        WitMotionProfile,
        MyoProfile,
        GenericProfile,
    )
}


def make_profile(cfg: BleConfig) -> BandProfile:
    return PROFILES[cfg.profile](cfg)
