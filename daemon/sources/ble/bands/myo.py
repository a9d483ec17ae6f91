"""Thalmic Myo armband: raw EMG (8 channels, 200 Hz, int8 counts) and IMU.

Four EMG characteristics each notify 16 bytes: two consecutive 8-channel samples. IMU
notifies 20 bytes: quaternion, acc (/2048 g), gyro (/16 deg/s), little-endian in practice
(the header's "big-endian" is wrong). No timestamps or counters: time samples on arrival.
"""

from __future__ import annotations

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, G, ParserStats

BASE = "d506{:04x}-a904-deb9-4748-2c7f4a124842"
COMMAND = BASE.format(0x0401)
IMU_DATA = BASE.format(0x0402)
EMG_DATA = tuple(BASE.format(0x0105 + 0x100 * i) for i in range(4))

RAW_EMG_AND_IMU = bytes([0x01, 0x03, 0x03, 0x01, 0x00])
STOP = bytes([0x01, 0x03, 0x00, 0x00, 0x00])
NEVER_SLEEP = bytes([0x09, 0x01, 0x01])


class MyoEmgParser:
    """EMG notifications from any of the four characteristics, in arrival order."""

    def __init__(self) -> None:
        self.stats = ParserStats()

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        if len(data) != 16:
            self.stats.bad(f"EMG notification is 16 bytes, got {len(data)}")
            return []
        emg = np.frombuffer(bytes(data), dtype=np.int8).astype(np.float64).reshape(2, 8)
        return [BandSamples(2, None, emg=emg)]


class MyoImuParser:
    def __init__(self) -> None:
        self.stats = ParserStats()

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        if len(data) != 20:
            self.stats.bad(f"IMU notification is 20 bytes, got {len(data)}")
            return []
        v = np.frombuffer(bytes(data), dtype="<i2").astype(np.float64)
        return [
            BandSamples(1, None, acc=(v[4:7] / 2048.0 * G)[None, :], gyr=(v[7:10] / 16.0)[None, :])
        ]
