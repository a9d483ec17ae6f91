"""Polar configs checked against what the named model can do, before any band is asked:
`clonusd check-config` refuses them with a message that names the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import clonusd

from clonusd.daemon.config import ConfigError, parse_config


def _config(source: str) -> str:
    return f"""
[[sensors]]
id = "ankle-r"
bed = "bed-12"
site = "ankle"
[sensors.source]
kind = "ble"
profile = "polar"
{source}
"""


@pytest.mark.parametrize(
    ("source", "model", "sensor", "rate"),
    [
        ('name = "Polar Sense B5E1F002"', "verity", "imu6", 52),  # not acc3 at 100
        ('name = "Polar Sense B5E1F002"\nsensor = "acc3"', "verity", "acc3", 52),
        ('name = "Polar Sense B5E1F002"\nrate_hz = 208', "verity", "imu6", 208),  # SDK mode
        ('name = "Polar H10 0A1B2C3D"', "h10", "acc3", 100),
        ('address = "A0:9E:1A:00:00:02"\nmodel = "h10"\nrate_hz = 200', "h10", "acc3", 200),
        ('address = "A0:9E:1A:00:00:02"\nsensor = "imu6"', "verity", "imu6", 52),  # gyro: Verity
    ],
)
def test_each_model_gets_its_own_defaults(source: str, model: str, sensor: str, rate: int) -> None:
    src = parse_config(_config(source)).sensors[0].source
    assert (src.polar_model, src.sensor_kind, src.rate) == (model, sensor, rate)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            'name = "Polar H10 0A1B2C3D"\nsensor = "imu6"\nrate_hz = 52',
            'a Polar H10 has no gyroscope (a Verity Sense has one): set sensor = "acc3"',
        ),
        (
            'name = "Polar Sense B5E1F002"\nrate_hz = 100',
            "a Polar Verity Sense streams imu6 at 26, 52, 104, 208, 416 Hz, not 100: "
            "set rate_hz = 52",
        ),
        (
            'name = "Polar H10 0A1B2C3D"\nrate_hz = 52',
            "a Polar H10 streams acc3 at 25, 50, 100, 200 Hz, not 52: set rate_hz = 100",
        ),
        (
            'address = "A0:9E:1A:00:00:02"',
            'say which band with model = "h10" or "verity"',
        ),
        (
            'name = "Polar H10 0A1B2C3D"\nmodel = "verity"',
            "model = \"verity\", but the name 'Polar H10 0A1B2C3D' is a Polar H10",
        ),
    ],
)
def test_the_config_refuses_what_the_model_cannot_do(source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"sensors\.0\.source\.ble: ") as err:
        parse_config(_config(source))
    assert message in str(err.value)


def test_check_config_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(_config('name = "Polar H10 0A1B2C3D"\nsensor = "imu6"\nrate_hz = 52'))
    proc = clonusd("check-config", str(path))
    assert proc.returncode != 0, proc.stdout
    assert 'a Polar H10 has no gyroscope (a Verity Sense has one): set sensor = "acc3"' in (
        proc.stderr
    )


def test_model_is_only_for_polar() -> None:
    with pytest.raises(ConfigError, match='model is for profile "polar"'):
        parse_config(_config('name = "M"\nmodel = "h10"').replace('"polar"', '"movesense"'))
