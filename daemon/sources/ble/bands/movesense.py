"""Movesense GATT SensorData Protocol (GSP): Acc, Gyro, IMU6 and IMU9 streams.

Commands go to 34800001-…, data arrives on 34800002-… as `[resp][ref][payload]`.
A Whiteboard notification longer than 150 bytes is split into DATA (resp 2) and
DATA_PART2 (resp 3); the parts are joined before decoding. Payload: u32 timestamp (ms,
first sample) then float32 LE vectors, in blocks (all acc, then all gyro, then all magn).
"""

from __future__ import annotations

import struct

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, ParserStats

SERVICE = "34802252-7185-4d5d-b431-630e7050e8f0"
COMMAND = "34800001-7185-4d5d-b431-630e7050e8f0"
DATA = "34800002-7185-4d5d-b431-630e7050e8f0"

RATES = (13, 26, 52, 104, 208, 416, 833, 1666)
RESULT, DATA_PART1, DATA_PART2 = 1, 2, 3
MAX_PART = 152  # a full first part: a second part may follow
BLOCKS = {"Acc": ("acc",), "Gyro": ("gyr",), "IMU6": ("acc", "gyr"), "IMU9": ("acc", "gyr", "mag")}


def hello(ref: int) -> bytes:
    return bytes([0, ref])


def subscribe(ref: int, resource: str, rate: int) -> bytes:
    """SUBSCRIBE to /Meas/<resource>/<rate>; `ref` (1-255) tags the stream's data."""
    if not 1 <= ref <= 255:
        raise ValueError("reference must be 1..255")
    if resource not in BLOCKS:
        raise ValueError(f"resource must be one of {', '.join(BLOCKS)}")
    if rate not in RATES:
        raise ValueError(f"rate must be one of {RATES}")
    return bytes([1, ref]) + f"/Meas/{resource}/{rate}".encode()


def unsubscribe(ref: int) -> bytes:
    return bytes([2, ref])


class MovesenseParser:
    """Decodes one subscription's notifications (matched by its reference byte)."""

    def __init__(self, resource: str, rate: int, ref: int) -> None:
        if resource not in BLOCKS:
            raise ValueError(f"resource must be one of {', '.join(BLOCKS)}")
        self.resource = resource
        self.rate = rate
        self.ref = ref
        self.blocks = BLOCKS[resource]
        self.stats = ParserStats()
        self._pending: bytes | None = None  # a full first part waiting for its second
        self._last_ts: int | None = None
        self._wraps = 0
        # Halves of a two-part message whose other half never came: radio loss, not a
        # malformed packet (the samples show as a gap in the times).
        self.orphan_parts = 0

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        out: list[BandSamples] = []
        if len(data) < 2:
            self.stats.bad("shorter than the 2-byte header")
            return out
        resp, ref = data[0], data[1]
        if ref != self.ref or resp == RESULT:
            self.stats.ignored += 1
            return out
        if resp == DATA_PART1:
            out += self._flush_pending()
            if len(data) >= MAX_PART:
                self._pending = bytes(data)
            else:
                out += self._decode(bytes(data))
        elif resp == DATA_PART2:
            if self._pending is None:
                self.orphan_parts += 1  # its first part was lost
                self.stats.ignored += 1
            else:
                joined, self._pending = self._pending + bytes(data[2:]), None
                out += self._decode(joined)
        else:
            self.stats.bad(f"unknown response code {resp}")
        return out

    def _flush_pending(self) -> list[BandSamples]:
        """A full first part with no second part: it was complete on its own."""
        if self._pending is None:
            return []
        pending, self._pending = self._pending, None
        if (len(pending) - 6) % (12 * len(self.blocks)):
            self.orphan_parts += 1  # a first part that needed its lost second part
            self.stats.ignored += 1
            return []
        return self._decode(pending)

    def _decode(self, msg: bytes) -> list[BandSamples]:
        size = 12 * len(self.blocks)
        body = len(msg) - 6
        if body <= 0 or body % size:
            self.stats.bad(f"{len(msg)} bytes is not a whole number of {self.resource} samples")
            return []
        n = body // size
        (ts,) = struct.unpack_from("<I", msg, 2)
        with np.errstate(invalid="ignore"):  # NaN bit patterns: rejected just below
            values = np.frombuffer(msg, dtype="<f4", offset=6).astype(np.float64)
        if not np.all(np.isfinite(values)):
            self.stats.bad("non-finite sample values")
            return []
        if self._last_ts is not None and ts < self._last_ts and self._last_ts - ts > 2**31:
            self._wraps += 1  # the u32 millisecond clock wraps every ~49.7 days
        self._last_ts = ts
        t0 = (ts + self._wraps * 2**32) / 1000.0
        device_t = t0 + np.arange(n) / self.rate
        arrays = {
            name: values[i * 3 * n : (i + 1) * 3 * n].reshape(n, 3)
            for i, name in enumerate(self.blocks)
        }
        return [BandSamples(n, device_t, acc=arrays.get("acc"), gyr=arrays.get("gyr"))]
