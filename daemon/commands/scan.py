"""`clonusd scan`: nearby bands, the profile (and, for Polar, the model) each matches, and
signal strength. The model comes from the advertised name, as the config's does."""

from __future__ import annotations

from dataclasses import dataclass

from bleak import BleakScanner

from clonusd.daemon.sources.ble.bands import movesense, myo, polar, thingy, witmotion

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


async def scan(seconds: float) -> list[Found]:
    seen = await BleakScanner.discover(timeout=seconds, return_adv=True)
    out = []
    for dev, adv in seen.values():
        name = adv.local_name or dev.name
        profile = match_profile(name, adv.service_uuids)
        model = polar.model_from_name(name) if profile == "polar" else None
        out.append(Found(dev.address, name, adv.rssi, profile, model.key if model else None))
    return sorted(out, key=lambda f: (f.profile is None, -f.rssi))
