"""The virtual bands (tests/fakebluez, also the bands of the VM tier in tests/vm) against
the byte vectors in shared/protocols/sensor_protocols.md: what they send must be what a
real Movesense or Polar sends, byte for byte, not only what clonusd's parsers accept."""

from __future__ import annotations

import numpy as np
from fakebluez.bands import VirtualPolar, delta_encode
from fakebluez.movesense import VirtualMovesense

from clonusd.daemon.sources.ble.bands import movesense as gsp
from clonusd.daemon.sources.ble.bands import polar
from clonusd.daemon.sources.ble.bands.base import G
from clonusd.daemon.sources.simulation import SimulatedBand


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", "").replace("|", ""))


class Capture:
    """Stands in for the link: what the band notifies."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def notify(self, uuid: str, data: bytes) -> None:
        self.sent.append((uuid, bytes(data)))


def test_movesense_answers_hello_as_the_sample_firmware() -> None:
    band = VirtualMovesense(SimulatedBand("imu6", 104))
    link = Capture()
    band.on_connect(link)  # type: ignore[arg-type]
    band.on_write(gsp.COMMAND, hx("00 7b"))
    assert link.sent == [(gsp.DATA, hx("01 7b 48 65 6c 6c 6f"))]


def test_movesense_acc_frame_is_the_reference_vector() -> None:
    band = VirtualMovesense(SimulatedBand("acc3", 52))
    band._ref, band._imu6 = 0x63, False  # as after SUBSCRIBE ref=99 /Meas/Acc/52
    t = np.array([123.456, 123.475, 123.494, 123.513])
    x = np.array([[0.1, -0.2, 9.81], [0.0, 0.5, 9.79], [1, 2, 3], [-1, -2, -3]])
    ((uuid, frame),) = band._frames(t, x)
    assert uuid == gsp.DATA
    assert frame == hx(
        "02 63 40 e2 01 00 | cd cc cc 3d cd cc 4c be c3 f5 1c 41 |"
        "00 00 00 00 00 00 00 3f d7 a3 1c 41 | 00 00 80 3f 00 00 00 40 00 00 40 40 |"
        "00 00 80 bf 00 00 00 c0 00 00 40 c0"
    )


def test_movesense_imu6_at_104_hz_splits_into_data_and_part2() -> None:
    band = VirtualMovesense(SimulatedBand("imu6", 104))
    band._ref = 7
    t, x = SimulatedBand("imu6", 104).next_chunk(8)
    (_, first), (_, second) = band._frames(t, x)
    assert (len(first), len(second)) == (152, 48)  # the reference's sizes for N=8
    assert first[:2] == bytes([gsp.DATA_PART1, 7]) and second[:2] == bytes([gsp.DATA_PART2, 7])


def test_polar_h10_settings_reply_is_the_vendor_vector() -> None:
    band = VirtualPolar(SimulatedBand("acc3", 100), "H10")
    link = Capture()
    band.on_connect(link)  # type: ignore[arg-type]
    band.on_write(polar.CONTROL, hx("01 02"))
    assert link.sent == [
        (
            polar.CONTROL,
            hx(
                "F0 01 02 00 00 | 00 04 19 00 32 00 64 00 C8 00 | 01 01 10 00 |"
                "02 03 02 00 04 00 08 00"
            ),
        )
    ]


def test_polar_verity_start_reply_carries_the_vendor_factor() -> None:
    band = VirtualPolar(SimulatedBand("imu6", 52), "Verity")
    link = Capture()
    band.on_connect(link)  # type: ignore[arg-type]
    band.on_write(polar.CONTROL, hx("02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03"))
    assert link.sent == [(polar.CONTROL, hx("F0 02 02 00 00 05 01 40 DA 7F 39"))]


def test_polar_h10_raw_frame_is_the_vendor_vector() -> None:
    band = VirtualPolar(SimulatedBand("acc3", 100), "H10")
    mg = np.array([[-187, -28, 949], [-187, -28, 952]])
    ((uuid, frame),) = band._frames(np.array([-0.01, 0.0]), mg / 1000 * G)
    assert uuid == polar.DATA
    assert frame == hx("02 | EA 54 A2 42 8B 45 52 08 | 01 | 45 FF E4 FF B5 03 | 45 FF E4 FF B8 03")


def test_polar_delta_frames_encode_as_the_sdk_gyro_vector() -> None:
    # GyrDataTest "process gyro compressed data type 0": reference (-22, 8, 13), one block
    # of 3-bit deltas (-1, +3, +3).
    assert delta_encode(np.array([[-22, 8, 13], [-23, 11, 16]])) == hx(
        "EA FF 08 00 0D 00 | 03 01 | DF 00"
    )
