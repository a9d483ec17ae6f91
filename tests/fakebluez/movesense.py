"""A virtual Movesense band speaking GSP: HELLO, SUBSCRIBE /Meas/IMU6/<rate>, UNSUBSCRIBE.

It streams the simulated band's samples as the sample firmware does: u32 ms timestamp and
float32 acc/gyro blocks, split into DATA (152 bytes) and DATA_PART2 when longer, and it
drops its subscription when the link goes down.
"""

from __future__ import annotations

import struct

import numpy as np

from clonusd.daemon.sources.ble.bands import movesense as gsp
from clonusd.daemon.sources.simulation import SimulatedBand
from fakebluez.bands import VirtualBand
from fakebluez.bluez import Char, Service


class VirtualMovesense(VirtualBand):
    def __init__(
        self,
        band: SimulatedBand,
        serial: str = "000000000001",
        address: str = "0C:8C:DC:00:00:01",
        battery: int = 87,
        garbage_every: int | None = None,
    ) -> None:
        super().__init__(band, f"Movesense {serial}", address, battery)
        self.services = [
            Service(
                gsp.SERVICE,
                [
                    Char(gsp.COMMAND, ["write", "write-without-response"]),
                    Char(gsp.DATA, ["notify"]),
                ],
            ),
            *self.battery_service,
        ]
        self.garbage_every = garbage_every  # send a truncated packet every N notifications
        self.garbage_sent = 0
        self._ref = 0
        self._imu6 = True
        self._notifications = 0

    def command(self, uuid: str, data: bytes) -> None:
        if uuid != gsp.COMMAND or len(data) < 2 or self.link is None:
            return
        cmd, ref = data[0], data[1]
        if cmd == 0:
            self.link.notify(gsp.DATA, bytes([gsp.RESULT, ref]) + b"Hello")
        elif cmd == 1:
            parts = data[2:].decode(errors="replace").strip("/").split("/")
            if len(parts) == 3 and parts[:2] in (["Meas", "IMU6"], ["Meas", "Acc"]):
                self._ref, self._imu6 = ref, parts[1] == "IMU6"
                rate = int(parts[2])
                self.start_stream(rate, max(1, round(rate / 13)), self._frames)
            else:
                self.link.notify(gsp.DATA, bytes([gsp.RESULT, ref, 0x01, 0xF5]))  # 501
        elif cmd == 2 and ref == self._ref:
            self.stop_stream()

    def _frames(self, t: np.ndarray, x: np.ndarray) -> list[tuple[str, bytes]]:
        blob = (
            struct.pack("<I", round(float(t[0]) * 1000) & 0xFFFFFFFF)
            + x[:, 0:3].astype("<f4").tobytes()
            + (x[:, 3:6].astype("<f4").tobytes() if self._imu6 else b"")
        )
        msg = bytes([gsp.DATA_PART1, self._ref]) + blob
        if len(msg) > gsp.MAX_PART:
            out = [
                (gsp.DATA, msg[: gsp.MAX_PART]),
                (gsp.DATA, bytes([gsp.DATA_PART2, self._ref]) + msg[gsp.MAX_PART :]),
            ]
        else:
            out = [(gsp.DATA, msg)]
        self._notifications += 1
        if self.garbage_every and self._notifications % self.garbage_every == 0:
            out.append((gsp.DATA, bytes([gsp.DATA_PART1, self._ref, 1, 2, 3])))  # truncated
            self.garbage_sent += 1
        return out
