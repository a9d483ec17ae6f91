"""Polar Measurement Data (PMD): H10 accelerometer, Verity Sense accelerometer + gyroscope.

Control point fb005c81-… takes `[opcode][type][settings TLV…]` and answers by indication
`F0 <opcode> <type> <status> <more> [params]`; a start reply carries the FACTOR that scales
compressed frames. Data fb005c82-…: `[type][u64 ns timestamp of the last sample][frame type]
[content]`, raw (fixed-width integers) or delta-compressed (a reference sample, then blocks
of bit-packed signed deltas, LSB first). Needs an ATT MTU of at least 232.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, G, ParserStats

SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
MIN_MTU = 232
# Device Information Service: the band's Model Number String (UTF-8), a second witness to
# the model besides the advertised name (sensor_protocols.md 7.1).
DEVICE_INFO = "0000180a-0000-1000-8000-00805f9b34fb"
MODEL_NUMBER = "00002a24-0000-1000-8000-00805f9b34fb"

ECG, ACC, GYRO = 0, 2, 5
GET_SETTINGS, START, STOP = 1, 2, 3
SETTING_SIZE = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4, 6: 16}
SAMPLE_RATE, RESOLUTION, RANGE, CHANNELS, FACTOR = 0, 1, 2, 4, 5
STATUS = {
    0: "SUCCESS",
    1: "INVALID_OP_CODE",
    2: "INVALID_MEASUREMENT_TYPE",
    3: "NOT_SUPPORTED",
    4: "INVALID_LENGTH",
    5: "INVALID_PARAMETER",
    6: "ALREADY_IN_STATE",
    7: "INVALID_RESOLUTION",
    8: "INVALID_SAMPLE_RATE",
    9: "INVALID_RANGE",
    10: "INVALID_MTU",
    11: "INVALID_NUMBER_OF_CHANNELS",
    12: "INVALID_STATE",
    13: "DEVICE_IN_CHARGER",
    14: "DISK_FULL",
}
EPOCH_2000_NS = 946_684_800_000_000_000


SDK_MODE = 9  # Verity Sense: a measurement "type" that unlocks ACC/GYRO rates beyond 52 Hz


@dataclass(frozen=True)
class Model:
    """What one Polar band can stream, as clonusd drives it (sensor_protocols.md 2.5)."""

    key: str  # the config's `model`
    label: str
    names: tuple[str, ...]  # advertised name prefixes
    numbers: tuple[str, ...]  # words its Model Number String holds (case ignored)
    rates: dict[str, tuple[int, ...]]  # sensor kind -> rates; the first kind is the default
    default_rate: int
    normal_rates: tuple[int, ...]  # rates without SDK mode (others need it)


MODELS = {
    "h10": Model(
        "h10", "Polar H10", ("Polar H10",), ("H10",), {"acc3": (25, 50, 100, 200)}, 100, ()
    ),
    "verity": Model(
        "verity",
        "Polar Verity Sense",
        ("Polar Sense",),
        ("SENSE", "VERITY"),
        {kind: (26, 52, 104, 208, 416) for kind in ("imu6", "acc3")},
        52,
        (52,),
    ),
}


def model_from_name(name: str | None) -> Model | None:
    """The model an advertised name (or a GAP device name) shows, if any."""
    for model in MODELS.values():
        if name and name.startswith(model.names):
            return model
    return None


def model_number(raw: bytes) -> str:
    """A Model Number String as read: UTF-8, padding dropped, at most 40 characters."""
    return raw.decode("utf-8", "replace").strip("\x00 ")[:40]


def model_from_number(number: str | None) -> Model | None:
    """The model a Device Information Model Number String names ("H10", "Polar Sense"),
    if it names one clonusd drives."""
    text = (number or "").upper()
    for model in MODELS.values():
        if any(word in text for word in model.numbers):
            return model
    return None


def check_config(
    model: str | None, name: str | None, sensor: str | None, rate_hz: int | None
) -> tuple[Model, str, int]:
    """(model, sensor kind, rate) for a Polar band's config; ValueError naming the fix for
    what that model cannot do. The model is the config's or the advertised name's; an
    imu6 sensor can only be a Verity Sense (the H10 has no gyroscope)."""
    named = model_from_name(name)
    if model is not None and named is not None and named.key != model:
        raise ValueError(f'model = "{model}", but the name {name!r} is a {named.label}')
    m = MODELS[model] if model is not None else named
    if m is None and sensor == "imu6":
        m = MODELS["verity"]
    if m is None:
        raise ValueError(
            'profile "polar": say which band with model = "h10" or "verity" '
            "(it cannot be told from the config's address or name)"
        )
    kind = sensor or next(iter(m.rates))
    if kind not in m.rates:
        fix = " or ".join(f'sensor = "{k}"' for k in m.rates)
        lacks = f"gives no {kind}"
        if kind == "imu6":
            lacks = "has no gyroscope (a Verity Sense has one)"
        raise ValueError(f"a {m.label} {lacks}: set {fix}")
    rate = rate_hz if rate_hz is not None else m.default_rate
    if rate not in m.rates[kind]:
        offered = ", ".join(map(str, m.rates[kind]))
        raise ValueError(
            f"a {m.label} streams {kind} at {offered} Hz, not {rate}: "
            f"set rate_hz = {m.default_rate} or another of those"
        )
    return m, kind, rate


def get_settings(mtype: int) -> bytes:
    return bytes([GET_SETTINGS, mtype])


def start(mtype: int, settings: dict[int, int]) -> bytes:
    """REQUEST_MEASUREMENT_START with one value per setting, in the order given."""
    out = bytearray([START, mtype])
    for kind, value in settings.items():
        out += bytes([kind, 1]) + value.to_bytes(SETTING_SIZE[kind], "little")
    return bytes(out)


def stop(mtype: int) -> bytes:
    return bytes([STOP, mtype])


def parse_settings(params: bytes) -> dict[int, list[int]]:
    """A settings TLV (`[type][count][count x value]`) into {type: [values]}."""
    out: dict[int, list[int]] = {}
    o = 0
    while o + 2 <= len(params):
        kind, count = params[o], params[o + 1]
        o += 2
        size = SETTING_SIZE.get(kind)
        if size is None or o + size * count > len(params):
            raise ValueError(f"bad settings TLV at byte {o - 2}")
        out[kind] = [
            int.from_bytes(params[o + i * size : o + (i + 1) * size], "little")
            for i in range(count)
        ]
        o += size * count
    return out


@dataclass(frozen=True)
class ControlResponse:
    opcode: int
    mtype: int
    status: int
    params: bytes

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def status_name(self) -> str:
        return STATUS.get(self.status, f"status {self.status}")

    def factor(self) -> float | None:
        """The FACTOR a start reply carries (float32), if any."""
        try:
            raw = parse_settings(self.params).get(FACTOR)
        except ValueError:
            return None
        return struct.unpack("<f", raw[0].to_bytes(4, "little"))[0] if raw else None


def parse_control(data: bytes) -> ControlResponse | None:
    if len(data) < 5 or data[0] != 0xF0:
        return None
    return ControlResponse(data[1], data[2], data[3], bytes(data[5:]))


def decode_delta(content: bytes, channels: int, resolution: int) -> np.ndarray:
    """Delta-compressed content to (n, channels) integers. Raises ValueError if truncated."""
    width = (resolution + 7) // 8
    if len(content) < channels * width:
        raise ValueError("no room for the reference sample")
    ref = [
        int.from_bytes(content[c * width : (c + 1) * width], "little", signed=True)
        for c in range(channels)
    ]
    rows = [np.array(ref, dtype=np.int64)[None, :]]
    o = channels * width
    while o < len(content):
        if o + 2 > len(content):
            raise ValueError("truncated delta block header")
        bits_w, count = content[o], content[o + 1]
        o += 2
        if bits_w == 0 or bits_w > 32:
            raise ValueError(f"delta width {bits_w} bits")
        if count == 0:
            raise ValueError("delta block of 0 samples")
        nbytes = (bits_w * channels * count + 7) // 8
        if o + nbytes > len(content):
            raise ValueError("truncated delta block")
        bits = np.unpackbits(np.frombuffer(content, np.uint8, nbytes, o), bitorder="little")
        o += nbytes
        vals = bits[: bits_w * channels * count].reshape(count * channels, bits_w).astype(np.int64)
        v = vals @ (np.int64(1) << np.arange(bits_w, dtype=np.int64))
        v = np.where(v >= (1 << (bits_w - 1)), v - (1 << bits_w), v).reshape(count, channels)
        rows.append(rows[-1][-1] + np.cumsum(v, axis=0))
    return np.vstack(rows)


class PolarParser:
    """Decodes data frames of one measurement type (ACC or GYRO) into SI units.

    A frame stamps only its last sample. Its samples are spaced by the time since the
    previous frame's stamp over its own count, when that is close to the nominal period
    (so a band whose clock runs a little off keeps its own rate); when it is not (frames
    were lost in between, or the stamp is off), by the last good spacing, and the samples
    not accounted for are counted in `lost_samples` (they show as a gap in the times)."""

    tolerance = 0.25  # a measured period within 25 % of nominal is the band's own

    def __init__(self, mtype: int, sample_rate: float, factor: float = 1.0) -> None:
        if mtype not in (ACC, GYRO):
            raise ValueError("PolarParser decodes ACC (2) or GYRO (5)")
        self.mtype = mtype
        self.rate = sample_rate
        self.factor = factor
        self.stats = ParserStats()
        self.gaps = 0  # places where frames went missing
        self.lost_samples = 0
        self._prev_ts: int | None = None
        self._step = 1e9 / sample_rate  # ns between samples, as last measured

    def restart(self, factor: float | None) -> None:
        """A new measurement started: its FACTOR (from the start reply; 1 if none), and
        no sample spacing carried over from the previous one."""
        # A FACTOR that is no number (a garbled reply) would turn every sample into NaN.
        self.factor = factor if factor is not None and np.isfinite(factor) and factor else 1.0
        self._prev_ts = None
        self._step = 1e9 / self.rate

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        if len(data) < 11:
            self.stats.bad("shorter than a PMD frame header")
            return []
        if data[0] & 0x3F != self.mtype:
            self.stats.ignored += 1
            return []
        ts = int.from_bytes(data[1:9], "little")
        compressed, ftype = bool(data[9] & 0x80), data[9] & 0x7F
        content = bytes(data[10:])
        try:
            values = self._values(content, compressed, ftype)
        except ValueError as exc:
            self.stats.bad(str(exc))
            return []
        n = values.shape[0]
        if n == 0:
            self.stats.bad("no samples")
            return []
        step = self._spacing(ts, n)
        self._prev_ts = ts
        device_t = (ts - (n - 1 - np.arange(n)) * step) / 1e9  # seconds since 2000-01-01
        if self.mtype == ACC:
            return [BandSamples(n, device_t, acc=values)]
        return [BandSamples(n, device_t, gyr=values)]

    def _spacing(self, ts: int, n: int) -> float:
        """The ns between this frame's samples (see the class docstring)."""
        nominal = 1e9 / self.rate
        if self._prev_ts is None or ts <= self._prev_ts:
            return self._step
        span = ts - self._prev_ts
        measured = span / n
        if abs(measured - nominal) <= self.tolerance * nominal:
            self._step = measured
            return measured
        missing = round(span / self._step) - n
        if missing > 0:
            self.gaps += 1
            self.lost_samples += missing
        return self._step

    def _values(self, content: bytes, compressed: bool, ftype: int) -> np.ndarray:
        if not compressed:
            if self.mtype != ACC or ftype not in (0, 1, 2):
                raise ValueError(f"unsupported raw frame type {ftype}")
            width = ftype + 1  # int8, int16, int24
            if len(content) % (3 * width):
                raise ValueError(f"{len(content)} bytes is not whole {3 * width}-byte samples")
            raw = np.array(
                [
                    int.from_bytes(content[i : i + width], "little", signed=True)
                    for i in range(0, len(content), width)
                ],
                dtype=np.float64,
            )
            return raw.reshape(-1, 3) * G / 1000.0  # mG
        if ftype not in (0, 1) or (self.mtype == GYRO and ftype == 1):
            raise ValueError(f"unsupported compressed frame type {ftype}")
        raw = decode_delta(content, 3, 16).astype(np.float64) * self.factor
        if self.mtype == GYRO:
            return raw  # deg/s
        return raw * (G if ftype == 0 else G / 1000.0)  # type 0 in G, type 1 in mG
