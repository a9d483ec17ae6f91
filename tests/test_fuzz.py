"""Fuzzing (hypothesis) the three doors anything can come through: the config file, a
recording, and whatever arrives on the broker for the monitor.

- A mutated config is either refused with ConfigError or accepted, and accepted means
  every source and detector was built and ran a second of signal (what `run` needs).
- A malformed recording is refused with RecordingError, or it replays through the
  detector without an exception.
- The monitor's board takes any payload on any topic and still renders.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clonusd.daemon.commands.monitor import Board
from clonusd.daemon.config import ConfigError, parse_config
from clonusd.daemon.service.preflight import build_sources
from clonusd.daemon.sources.recording import RecordingError, load_recording

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

BASE_CONFIG = """
[daemon]
id = "fuzz"
state_dir = "/nonexistent/state"
[mqtt]
host = "127.0.0.1"
port = 1883
keepalive_s = 30
[[sensors]]
id = "s1"
bed = "b1"
site = "ankle"
side = "left"
stall_after_s = 3.0
[sensors.source]
kind = "simulated"
sensor = "imu6"
fs_hz = 200
chunk = 8
amplitude = 60.0
noise = 2.0
episodes = [{ at_s = 2, beats = 8, frequency_hz = 5.5 }]
[sensors.detector]
threshold_beats = 5
band_hz = [2.5, 10.0]
rate_hz = [3.0, 9.0]
min_harmonic_ratio = 0.003
"""

TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (
            "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf") if math.isinf(f) else repr(f)
        )
    ),
    st.sampled_from(
        [
            "1e-300",
            "1e300",
            "0",
            "-1",
            "true",
            '""',
            '"x"',
            "[]",
            "[1e-300, 1e300]",
            "{}",
            '"emg"',
            '"acc3"',
            "[0.1, 500]",
            "[499, 500]",
            "[5, 4]",
            '"<6h"',
            "12000",
        ]
    ),
    st.text(max_size=20).map(json.dumps),
)


@FUZZ
@given(data=st.data())
def test_a_mutated_config_is_refused_or_runs(data: st.DataObject) -> None:
    lines = BASE_CONFIG.splitlines()
    keyed = [i for i, ln in enumerate(lines) if " = " in ln]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.sampled_from(keyed))
        key = lines[i].split(" = ", 1)[0]
        lines[i] = f"{key} = {data.draw(TOML_VALUES)}"
    text = "\n".join(lines)
    try:
        cfg = parse_config(text)
        build_sources(cfg)
    except ConfigError as exc:
        assert str(exc).strip()


@FUZZ
@given(raw=st.binary(max_size=400))
def test_config_bytes_are_refused_with_a_config_error(raw: bytes) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_config turns these into ConfigError (tests/test_inputs.py)
    with contextlib.suppress(ConfigError):
        build_sources(parse_config(BASE_CONFIG + "\n" + text))


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1e300, -1e300, 1e-300, 5.0, 9.81]),
)


@FUZZ
@given(
    n=st.integers(0, 300),
    fs=st.one_of(FLOATS, st.integers(-5, 10**12), st.text(max_size=8), st.none()),
    dt=FLOATS,
    start=FLOATS,
    value=FLOATS,
    jitter=st.lists(FLOATS, max_size=5),
)
def test_a_malformed_recording_is_refused_or_replays(
    tmp_path_factory: object,
    n: int,
    fs: object,
    dt: float,
    start: float,
    value: float,
    jitter: list[float],
) -> None:
    from clonusd.daemon.commands.replay import replay_events

    folder = Path(tmp_path_factory.mktemp("rec"))  # type: ignore[attr-defined]
    path = folder / "r.csv"
    rows = ["t,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"]
    for i in range(n):
        t = start + i * dt
        v = jitter[i % len(jitter)] if jitter else value
        rows.append(f"{t!r},{v!r},0,9.81,{value!r},0,0")
    path.write_text("\n".join(rows) + "\n")
    meta: dict[str, object] = {"sensor": "imu6", "site": "ankle"}
    if fs is not None:
        meta["fs_hz"] = fs
    path.with_suffix(".json").write_text(json.dumps(meta))
    try:
        rec = load_recording(path)
    except RecordingError as exc:
        assert str(exc).strip()
        return
    for _ in replay_events(rec, None, None):
        pass


TOPICS = st.sampled_from(
    [
        "clonusd/bed-1/ankle-l/event",
        "clonusd/bed-1/ankle-l/state",
        "clonusd/bed-1/ankle-l/status",
        "clonusd/daemon/pi-1/availability",
        "clonusd/daemon/pi-1/event",
        "clonusd/daemon/availability",
        "clonusd/x",
        "clonusd/a/b/c/d",
    ]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = [
    "event",
    "beats",
    "frequency_hz",
    "duration_s",
    "clonus",
    "confidence",
    "side",
    "site",
    "link",
    "rate_hz",
    "packet_loss",
    "battery_pct",
    "stalled",
    "state",
    "reason",
    "end_reason",
    "priority",
    "detail",
    "sensor_kind",
    "nominal_rate_hz",
    "quality",
]
CONTRACTISH = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(
        JSON_VALUES,
        st.sampled_from(
            ["clonus.onset", "clonus.end", "sensor.stall", "online", "technical_alarm"]
        ),
    ),
    max_size=8,
).map(json.dumps)
PAYLOADS = st.one_of(
    st.binary(max_size=60),
    JSON_VALUES.map(json.dumps),
    CONTRACTISH,
    st.just("[" * 5000 + "]" * 5000),
).map(lambda p: p if isinstance(p, bytes) else p.encode())


@FUZZ
@given(messages=st.lists(st.tuples(TOPICS, PAYLOADS), min_size=1, max_size=12))
def test_the_monitor_board_survives_anything_on_the_broker(
    messages: list[tuple[str, bytes]],
) -> None:
    board = Board("clonusd")
    for topic, payload in messages:
        line = board.update(topic, payload)
        assert line is None or isinstance(line, str)
        assert isinstance(board.render("test:1883"), str)
