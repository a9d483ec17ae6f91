"""`clonusd scan`: nearby bands, the profile (and, for Polar, the model) each matches, and
signal strength. A Polar band's model comes from its advertised name, as the config's
does; when the name does not say, scan connects to the band for a moment and reads the
Model Number String of its Device Information Service."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from clonusd.daemon.sources.ble.bands import movesense, myo, polar, thingy, witmotion
from clonusd.daemon.sources.ble.profiles import read_model_number

PROFILES: list[tuple[str, tuple[str, ...], str]] = [
    # profile, service UUIDs it advertises or exposes, name prefix
    ("movesense", (movesense.SERVICE, "0000fdf3-0000-1000-8000-00805f9b34fb"), "Movesense"),
    ("polar", (polar.SERVICE,), "Polar"),
    ("thingy52", (thingy.SERVICE,), "Thingy"),
    ("witmotion", (witmotion.SERVICE,), "WT"),
    ("myo", (myo.BASE.format(0x0001),), "Myo"),
]


@dataclass(frozen=True)
class Found:
    address: str
    name: str | None
    rssi: int
    profile: str | None
    model: str | None = None  # polar: "h10" or "verity", the config's `model`


def match_profile(name: str | None, uuids: list[str]) -> str | None:
    lowered = {u.lower() for u in uuids}
    for profile, services, prefix in PROFILES:
        if lowered & set(services) or (name or "").startswith(prefix):
            return profile
    return None


async def model_number(device: BLEDevice, timeout: float = 10.0) -> str | None:
    """The Model Number String of `device`'s Device Information Service, read over a short
    connection; None when it cannot be read in `timeout` seconds or the band has none."""
    try:
        async with asyncio.timeout(timeout), BleakClient(device) as client:
            return await read_model_number(client) or None
    except (BleakError, TimeoutError, OSError):
        return None


async def scan(seconds: float, connect: bool = True) -> list[Found]:
    """Bands heard within `seconds`; with `connect`, a Polar band whose advertised name
    does not say its model is asked for its Device Information (one at a time)."""
    seen = await BleakScanner.discover(timeout=seconds, return_adv=True)
    out = []
    for dev, adv in seen.values():
        name = adv.local_name or dev.name
        profile = match_profile(name, adv.service_uuids)
        model = polar.model_from_name(name) if profile == "polar" else None
        if profile == "polar" and model is None and connect:
            model = polar.model_from_number(await model_number(dev))
        out.append(Found(dev.address, name, adv.rssi, profile, model.key if model else None))
    return sorted(out, key=lambda f: (f.profile is None, -f.rssi))
