"""Band parsers against the byte vectors in shared/protocols/sensor_protocols.md, and
against random bytes: they must never raise, and must count what they reject."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clonusd.daemon.sources.ble.bands import generic, movesense, myo, polar, thingy, witmotion
from clonusd.daemon.sources.ble.bands.base import G


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", "").replace("|", ""))


# -- Movesense -----------------------------------------------------------------------------


def test_movesense_commands_match_the_official_clients() -> None:
    assert movesense.subscribe(99, "Acc", 52) == hx("01 63 2f 4d 65 61 73 2f 41 63 63 2f 35 32")
    assert movesense.subscribe(99, "IMU9", 104) == hx(
        "01 63 2f 4d 65 61 73 2f 49 4d 55 39 2f 31 30 34"
    )
    assert movesense.unsubscribe(99) == hx("02 63")
    assert movesense.hello(123) == hx("00 7b")
    with pytest.raises(ValueError):
        movesense.subscribe(0, "Acc", 52)


def test_movesense_acc_vector() -> None:
    p = movesense.MovesenseParser("Acc", 52, ref=99)
    (s,) = p.feed(
        hx(
            "02 63 40 e2 01 00 | cd cc cc 3d cd cc 4c be c3 f5 1c 41 |"
            "00 00 00 00 00 00 00 3f d7 a3 1c 41 | 00 00 80 3f 00 00 00 40 00 00 40 40 |"
            "00 00 80 bf 00 00 00 c0 00 00 40 c0"
        )
    )
    assert s.n == 4 and s.gyr is None
    np.testing.assert_allclose(
        s.acc, [[0.1, -0.2, 9.81], [0, 0.5, 9.79], [1, 2, 3], [-1, -2, -3]], rtol=1e-6
    )
    np.testing.assert_allclose(s.device_t, 123.456 + np.arange(4) / 52)


def test_movesense_imu6_is_reassembled_from_two_parts() -> None:
    rng = np.random.default_rng(0)
    acc, gyr = rng.normal(size=(8, 3)), rng.normal(size=(8, 3)) * 100
    blob = struct.pack("<I", 5000) + acc.astype("<f4").tobytes() + gyr.astype("<f4").tobytes()
    msg = bytes([2, 7]) + blob  # 198 bytes: DATA carries 152, PART2 the rest
    p = movesense.MovesenseParser("IMU6", 104, ref=7)
    assert p.feed(msg[:152]) == []
    (s,) = p.feed(bytes([3, 7]) + msg[152:])
    np.testing.assert_allclose(s.acc, acc.astype("<f4"))
    np.testing.assert_allclose(s.gyr, gyr.astype("<f4"))
    assert p.stats.malformed == 0
    # An orphan second part: its first was lost on the air (loss, not a malformed packet).
    assert p.feed(bytes([3, 7]) + msg[152:]) == [] and p.orphan_parts == 1
    assert p.stats.malformed == 0 and p.stats.ignored == 1
    assert p.feed(bytes([2, 8]) + blob[:30]) == [] and p.stats.ignored == 2  # other stream


# -- Polar PMD -----------------------------------------------------------------------------


def test_polar_commands_and_responses() -> None:
    assert polar.get_settings(polar.ACC) == hx("01 02")
    assert polar.start(polar.ACC, {2: 8, 0: 200, 1: 16}) == hx(
        "02 02 02 01 08 00 00 01 C8 00 01 01 10 00"
    )
    assert polar.stop(polar.ACC) == hx("03 02")
    r = polar.parse_control(
        hx("F0 01 02 00 00 | 00 04 19 00 32 00 64 00 C8 00 |01 01 10 00 | 02 03 02 00 04 00 08 00")
    )
    assert r is not None and r.ok
    assert polar.parse_settings(r.params) == {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8]}
    r = polar.parse_control(hx("F0 02 02 00 00 05 01 40 DA 7F 39"))
    assert r is not None and r.factor() == pytest.approx(2.44e-4, rel=1e-3)
    bad = polar.parse_control(hx("F0 02 02 0A 00"))
    assert bad is not None and bad.status_name == "INVALID_MTU"


def test_polar_h10_raw_acc_vector() -> None:
    p = polar.PolarParser(polar.ACC, 200)
    (s,) = p.feed(hx("02 EA 54 A2 42 8B 45 52 08 01 45 FF E4 FF B5 03 45 FF E4 FF B8 03"))
    assert s.n == 2
    np.testing.assert_allclose(s.acc[0], np.array([-187, -28, 949]) * G / 1000)
    assert s.device_t[-1] == pytest.approx(599618164814402794 / 1e9)
    assert s.device_t[1] - s.device_t[0] == pytest.approx(1 / 200)


def test_polar_verity_delta_acc_vector() -> None:
    # The spec's frame, with its block count cut to the 2 deltas the PDF shows.
    frame = hx("02 64 6C 76 C4 3C C6 7F 07 80 D0 FF 65 01 E4 0F 08 02 FC 07 FF 0C 13 F2")
    p = polar.PolarParser(polar.ACC, 52, factor=2.44e-4)
    (s,) = p.feed(frame)
    raw = np.round(s.acc / (2.44e-4 * G)).astype(int)
    assert raw.tolist() == [[-48, 357, 4068], [-52, 364, 4067], [-40, 383, 4053]]
    assert s.acc[0, 2] / G == pytest.approx(0.9926, abs=1e-4)
    truncated = hx("02 64 6C 76 C4 3C C6 7F 07 80 D0 FF 65 01 E4 0F 08 1D FC 07 FF 0C 13 F2")
    assert p.feed(truncated) == [] and p.stats.malformed == 1


def test_polar_gyro_delta_vector() -> None:
    p = polar.PolarParser(polar.GYRO, 52, factor=1.0)
    (s,) = p.feed(hx("05 FF FF FF FF FF FF FF 7F 80 EA FF 08 00 0D 00 03 01 DF 00"))
    assert s.gyr.tolist() == [[-22, 8, 13], [-23, 11, 16]]


# -- WitMotion -----------------------------------------------------------------------------


def test_witmotion_vector_split_merged_and_resynchronised() -> None:
    pkt = hx("55 61 00 00 00 00 00 08 00 00 00 00 a4 00 00 00 00 00 00 40")
    p = witmotion.WitMotionParser()
    (s,) = p.feed(pkt)
    np.testing.assert_allclose(s.acc[0], [0, 0, G])
    assert s.gyr[0, 2] == pytest.approx(10.01, abs=0.01)
    # Split across notifications, merged with a register reply, after garbage.
    reply = bytes([0x55, 0x71]) + bytes(18)
    stream = b"\x01\x02" + pkt[:7] + pkt[7:] + reply + pkt
    out = [x for i in range(0, len(stream), 9) for x in p.feed(stream[i : i + 9])]
    assert sum(x.n for x in out) == 2 and p.stats.ignored == 1 and p.stats.malformed >= 1
    assert witmotion.set_rate(50) == hx("FF AA 03 08 00") and witmotion.unlock() == hx(
        "FF AA 69 88 B5"
    )


# -- Thingy:52, Myo, generic ----------------------------------------------------------------


def test_thingy_raw_vector_and_rate_config() -> None:
    p = thingy.ThingyParser()
    (s,) = p.feed(hx("00 00 00 00 00 04 20 00 e0 ff 00 00 a0 00 60 ff 10 00"))
    np.testing.assert_allclose(s.acc[0], [0, 0, G])
    np.testing.assert_allclose(s.gyr[0], [1, -1, 0])
    assert thingy.config_with_rate(thingy.DEFAULT_CONFIG, 100) == hx("e8 03 f4 01 f4 01 64 00 01")
    assert p.feed(bytes(17)) == [] and p.stats.malformed == 1


def test_myo_vectors() -> None:
    (s,) = myo.MyoImuParser().feed(
        hx("00 40 00 00 00 00 00 00 00 00 00 00 00 08 00 00 00 00 a0 00")
    )
    np.testing.assert_allclose(s.acc[0], [0, 0, G])
    np.testing.assert_allclose(s.gyr[0], [0, 0, 10])
    (e,) = myo.MyoEmgParser().feed(hx("05 fb 00 7f 80 01 02 03 00 00 00 00 00 00 00 00"))
    assert e.emg.tolist() == [[5, -5, 0, 127, -128, 1, 2, 3], [0] * 8]
    assert hx("01 03 03 01 00") == myo.RAW_EMG_AND_IMU
    assert myo.EMG_DATA[3] == "d5060405-a904-deb9-4748-2c7f4a124842"


def test_generic_band_described_in_config_decodes_thingy_and_witmotion() -> None:
    th = generic.GenericParser(
        "<9h",
        ["ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz"],
        [G / 1024] * 3 + [1 / 32] * 3 + [1 / 16] * 3,
        length=18,
    )
    (s,) = th.feed(hx("00 00 00 00 00 04 20 00 e0 ff 00 00 a0 00 60 ff 10 00"))
    np.testing.assert_allclose(s.acc[0], [0, 0, G])
    np.testing.assert_allclose(s.gyr[0], [1, -1, 0])
    wit = generic.GenericParser(
        "<9h",
        ["ax", "ay", "az", "gx", "gy", "gz", "roll", "pitch", "yaw"],
        [16 * G / 32768] * 3 + [2000 / 32768] * 3 + [180 / 32768] * 3,
        header_skip=2,
        sync=hx("55 61"),
        length=20,
    )
    pkt = hx("55 61 00 00 00 00 00 08 00 00 00 00 a4 00 00 00 00 00 00 40")
    out = [x for chunk in (b"\xee" + pkt[:5], pkt[5:] + pkt[:3], pkt[3:]) for x in wit.feed(chunk)]
    assert sum(x.n for x in out) == 2
    np.testing.assert_allclose(out[0].acc[0], [0, 0, G])
    with pytest.raises(ValueError, match="fields name"):
        generic.GenericParser("<3h", ["ax", "ay"])


# -- random bytes ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=260), max_size=6))
def test_parsers_never_raise_on_random_bytes(packets: list[bytes]) -> None:
    parsers = [
        movesense.MovesenseParser(
            "IMU6", 104, ref=packets[0][1] if packets and len(packets[0]) > 1 else 1
        ),
        polar.PolarParser(polar.ACC, 52, 2.44e-4),
        polar.PolarParser(polar.GYRO, 52, 0.01),
        witmotion.WitMotionParser(),
        thingy.ThingyParser(),
        myo.MyoEmgParser(),
        myo.MyoImuParser(),
        generic.GenericParser("<3h", ["ax", "ay", "az"], [0.01] * 3, header_skip=1),
        generic.GenericParser("<4f", ["emg0", "emg1", "gx", "x"], sync=b"\xaa", length=17),
    ]
    for p in parsers:
        for pkt in packets:
            for s in p.feed(pkt):  # type: ignore[attr-defined]
                for arr in (s.acc, s.gyr):
                    assert arr is None or (arr.shape == (s.n, 3) and np.all(np.isfinite(arr)))
                assert s.emg is None or np.all(np.isfinite(s.emg))
        stats = p.stats  # type: ignore[attr-defined]
        assert stats.packets == len(packets)


# -- mutated frames ---------------------------------------------------------------------------
# Random bytes rarely get past a header; radio corruption and firmware quirks look like
# valid frames with a few bytes wrong. Every parser gets its own valid frames, mutated.

POLAR_ACC = hx("02 64 6C 76 C4 3C C6 7F 07 80 D0 FF 65 01 E4 0F 08 02 FC 07 FF 0C 13 F2")
POLAR_GYRO = hx("05 FF FF FF FF FF FF FF 7F 80 EA FF 08 00 0D 00 03 01 DF 00")
POLAR_H10 = hx("02 EA 54 A2 42 8B 45 52 08 01 45 FF E4 FF B5 03 45 FF E4 FF B8 03")


def _polar_blocks(mtype: int, blocks: int = 4) -> bytes:
    """A delta frame of several small blocks (8-bit deltas, 2 samples each): a mutated
    count or width byte then lands in the middle of a frame, as it does on real frames."""
    content = struct.pack("<3h", -48, 357, 4068)
    for b in range(blocks):
        content += bytes([8, 2]) + bytes([(b + i) & 0xFF for i in range(6)])
    return bytes([mtype]) + struct.pack("<Q", 10**15) + b"\x80" + content


def _movesense_frame(ts: int = 123456, n: int = 4) -> bytes:
    return bytes([2, 7]) + struct.pack("<I", ts) + np.arange(n * 6, dtype="<f4").tobytes()


FUZZ: dict[str, tuple[Any, list[bytes], bool]] = {
    # parser factory, valid frames, whether each notification stands alone (no buffering)
    "movesense": (
        lambda: movesense.MovesenseParser("IMU6", 104, ref=7),
        [_movesense_frame(1000), _movesense_frame(1077)],
        False,
    ),
    "polar-acc": (
        lambda: polar.PolarParser(polar.ACC, 52, 2.44e-4),
        [POLAR_ACC, _polar_blocks(polar.ACC)],
        True,
    ),
    "polar-gyro": (
        lambda: polar.PolarParser(polar.GYRO, 52, 0.061),
        [POLAR_GYRO, _polar_blocks(polar.GYRO)],
        True,
    ),
    "polar-h10": (lambda: polar.PolarParser(polar.ACC, 200), [POLAR_H10], True),
    "thingy": (thingy.ThingyParser, [bytes(range(18))], True),
    "witmotion": (
        witmotion.WitMotionParser,
        [hx("55 61 00 00 00 00 00 08 00 00 00 00 a4 00 00 00 00 00 00 40")],
        False,
    ),
    "myo-emg": (myo.MyoEmgParser, [bytes(range(16))], True),
    "myo-imu": (myo.MyoImuParser, [bytes(range(20))], True),
    "generic": (
        lambda: generic.GenericParser("<6h", ["ax", "ay", "az", "gx", "gy", "gz"], header_skip=1),
        [bytes(range(25))],
        True,
    ),
    "generic-sync": (
        lambda: generic.GenericParser("<3h", ["ax", "ay", "az"], sync=b"\x55\x61", length=8),
        [hx("55 61 01 00 02 00 03 00")],
        False,
    ),
}


def _mutate(frame: bytes, ops: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(frame)
    for kind, where, value in ops:
        i = where % (len(out) + 1)
        if kind == 0 and i < len(out):
            out[i] = value  # a byte changed
        elif kind == 1:
            out.insert(i, value)  # a byte too many
        elif kind == 2 and i < len(out):
            del out[i]  # a byte missing
        elif kind == 3:
            del out[i:]  # cut short
    return bytes(out)


def _check_feed(p: Any, pkt: bytes, alone: bool) -> None:
    before = (p.stats.malformed, p.stats.ignored)
    out = p.feed(pkt)
    for s in out:
        assert s.n >= 1
        for arr in (s.acc, s.gyr, s.emg):
            assert arr is None or (arr.shape[0] == s.n and np.all(np.isfinite(arr)))
        if s.device_t is not None:
            assert s.device_t.shape == (s.n,) and np.all(np.diff(s.device_t) > 0)
    if alone and not out:
        # A notification that gives no samples was counted as malformed or as not data.
        assert (p.stats.malformed, p.stats.ignored) != before, pkt.hex()


OPS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=4
)


@pytest.mark.parametrize("name", list(FUZZ))
@settings(max_examples=150, deadline=None)
@given(mutations=st.lists(st.tuples(st.integers(0, 10), OPS), min_size=1, max_size=5))
def test_parsers_never_raise_on_mutated_frames_and_count_what_they_reject(
    name: str, mutations: list[tuple[int, list[tuple[int, int, int]]]]
) -> None:
    make, frames, alone = FUZZ[name]
    p = make()
    fed = 0
    for which, ops in mutations:
        good = frames[which % len(frames)]
        for pkt in (good, _mutate(good, ops)):
            _check_feed(p, pkt, alone)
            fed += 1
    assert p.stats.packets == fed


@pytest.mark.parametrize("name", list(FUZZ))
def test_parsers_survive_many_seeded_mutations(name: str) -> None:
    """A brute-force sweep beside hypothesis' search: 3,000 mutated frames a parser."""
    make, frames, alone = FUZZ[name]
    p = make()
    rng = np.random.default_rng(12)
    for k in range(3000):
        good = frames[k % len(frames)]
        n_ops = int(rng.integers(1, 4))
        ops = [(int(rng.integers(0, 4)), int(rng.integers(0, 300)), int(rng.integers(0, 256)))]
        ops += [(0, int(rng.integers(0, 300)), int(rng.integers(0, 256))) for _ in range(n_ops)]
        _check_feed(p, _mutate(good, ops), alone)
    assert p.stats.packets == 3000 and p.stats.malformed > 0


def test_a_polar_delta_block_of_zero_samples_is_malformed_not_an_exception() -> None:
    p = polar.PolarParser(polar.GYRO, 52)
    assert p.feed(hx("05ffffffffffffff7f8087b588c7eaff08000d000301df00")) == []
    assert p.stats.malformed == 1 and "0 samples" in p.stats.notes[0]


def test_a_lost_polar_frame_is_a_gap_and_every_frame_keeps_its_own_sample_period() -> None:
    """Frames of 5 samples at 52 Hz; the third is lost. The next frame must not be
    stretched over two frames' time: its samples keep the band's period."""
    from fakebluez.bands import delta_encode

    period = 1e9 / 52.5  # the band runs a little off nominal 52 Hz: its own period is kept
    p = polar.PolarParser(polar.ACC, 52, 1.0)
    times = []
    for k in (0, 1, 3, 4):
        ts = 10**15 + round((5 * k + 4) * period)
        frame = bytes([polar.ACC]) + struct.pack("<Q", ts) + b"\x80"
        (s,) = p.feed(frame + delta_encode(np.full((5, 3), k)))
        times.append(s.device_t)
    steps = np.diff(np.concatenate(times))
    assert np.allclose(steps[:4], 1 / 52)  # the first frame: nominal, nothing to measure yet
    assert np.allclose(steps[4:9], period / 1e9)  # then its own period, measured
    assert np.isclose(steps[9], 6 * period / 1e9)  # five samples missing before frame 3
    assert np.allclose(steps[10:], period / 1e9)  # not stretched
    assert p.gaps == 1 and p.lost_samples == 5


def test_a_movesense_message_missing_one_of_its_two_parts_is_loss_not_malformed() -> None:
    def parts(ts: int) -> list[bytes]:
        msg = _movesense_frame(ts, n=8)  # 198 bytes: sent as DATA + DATA_PART2
        return [msg[: movesense.MAX_PART], bytes([movesense.DATA_PART2, 7]) + msg[152:]]

    p = movesense.MovesenseParser("IMU6", 104, ref=7)
    a, b, c, d = parts(1000), parts(1077), parts(1154), parts(1231)
    got = [s.n for pkt in (*a, b[1], *c, d[0]) for s in p.feed(pkt)]  # b[0], d[1] lost
    got += [s.n for s in p.feed(parts(1308)[0])]  # d[0] now known to be alone
    assert got == [8, 8]
    assert p.orphan_parts == 2 and p.stats.malformed == 0
