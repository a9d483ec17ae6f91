"""What every band parser produces."""

from __future__ import annotations

from dataclasses import dataclass, field

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
