"""Which wait each BlueZ failure gets, on bleak's own exception types."""

from __future__ import annotations

import pytest
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError

from clonusd.daemon.sources.ble.link import retry_delay
from clonusd.daemon.sources.ble.profiles import BandSetupError


@pytest.mark.parametrize(
    ("exc", "low", "high", "reason"),
    [
        (BleakDBusError("org.bluez.Error.InProgress", ["In Progress"]), 1.5, 2.5, "under way"),
        (BleakDeviceNotFoundError("AA:BB:CC:DD:EE:FF"), 0.3, 0.7, "scan again"),
        (
            BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]),
            0.3,
            0.7,
            "aborted",
        ),
        (BleakDBusError("org.bluez.Error.Failed", ["No free connection slot"]), 3.0, 5.0, "slots"),
        (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), 3.7, 6.3, "bluetoothd"),
        (BleakDBusError("org.freedesktop.DBus.Error.NoReply", []), 3.7, 6.3, "bluetoothd"),
        (EOFError(), 3.7, 6.3, "D-Bus connection lost"),
        (BandSetupError("ATT MTU is 185"), 22.0, 38.0, "refused its set-up"),
    ],
)
def test_each_failure_gets_its_wait(
    exc: BaseException, low: float, high: float, reason: str
) -> None:
    for _ in range(20):  # jitter: every draw stays in the band
        delay, why = retry_delay(exc, attempt=0)
        assert low <= delay <= high
        assert reason in why


def test_unclassified_failures_back_off_exponentially_to_a_ceiling() -> None:
    exc = BleakError("something else")
    means = [sum(retry_delay(exc, a)[0] for _ in range(200)) / 200 for a in range(8)]
    assert means[0] == pytest.approx(1.0, rel=0.1)
    assert means[3] == pytest.approx(8.0, rel=0.1)
    assert means[7] == pytest.approx(30.0, rel=0.1)  # capped
