"""Sample times for BLE bands: the device's spacing where it has a clock, the nominal
rate from arrival where it has none, and never a step back in time."""

from __future__ import annotations

import numpy as np

from clonusd.daemon.sources.ble.profiles import DeviceClock, HostClock


def test_device_clock_keeps_the_bands_spacing_on_the_hosts_axis() -> None:
    clock = DeviceClock()
    t1 = clock.map(np.array([10.00, 10.01, 10.02]), received=500.0)
    t2 = clock.map(np.array([10.03, 10.04]), received=500.1)  # arrived late: spacing kept
    assert np.allclose(np.diff(np.concatenate([t1, t2])), 0.01)
    assert t1[-1] == 500.0


def test_device_clock_never_steps_back_across_a_reconnect_or_a_band_reboot() -> None:
    clock = DeviceClock()
    before = clock.map(np.array([1.00, 1.01]), received=100.0)
    clock.reset()  # new link session; the band rebooted and its clock restarted at 0
    after = clock.map(np.array([0.00, 0.01]), received=99.995)  # anchor behind the last
    assert after[0] > before[-1]
    assert np.isclose(after[1] - after[0], 0.01)


def test_host_clock_spaces_bursts_at_the_nominal_rate_and_reanchors_after_a_loss() -> None:
    clock = HostClock(fs=100.0)
    a = clock.times(1, received=10.000)
    burst = [clock.times(1, received=10.031)[0] for _ in range(3)]  # one connection event
    assert np.allclose(np.diff([a[0], *burst]), 0.01)
    late = clock.times(2, received=11.0)  # a second of nothing: the gap shows in the times
    assert late[0] - burst[-1] > 0.5 and np.isclose(late[1] - late[0], 0.01)
    assert late[-1] == 11.0
