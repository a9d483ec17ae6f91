"""Virtual bands for the fake BlueZ, each speaking its real byte protocol.

Each answers the commands the real band answers (and ignores or refuses the rest as the
real one does) and streams the simulated band's samples in the band's own frames:
Polar PMD (H10 raw accelerometer, Verity Sense delta-compressed accelerometer and
gyroscope), Nordic Thingy:52, WitMotion BWT901BLE, Myo (raw EMG) and a DIY board
described only by the generic profile's config. What a band was told is kept in
`commands`, so tests can check the set-up sequence, not just the samples.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import numpy as np

# D-Bus errors come from dbus_fast, as the fake bluetoothd raises them.
from dbus_fast import DBusError

from clonusd.daemon.sources.ble.bands import myo, polar, thingy, witmotion
from clonusd.daemon.sources.ble.bands.base import G
from clonusd.daemon.sources.simulation import SimulatedBand
from fakebluez.bluez import Char, Link, Peripheral, Service

BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
ATT_WRITE_NOT_PERMITTED = ("org.bluez.Error.Failed", "Operation failed with ATT error: 0x03")

Frames = Callable[[np.ndarray, np.ndarray], list[tuple[str, bytes]]]


class RadioLoss:
    """Whole notifications lost on the air, as a radio loses them: each with probability
    `p` (seeded), and every one whose samples end inside one of `windows` (band time, s).
    `only(uuid, data)` limits the loss to some notifications (one Polar stream, say)."""

    def __init__(
        self,
        p: float = 0.0,
        seed: int = 0,
        windows: tuple[tuple[float, float], ...] = (),
        only: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self.p, self.windows, self.only = p, windows, only
        self._rng = np.random.default_rng(seed)
        self.dropped = 0

    def drops(self, uuid: str, data: bytes, band_t: float) -> bool:
        if self.only is not None and not self.only(uuid, data):
            return False
        lost = any(a <= band_t < b for a, b in self.windows) or (
            self.p > 0 and self._rng.random() < self.p
        )
        self.dropped += lost
        return lost


class VirtualBand(Peripheral):
    """Streams `band` (sampled at band.fs) at the band's current rate, decimating when
    the rate is lower, in real time; the band's clock runs on while nobody listens."""

    def __init__(self, band: SimulatedBand, name: str, address: str, battery: int | None) -> None:
        super().__init__()
        self.name, self.address, self.band = name, address, band
        self.battery_service = (
            [Service(BATTERY_SERVICE, [Char(BATTERY_LEVEL, ["read"], bytes([battery]))])]
            if battery is not None
            else []
        )
        self.commands: list[tuple[str, bytes]] = []
        self.samples_sent = 0
        # Radio loss (None: a perfect radio) and its ground truth: samples of which some
        # notification never arrived (a Verity pair, a Movesense message in two parts).
        self.loss: RadioLoss | None = None
        self.samples_lost = 0
        self.rate: float = band.fs
        self._task: asyncio.Task[None] | None = None
        self._clock_start: float | None = None

    def on_disconnect(self) -> None:
        self.stop_stream()
        super().on_disconnect()

    def on_write(self, uuid: str, data: bytes) -> None:
        self.commands.append((uuid, data))
        self.command(uuid, data)

    def command(self, uuid: str, data: bytes) -> None:
        pass

    def on_notify(self, uuid: str, enabled: bool) -> None:
        self.commands.append((uuid, b"cccd on" if enabled else b"cccd off"))
        self.notify_changed(uuid, enabled)

    def notify_changed(self, uuid: str, enabled: bool) -> None:
        pass

    def start_stream(self, rate: float, per_notify: int, frames: Frames) -> None:
        if self.link is None:
            return
        self.stop_stream()
        self.rate = rate
        self._task = asyncio.get_running_loop().create_task(
            self._stream(self.link, rate, per_notify, frames)
        )

    def stop_stream(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def streaming(self) -> bool:
        return self._task is not None

    def clock(self) -> float:
        """The band's own clock, in seconds: it starts with the first stream and runs on
        while nobody listens (0 before that)."""
        if self._clock_start is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._clock_start

    async def _stream(self, link: Link, rate: float, per_notify: int, frames: Frames) -> None:
        step = round(self.band.fs / rate)
        if step < 1 or abs(self.band.fs / step - rate) > 1e-6:
            raise ValueError(f"simulated band at {self.band.fs} Hz cannot stream at {rate} Hz")
        loop = asyncio.get_running_loop()
        if self._clock_start is None:
            self._clock_start = loop.time()
        self.band.skip(round((loop.time() - self._clock_start) * self.band.fs) - self.band.samples)
        start, sent = loop.time(), 0
        while True:
            # A notification leaves once its last sample has been taken, not before.
            await asyncio.sleep(max(0.0, start + (sent + per_notify) / rate - loop.time()))
            t, x = self.band.next_chunk(per_notify * step)
            lost = False
            for uuid, data in frames(t[::step], x[::step]):
                if self.loss is not None and self.loss.drops(uuid, data, float(t[-1])):
                    lost = True
                else:
                    link.notify(uuid, data)
            sent += per_notify
            self.samples_sent += per_notify
            self.samples_lost += per_notify if lost else 0


# -- Polar PMD -------------------------------------------------------------------------------


def delta_encode(values: np.ndarray, resolution: int = 16) -> bytes:
    """The inverse of PMD delta decoding: a reference sample, then blocks of signed deltas
    packed LSB-first at the narrowest width that holds them."""
    values = np.asarray(values, dtype=np.int64)
    width = (resolution + 7) // 8
    out = bytearray(b"".join(int(v).to_bytes(width, "little", signed=True) for v in values[0]))
    deltas = np.diff(values, axis=0)
    for s in range(0, deltas.shape[0], 255):
        block = deltas[s : s + 255]
        bits_w = max(2, int(np.abs(block).max()).bit_length() + 1) if block.size else 2
        flat = block.reshape(-1) & ((1 << bits_w) - 1)
        bits = ((flat[:, None] >> np.arange(bits_w)) & 1).astype(np.uint8).reshape(-1)
        out += bytes([bits_w, block.shape[0]]) + np.packbits(bits, bitorder="little").tobytes()
    return bytes(out)


class VirtualPolar(VirtualBand):
    """A Polar H10 (`model="H10"`: raw int16 mG accelerometer) or Verity Sense
    (`model="Verity"`: delta-compressed accelerometer and gyroscope with FACTORs)."""

    ACC_FACTOR = 2.44e-4  # G per count, as the Verity's start reply says
    GYRO_FACTOR = 0.0610352  # deg/s per count (2000 dps / 32768)
    EPOCH_NS = 599_618_164_814_402_794  # the band's clock at power-up, ns since 2000

    def __init__(
        self,
        band: SimulatedBand,
        model: str = "Verity",
        address: str = "A0:9E:1A:00:00:02",
        battery: int = 64,
        mtu: int = 247,
        frame: int | None = None,
        sdk: bool = True,
        name: str | None = None,
        model_number: str | None = None,
    ) -> None:
        if name is None:
            name = "Polar H10 0A1B2C3D" if model == "H10" else "Polar Sense B5E1F002"
        super().__init__(band, name, address, battery)
        self.model, self.mtu = model, mtu
        self.frame = frame  # samples per data frame (real bands: ~30-70); default rate / 10
        # The Verity Sense offers SDK mode (byte 2, bit 1) and, outside it, 52 Hz only.
        features = bytes([0x0F, 0x05, 0, 0]) if model == "H10" else bytes([0x0F, 0x6E, 0x02, 0])
        if not sdk:  # firmware before 1.1.5
            features = bytes([0x0F, 0x6E, 0, 0])
        self.sdk, self.sdk_mode = sdk and model != "H10", False
        self.services = [
            Service(
                polar.SERVICE,
                [
                    Char(polar.CONTROL, ["read", "write", "indicate"], features),
                    Char(polar.DATA, ["notify"]),
                ],
            ),
            *self.battery_service,
        ]
        # Device Information with the Model Number String ("" for a band without one).
        number = (model if model_number is None else model_number).encode()
        if number:
            self.services.append(
                Service(polar.DEVICE_INFO, [Char(polar.MODEL_NUMBER, ["read"], number)])
            )
        self.started: dict[int, int] = {}  # measurement type -> rate
        self._streams: dict[int, asyncio.Task[None]] = {}
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def _reply(self, opcode: int, mtype: int, status: int, params: bytes = b"") -> None:
        if self.link is not None:
            self.link.notify(polar.CONTROL, bytes([0xF0, opcode, mtype, status, 0]) + params)

    def command(self, uuid: str, data: bytes) -> None:
        if uuid != polar.CONTROL or len(data) < 2:
            return
        opcode, mtype = data[0], data[1]
        supported = (polar.ACC,) if self.model == "H10" else (polar.ACC, polar.GYRO)
        if mtype == polar.SDK_MODE and self.sdk and opcode in (polar.START, polar.STOP):
            if self.started:
                return self._reply(opcode, mtype, 12)  # INVALID_STATE: streams running
            if self.sdk_mode == (opcode == polar.START):
                return self._reply(opcode, mtype, 6)  # ALREADY_IN_STATE
            self.sdk_mode = opcode == polar.START
            self._reply(opcode, mtype, 0)
        elif mtype not in supported:
            self._reply(opcode, mtype, 2)  # INVALID_MEASUREMENT_TYPE
        elif opcode == polar.GET_SETTINGS:
            rates = b"".join(r.to_bytes(2, "little") for r in self.rates)
            ranges = [2, 4, 8] if mtype == polar.ACC else [250, 500, 1000, 2000]
            params = (
                bytes([polar.SAMPLE_RATE, len(self.rates)])
                + rates
                + bytes([polar.RESOLUTION, 1, 16, 0])
                + bytes([polar.RANGE, len(ranges)])
                + b"".join(r.to_bytes(2, "little") for r in ranges)
            )
            self._reply(opcode, mtype, 0, params)
        elif opcode == polar.START:
            self._start(mtype, data[2:])
        elif opcode == polar.STOP:
            self.started.pop(mtype, None)
            if polar.ACC not in self.started:
                self.stop_stream()
            self._reply(opcode, mtype, 0)
        else:
            self._reply(opcode, mtype, 1)  # INVALID_OP_CODE

    def _start(self, mtype: int, tlv: bytes) -> None:
        if self.mtu < polar.MIN_MTU:
            return self._reply(polar.START, mtype, 10)  # INVALID_MTU
        if mtype in self.started:
            return self._reply(polar.START, mtype, 6)  # ALREADY_IN_STATE
        try:
            settings = polar.parse_settings(tlv)
        except ValueError:
            return self._reply(polar.START, mtype, 4)  # INVALID_LENGTH
        rate = settings.get(polar.SAMPLE_RATE, [0])[0]
        if rate not in self.rates or rate != round(self.band.fs):
            return self._reply(polar.START, mtype, 8)  # INVALID_SAMPLE_RATE
        self.started[mtype] = rate
        factor = self.ACC_FACTOR if mtype == polar.ACC else self.GYRO_FACTOR
        params = bytes([polar.FACTOR, 1]) + struct.pack("<f", factor)
        if self.model == "H10":
            params = b""  # raw frames carry no FACTOR
        self._reply(polar.START, mtype, 0, params)
        if polar.ACC in self.started and (self.model == "H10" or polar.GYRO in self.started):
            self.start_stream(rate, self.frame or max(1, rate // 10), self._frames)

    @property
    def rates(self) -> list[int]:
        if self.model == "H10":
            return [25, 50, 100, 200]
        return [26, 52, 104, 208, 416] if self.sdk_mode else [52]

    def on_disconnect(self) -> None:
        self.started.clear()
        self.sdk_mode = False  # assumed: the real band's behaviour here is not documented
        super().on_disconnect()

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        ts = struct.pack("<Q", self.EPOCH_NS + round(float(t[-1]) * 1e9))
        acc_g = x[:, 0:3] / G
        if self.model == "H10":
            mg = np.clip(np.round(acc_g * 1000), -32768, 32767).astype("<i2")
            return [(polar.DATA, bytes([polar.ACC]) + ts + bytes([0x01]) + mg.tobytes())]
        acc = np.round(acc_g / self.ACC_FACTOR)
        gyr = np.round(x[:, 3:6] / self.GYRO_FACTOR)
        out = [(polar.DATA, bytes([polar.ACC]) + ts + bytes([0x80]) + delta_encode(acc))]
        if polar.GYRO in self.started:
            out.append((polar.DATA, bytes([polar.GYRO]) + ts + bytes([0x80]) + delta_encode(gyr)))
        return out


# -- Nordic Thingy:52 ------------------------------------------------------------------------


class VirtualThingy(VirtualBand):
    """Raw motion (one 18-byte sample per notification) streams while its notifications
    are enabled, at the motion rate in the 9-byte config (10 Hz until told otherwise)."""

    def __init__(self, band: SimulatedBand, address: str = "E1:5F:00:00:00:03") -> None:
        super().__init__(band, "Thingy", address, battery=91)
        self.config = Char(thingy.CONFIG, ["read", "write"], thingy.DEFAULT_CONFIG)
        self.services = [
            Service(thingy.SERVICE, [self.config, Char(thingy.RAW, ["notify"])]),
            *self.battery_service,
        ]

    @property
    def motion_hz(self) -> int:
        return int(struct.unpack_from("<H", self.config.value, 6)[0])

    def command(self, uuid: str, data: bytes) -> None:
        if uuid != thingy.CONFIG:
            return
        if len(data) != 9 or not 5 <= struct.unpack_from("<H", data, 6)[0] <= 200:
            raise DBusError(*ATT_WRITE_NOT_PERMITTED)  # the firmware's write authorisation
        self.config.value = bytes(data)

    def notify_changed(self, uuid: str, enabled: bool) -> None:
        if uuid != thingy.RAW:
            return
        if enabled:
            self.start_stream(self.motion_hz, 1, self._frames)
        else:
            self.stop_stream()

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        acc = np.clip(np.round(x[:, 0:3] / G * 1024), -32768, 32767)
        gyr = np.clip(np.round(x[:, 3:6] * 32), -32768, 32767)
        compass = np.zeros((x.shape[0], 3))
        raw = np.hstack([acc, gyr, compass]).astype("<i2")
        return [(thingy.RAW, row.tobytes()) for row in raw]


# -- WitMotion BWT901BLE ---------------------------------------------------------------------


class VirtualWitMotion(VirtualBand):
    """Streams `55 61` frames while notifications are on, at 10 Hz until an unlocked
    rate write; packets are often split across notifications, as on the real module."""

    def __init__(self, band: SimulatedBand, address: str = "F4:12:FA:00:00:04") -> None:
        super().__init__(band, "WT901BLE68", address, battery=None)
        self.services = [
            Service(
                witmotion.SERVICE,
                [
                    Char(witmotion.NOTIFY, ["notify"]),
                    Char(witmotion.WRITE, ["write", "write-without-response"]),
                ],
            )
        ]
        self.output_hz = 10
        self.saved_hz = 10
        self._unlocked_until = -1.0
        self._carry = b""
        self.frames_split = 0

    def command(self, uuid: str, data: bytes) -> None:
        if uuid != witmotion.WRITE or len(data) != 5 or data[:2] != b"\xff\xaa":
            return
        now = asyncio.get_running_loop().time()
        reg, value = data[2], data[3] | data[4] << 8
        if data == witmotion.unlock():
            self._unlocked_until = now + 10.0
        elif now > self._unlocked_until:
            return  # a locked module ignores register writes
        elif reg == 0x03:
            rate = {v: k for k, v in witmotion.RATE_CODES.items()}.get(value)
            if rate is not None:
                self.output_hz = rate
                if self.streaming:
                    self.start_stream(rate, 1, self._frames)
        elif reg == 0x00 and value == 0:
            self.saved_hz = self.output_hz

    def notify_changed(self, uuid: str, enabled: bool) -> None:
        if uuid == witmotion.NOTIFY and enabled:
            self.start_stream(self.output_hz, 1, self._frames)
        elif uuid == witmotion.NOTIFY:
            self.stop_stream()

    def on_disconnect(self) -> None:
        self.output_hz = self.saved_hz  # unsaved settings are lost with the session
        super().on_disconnect()

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        acc = np.clip(np.round(x[:, 0:3] / G / 16 * 32768), -32768, 32767)
        gyr = np.clip(np.round(x[:, 3:6] / 2000 * 32768), -32768, 32767)
        angles = np.zeros((x.shape[0], 3))
        body = np.hstack([acc, gyr, angles]).astype("<i2")
        blob = self._carry + b"".join(b"\x55\x61" + row.tobytes() for row in body)
        # Every third frame is cut short and finished in the next notification.
        if self.samples_sent % 3 == 0:
            self._carry = blob[-13:]
            self.frames_split += 1
            return [(witmotion.NOTIFY, blob[:-13])]
        self._carry = b""
        return [(witmotion.NOTIFY, blob)]


# -- Myo armband -----------------------------------------------------------------------------


class VirtualMyo(VirtualBand):
    """Raw EMG, 8 channels at 200 Hz, two samples per notification, round-robin over the
    four EMG characteristics, once "set mode" asks for raw EMG (or, built on an imu6
    simulated band, IMU at 50 Hz, one sample per notification)."""

    def __init__(self, band: SimulatedBand, address: str = "D4:AA:00:00:00:05") -> None:
        super().__init__(band, "Myo", address, battery=77)
        self.services = [
            Service(myo.BASE.format(0x0001), [Char(myo.COMMAND, ["write"])]),
            Service(myo.BASE.format(0x0002), [Char(myo.IMU_DATA, ["notify"])]),
            Service(myo.BASE.format(0x0005), [Char(u, ["notify"]) for u in myo.EMG_DATA]),
            *self.battery_service,
        ]
        self.gains = np.linspace(0.6, 1.4, 8)
        self.never_sleep = False
        self._next_char = 0
        self._rng = np.random.default_rng(11)

    def command(self, uuid: str, data: bytes) -> None:
        if uuid != myo.COMMAND or len(data) < 2:
            return
        if data[0] == 0x01 and len(data) == 5:
            if data[2] in (0x02, 0x03) and self.band.sensor == "emg":
                self.start_stream(200, 2, self._frames)
            elif data[3] in (0x01, 0x03) and self.band.sensor == "imu6":
                self.start_stream(50, 1, self._imu_frames)
            else:
                self.stop_stream()
        elif data[0] == 0x09 and len(data) == 3:
            self.never_sleep = data[2] == 1

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        counts = x[:, 0:1] * 100 * self.gains + self._rng.normal(0, 1.0, (x.shape[0], 8))
        raw = np.clip(np.round(counts), -128, 127).astype(np.int8)
        uuid = myo.EMG_DATA[self._next_char]
        self._next_char = (self._next_char + 1) % 4
        return [(uuid, raw.tobytes())]

    def _imu_frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        quat = np.tile([16384, 0, 0, 0], (x.shape[0], 1))
        acc = np.round(x[:, 0:3] / G * 2048)
        gyr = np.round(x[:, 3:6] * 16)
        raw = np.clip(np.hstack([quat, acc, gyr]), -32768, 32767).astype("<i2")
        return [(myo.IMU_DATA, row.tobytes()) for row in raw]


# -- A DIY board, described only in clonusd's config -----------------------------------------

DIY_SERVICE = "7a1c0001-5d0a-4c1e-9a43-2b8f6f1d0c00"
DIY_DATA = "7a1c0002-5d0a-4c1e-9a43-2b8f6f1d0c00"
DIY_CONTROL = "7a1c0003-5d0a-4c1e-9a43-2b8f6f1d0c00"
DIY_SAMPLES_PER_NOTIFY = 4


class VirtualDiyBoard(VirtualBand):
    """An ESP32 board: write `01` to start, `00` to stop; each notification is a sequence
    byte and four records of six int16 (acc in mg, gyro in 0.1 deg/s)."""

    def __init__(self, band: SimulatedBand, address: str = "24:6F:28:00:00:06") -> None:
        super().__init__(band, "DIY-IMU", address, battery=None)
        self.services = [
            Service(DIY_SERVICE, [Char(DIY_DATA, ["notify"]), Char(DIY_CONTROL, ["write"])])
        ]
        self._seq = 0

    def command(self, uuid: str, data: bytes) -> None:
        if uuid == DIY_CONTROL and data == b"\x01":
            self.start_stream(self.band.fs, DIY_SAMPLES_PER_NOTIFY, self._frames)
        elif uuid == DIY_CONTROL and data == b"\x00":
            self.stop_stream()

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        acc = np.round(x[:, 0:3] / G * 1000)
        gyr = np.round(x[:, 3:6] * 10)
        body = np.clip(np.hstack([acc, gyr]), -32768, 32767).astype("<i2").tobytes()
        self._seq = (self._seq + 1) & 0xFF
        return [(DIY_DATA, bytes([self._seq]) + body)]


DIY_CONFIG = f"""
[sensors.source.generic]
sensor = "imu6"
notify = ["{DIY_DATA}"]
start = [{{ char = "{DIY_CONTROL}", hex = "01" }}]
stop = [{{ char = "{DIY_CONTROL}", hex = "00" }}]
record = "<6h"
header_skip = 1
fields = ["ax", "ay", "az", "gx", "gy", "gz"]
scale = [0.00980665, 0.00980665, 0.00980665, 0.1, 0.1, 0.1]
"""
