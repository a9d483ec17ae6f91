"""A band described entirely in the config file, for DIY boards.

`record` is a `struct` format repeated while bytes remain (after `header_skip`);
`fields` names each value: ax/ay/az become acceleration (after `scale`, in m/s^2),
gx/gy/gz angular rate (deg/s), emg0.. EMG; other names are decoded and dropped. With
`sync`, bytes are accumulated across notifications and frames of `length` bytes are cut
at each sync header (as WitMotion needs).
"""

from __future__ import annotations

import struct

import numpy as np

from clonusd.daemon.sources.ble.bands.base import BandSamples, FrameAccumulator, ParserStats

ACC_FIELDS = ("ax", "ay", "az")
GYR_FIELDS = ("gx", "gy", "gz")


class GenericParser:
    def __init__(
        self,
        record: str,
        fields: list[str],
        scale: list[float] | None = None,
        header_skip: int = 0,
        sync: bytes | None = None,
        length: int | None = None,
    ) -> None:
        try:
            self.size = struct.calcsize(record)
        except struct.error as exc:
            raise ValueError(f"record {record!r}: {exc}") from None
        self.record = struct.Struct(record)
        n_values = len(self.record.unpack(bytes(self.size)))
        if len(fields) != n_values:
            raise ValueError(f"record {record!r} has {n_values} values, fields name {len(fields)}")
        self.fields = fields
        self.scale = np.asarray(scale if scale is not None else [1.0] * n_values, dtype=float)
        if self.scale.size != n_values:
            raise ValueError(f"scale has {self.scale.size} entries, record has {n_values}")
        if sync is not None and length is None:
            raise ValueError("a sync header needs a frame length")
        self.header_skip = header_skip
        self.length = length
        self.stats = ParserStats()
        self._frames = (
            FrameAccumulator((sync,), length, self.stats)
            if sync is not None and length is not None
            else None
        )
        self._idx = {name: i for i, name in enumerate(fields)}
        self._emg = [i for i, name in enumerate(fields) if name.startswith("emg")]

    def feed(self, data: bytes) -> list[BandSamples]:
        self.stats.packets += 1
        frames = self._frames.feed(bytes(data)) if self._frames else [bytes(data)]
        rows: list[tuple[float, ...]] = []
        for frame in frames:
            body = frame[self.header_skip :]
            if self.length is not None and len(frame) != self.length:
                self.stats.bad(f"frame of {len(frame)} bytes, expected {self.length}")
                continue
            if not body or len(body) % self.size:
                self.stats.bad(f"{len(body)} bytes is not whole {self.size}-byte records")
                continue
            rows += [tuple(r) for r in self.record.iter_unpack(body)]
        if not rows:
            return []
        values = np.asarray(rows, dtype=np.float64) * self.scale
        if not np.all(np.isfinite(values)):
            self.stats.bad("non-finite values")
            return []
        return [
            BandSamples(
                values.shape[0],
                None,
                acc=self._pick(values, ACC_FIELDS),
                gyr=self._pick(values, GYR_FIELDS),
                emg=values[:, self._emg] if self._emg else None,
            )
        ]

    def _pick(self, values: np.ndarray, names: tuple[str, str, str]) -> np.ndarray | None:
        if not all(n in self._idx for n in names):
            return None
        return values[:, [self._idx[n] for n in names]]
