"""Configuration: examples are valid; bad files name the key, the value and what is wanted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, clonusd

from clonusd.daemon.config import ConfigError, load_config, parse_config

GOOD = """
[mqtt]
password = "s3cret-value"
[[sensors]]
id = "ankle-l"
bed = "bed-1"
site = "ankle"
[sensors.source]
kind = "simulated"
"""


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return clonusd("check-config", str(path), timeout=60)


@pytest.mark.parametrize("name", ["clonusd.example.toml", "demo.toml"])
def test_shipped_configs_are_valid(name: str) -> None:
    proc = check(ROOT / "config" / name)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace('site = "ankle"', 'site = "elbow"'),
            "sensors.0.site: Input should be 'ankle', 'wrist' or 'knee' (got 'elbow')",
        ),
        (
            GOOD + "\n[sensors.detector]\nthreshold_beats = 0\n",
            "sensors.0.detector.threshold_beats: Input should be greater than or equal to 1",
        ),
        (
            GOOD + "\n[sensors.detector]\nmin_harmonic_ratio = -0.1\n",
            "sensors.0.detector.min_harmonic_ratio: Input should be greater than or equal to 0",
        ),
        (GOOD.replace("[mqtt]", "[mqtt]\nport = 70000"), "mqtt.port: Input should be less"),
        (
            GOOD.replace('kind = "simulated"', 'kind = "zigbee"'),
            "sensors.0.source: Input tag 'zigbee'",
        ),
        (
            GOOD.replace('kind = "simulated"', 'kind = "ble"'),
            "sensors.0.source.ble: give the band's address or its advertised name",
        ),
        (
            GOOD.replace('kind = "simulated"', 'kind = "ble"\naddress = "0C:8C:DC:0"'),
            "sensors.0.source.ble.address: String should match pattern",
        ),
        (
            GOOD.replace('kind = "simulated"', 'kind = "ble"\nname = "M"\nrate_hz = 100'),
            "rate_hz 100 is not one the movesense profile offers (13, 26, 52, 104, 208)",
        ),
        (
            GOOD.replace(
                'kind = "simulated"', 'kind = "ble"\nname = "P"\nprofile = "polar"'
            ).replace("[sensors.source]", '[sensors.source]\nsensor = "emg"'),
            "the polar profile delivers acc3 or imu6, not emg",
        ),
        (
            GOOD.replace(
                'kind = "simulated"', 'kind = "ble"\nname = "D"\nprofile = "generic"\nrate_hz = 50'
            ),
            'profile "generic" needs a [sensors.source.generic] table',
        ),
        (
            GOOD.replace(
                'kind = "simulated"', 'kind = "ble"\nname = "D"\nprofile = "generic"\nrate_hz = 50'
            )
            + '\n[sensors.source.generic]\nsensor = "acc3"\nnotify = ["7a1c0002-5d0a-4c1e-9a43'
            '-2b8f6f1d0c00"]\nrecord = "<3h"\nfields = ["ax", "ay"]\n',
            "sensors.0.source.ble.generic: record '<3h' has 3 values, fields name 2",
        ),
        (
            GOOD.replace(
                'kind = "simulated"', 'kind = "ble"\nname = "D"\nprofile = "generic"\nrate_hz = 50'
            )
            + '\n[sensors.source.generic]\nsensor = "imu6"\nnotify = ["7a1c0002"]\n'
            'record = "<3h"\nfields = ["ax", "ay", "az"]\n',
            "sensors.0.source.ble.generic.notify: '7a1c0002' is not a 128-bit UUID",
        ),
        (
            GOOD.replace(
                'kind = "simulated"', 'kind = "ble"\nname = "D"\nprofile = "generic"\nrate_hz = 50'
            )
            + '\n[sensors.source.generic]\nsensor = "acc3"\nnotify = ["7a1c0002-5d0a-4c1e-9a43'
            '-2b8f6f1d0c00"]\nrecord = "<3h"\nfields = ["ax", "ay", "az"]\nsync = "zz"\n'
            "length = 8\n",
            'sensors.0.source.ble.generic.sync: must be hex bytes, e.g. "ff aa 03 09 00"',
        ),
        (GOOD.replace('bed = "bed-1"', 'bed = "bed 1"'), "sensors.0.bed: String should match"),
        (GOOD + "\nfoo = 1\n", "sensors.0.source.simulated.foo: unknown key"),
        (GOOD.replace('id = "ankle-l"\n', ""), "sensors.0.id: required key is missing"),
        ("[mqtt]\n", "sensors: required key is missing"),
        ("[mqtt\n", "not valid TOML"),
        (
            GOOD.replace(
                'password = "s3cret-value"', 'password = "s3cret-value"\npassword_file = "/x"'
            ),
            "give password or password_file, not both",
        ),
    ],
)
def test_bad_config_names_the_key_and_exits_non_zero(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    proc = check(path)
    assert proc.returncode == 2
    assert expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cret-value" not in proc.stderr + proc.stdout


def test_secrets_never_print(tmp_path: Path) -> None:
    cfg = parse_config(GOOD)
    assert "s3cret-value" not in repr(cfg) and "s3cret-value" not in str(cfg.mqtt)
    assert cfg.mqtt.resolved_password() == "s3cret-value"
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    cfg2 = parse_config(GOOD.replace('password = "s3cret-value"', f'password_file = "{pw}"'))
    assert cfg2.mqtt.resolved_password() == "from-file"


def test_missing_file_and_detector_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")
    overrides = (
        "threshold_beats = 3\nband_hz = [3.0, 9.0]\nmin_harmonic_ratio = 0\nmax_burst_s = 0.2\n"
    )
    cfg = parse_config(GOOD + "\n[sensors.detector]\n" + overrides)
    params = cfg.sensors[0].site_params()
    assert params.threshold_beats == 3 and params.band_hz == (3.0, 9.0)
    assert params.min_harmonic_ratio == 0.0 and params.max_burst_s == 0.2
