"""WitMotion BLE 5.0 IMUs (BWT901BLECL and kin): `55 61` packets of 20 bytes.

One sample per packet: acc (int16/32768 x 16 g), gyro (int16/32768 x 2000 deg/s), angles.
No timestamp, no counter, no checksum; packets may be split or merged across
notifications, and register replies (`55 71`) interleave, so bytes are accumulated and
frames cut after resynchronising on the header. Note the non-standard UUID base (…9a34fb).
"""

from __future__ import annotations

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, FrameAccumulator, G, ParserStats

SERVICE = "0000ffe5-0000-1000-8000-00805f9a34fb"
NOTIFY = "0000ffe4-0000-1000-8000-00805f9a34fb"
WRITE = "0000ffe9-0000-1000-8000-00805f9a34fb"

RATE_CODES = {1: 0x03, 5: 0x05, 10: 0x06, 20: 0x07, 50: 0x08, 100: 0x09, 200: 0x0B}
FRAME = 20
DATA_FLAG, REGISTER_FLAG = 0x61, 0x71


def unlock() -> bytes:
    return bytes([0xFF, 0xAA, 0x69, 0x88, 0xB5])


def save() -> bytes:
    return bytes([0xFF, 0xAA, 0x00, 0x00, 0x00])


def set_rate(hz: int) -> bytes:
    """The output-rate command; send unlock() first and save() after (await all three)."""
    try:
        return bytes([0xFF, 0xAA, 0x03, RATE_CODES[hz], 0x00])
    except KeyError:
        raise ValueError(f"rate must be one of {sorted(RATE_CODES)} Hz") from None


class WitMotionParser:
    def __init__(self) -> None:
        self.stats = ParserStats()
        headers = (bytes([0x55, DATA_FLAG]), bytes([0x55, REGISTER_FLAG]))
        self._frames = FrameAccumulator(headers, FRAME, self.stats)

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        frames = []
        for frame in self._frames.feed(bytes(data)):
            if frame[1] == DATA_FLAG:
                frames.append(frame)
            else:
                self.stats.ignored += 1  # a register reply
        if not frames:
            return []
        raw = np.frombuffer(b"".join(f[2:14] for f in frames), dtype="<i2").astype(np.float64)
        raw = raw.reshape(len(frames), 6)
        acc = raw[:, 0:3] / 32768.0 * 16.0 * G
        gyr = raw[:, 3:6] / 32768.0 * 2000.0
        return [BandSamples(len(frames), None, acc=acc, gyr=gyr)]
