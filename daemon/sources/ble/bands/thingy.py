"""Nordic Thingy:52 motion service: raw data (18 bytes per notification, one sample).

accel int16 Q6.10 g, gyro int16 Q11.5 deg/s, compass int16 Q12.4 uT. The motion rate is
set through the 9-byte config characteristic (read-modify-write); notifications on the
raw characteristic start the stream. No device timestamp: time samples on arrival.
"""

from __future__ import annotations

import struct

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, G, ParserStats

SERVICE = "ef680400-9b35-4933-9b10-52ffa9740042"
CONFIG = "ef680401-9b35-4933-9b10-52ffa9740042"
RAW = "ef680406-9b35-4933-9b10-52ffa9740042"
DEFAULT_CONFIG = bytes.fromhex("e803f401f4010a0001")  # 1000, 500, 500 ms, 10 Hz, wake on


def config_with_rate(current: bytes, hz: int) -> bytes:
    """The config characteristic with only the motion rate changed (5-200 Hz)."""
    if len(current) != 9:
        raise ValueError("the Thingy config is 9 bytes")
    if not 5 <= hz <= 200:
        raise ValueError("motion rate must be 5..200 Hz")
    return current[:6] + struct.pack("<H", hz) + current[8:]


class ThingyParser:
    def __init__(self) -> None:
        self.stats = ParserStats()

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        if len(data) != 18:
            self.stats.bad(f"raw motion is 18 bytes, got {len(data)}")
            return []
        v = np.frombuffer(bytes(data), dtype="<i2").astype(np.float64)
        return [
            BandSamples(1, None, acc=(v[0:3] / 1024.0 * G)[None, :], gyr=(v[3:6] / 32.0)[None, :])
        ]
