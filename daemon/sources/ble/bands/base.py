"""What every band parser produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

G = 9.80665  # m/s^2 per g

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BandSamples:
    """Samples decoded from one notification (or one reassembled message).

    `device_t` holds the device's own sample times in seconds where the protocol has them
    (None otherwise); the receiver adds the host's monotonic receive time. `acc` is in
    m/s^2, `gyr` in deg/s, `emg` in the band's units (raw counts or mV), each (n, channels).
    """

    n: int
    device_t: FloatArray | None = None
    acc: FloatArray | None = None
    gyr: FloatArray | None = None
    emg: FloatArray | None = None


@dataclass
class ParserStats:
    packets: int = 0
    malformed: int = 0
    ignored: int = 0  # well-formed but not samples (command replies, other streams)
    notes: list[str] = field(default_factory=list)

    def bad(self, why: str) -> None:
        self.malformed += 1
        if len(self.notes) < 20:
            self.notes.append(why)


class Parser(Protocol):
    """Bytes of one notification in, decoded samples out; bad input is counted in `stats`."""

    stats: ParserStats

    def feed(self, data: bytes) -> list[BandSamples]: ...


class FrameAccumulator:
    """Bytes in, as notifications happen to split them; fixed-length frames out, cut at a
    sync header. Garbage before a header is dropped and counted; the buffer is bounded."""

    max_buffer = 4096

    def __init__(self, headers: tuple[bytes, ...], length: int, stats: ParserStats) -> None:
        if not headers or any(len(h) > length for h in headers):
            raise ValueError("sync headers must be non-empty and fit in a frame")
        self.headers = headers
        self.length = length
        self.stats = stats
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while True:
            found = [at for at in (buf.find(h) for h in self.headers) if at >= 0]
            if not found:
                keep = max(len(h) for h in self.headers) - 1  # a header may be split
                if len(buf) > keep:
                    self.stats.bad(f"no sync header, dropped {len(buf) - keep} byte(s)")
                    del buf[: len(buf) - keep]
                break
            at = min(found)
            if at > 0:
                self.stats.bad(f"resynchronised, dropped {at} byte(s)")
                del buf[:at]
            if len(buf) < self.length:
                break
            out.append(bytes(buf[: self.length]))
            del buf[: self.length]
        if len(buf) > self.max_buffer:
            self.stats.bad("buffer overflow, cleared")
            buf.clear()
        return out
