"""A virtual Movesense band speaking GSP: HELLO, SUBSCRIBE /Meas/IMU6/<rate>, UNSUBSCRIBE.

It streams the simulated band's samples as the sample firmware does: u32 ms timestamp and
float32 acc/gyro blocks, split into DATA (152 bytes) and DATA_PART2 when longer, and it
drops its subscriptions when the link goes down.
"""

from __future__ import annotations

import asyncio
import struct

from daemon.bands import movesense as gsp
from daemon.simulation import SimulatedBand
from fakebluez.bluez import Char, Link, Peripheral, Service

BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"


class VirtualMovesense(Peripheral):
    def __init__(
        self,
        band: SimulatedBand,
        serial: str = "000000000001",
        address: str = "0C:8C:DC:00:00:01",
        speed: float = 1.0,
        battery: int = 87,
        garbage_every: int | None = None,
    ) -> None:
        super().__init__()
        self.name = f"Movesense {serial}"
        self.address = address
        self.band = band
        self.speed = speed
        self.services = [
            Service(
                gsp.SERVICE,
                [
                    Char(gsp.COMMAND, ["write", "write-without-response"]),
                    Char(gsp.DATA, ["notify"]),
                ],
            ),
            Service(BATTERY_SERVICE, [Char(BATTERY_LEVEL, ["read", "notify"], bytes([battery]))]),
        ]
        self._streams: dict[int, asyncio.Task[None]] = {}
        self.samples_sent = 0
        self.garbage_every = garbage_every  # send a truncated packet every N notifications
        self.garbage_sent = 0
        self._clock_start: float | None = None  # the band's clock runs from first power-up

    def on_disconnect(self) -> None:
        for task in self._streams.values():
            task.cancel()
        self._streams.clear()
        super().on_disconnect()

    def on_write(self, uuid: str, data: bytes) -> None:
        if uuid != gsp.COMMAND or len(data) < 2 or self.link is None:
            return
        cmd, ref = data[0], data[1]
        if cmd == 0:
            self.link.notify(gsp.DATA, bytes([gsp.RESULT, ref]) + b"Hello")
        elif cmd == 1:
            parts = data[2:].decode(errors="replace").strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["Meas", "IMU6"] and parts[2].isdigit():
                rate = int(parts[2])
                self._streams[ref] = asyncio.get_running_loop().create_task(
                    self._stream(self.link, ref, rate)
                )
            else:
                self.link.notify(gsp.DATA, bytes([gsp.RESULT, ref, 0x01, 0xF5]))  # 501
        elif cmd == 2 and ref in self._streams:
            self._streams.pop(ref).cancel()

    async def _stream(self, link: Link, ref: int, rate: int) -> None:
        n = max(1, round(rate / 13))  # samples per notification
        loop = asyncio.get_running_loop()
        if self._clock_start is None:
            self._clock_start = loop.time()
        # Samples that fell while nobody listened are gone, as on a real band.
        self.band.skip(
            round((loop.time() - self._clock_start) * rate * self.speed) - self.band.samples
        )
        start = loop.time()
        sent = 0
        while True:
            t, x = self.band.next_chunk(n)
            blob = (
                struct.pack("<I", round(float(t[0]) * 1000) & 0xFFFFFFFF)
                + x[:, 0:3].astype("<f4").tobytes()
                + x[:, 3:6].astype("<f4").tobytes()
            )
            msg = bytes([gsp.DATA_PART1, ref]) + blob
            if len(msg) > gsp.MAX_PART:
                link.notify(gsp.DATA, msg[: gsp.MAX_PART])
                link.notify(gsp.DATA, bytes([gsp.DATA_PART2, ref]) + msg[gsp.MAX_PART :])
            else:
                link.notify(gsp.DATA, msg)
            sent += n
            self.samples_sent += n
            if self.garbage_every and (sent // n) % self.garbage_every == 0:
                link.notify(gsp.DATA, bytes([gsp.DATA_PART1, ref, 1, 2, 3]))  # truncated
                self.garbage_sent += 1
            delay = start + sent / rate / self.speed - loop.time()
            await asyncio.sleep(max(0.0, delay))
