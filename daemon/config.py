"""The daemon's configuration: one TOML file, validated by pydantic.

An error names the key path, the bad value and what was expected, so a technician can
fix the file without reading code. Secrets are `SecretStr`: they never print.
"""

from __future__ import annotations

import math
import re
import socket
import ssl
import struct
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from clonusd.dsp.sites import SiteParams, site_params

if TYPE_CHECKING:
    from clonusd.daemon.sources.ble.bands.generic import GenericParser
    from clonusd.daemon.sources.ble.bands.polar import Model as PolarModel

UUID_PATTERN = r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$"


class ConfigError(Exception):
    """A configuration that cannot be used; the message lists every problem, one a line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Strict):
    host: str = Field("localhost", min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, min_length=1, max_length=128)  # clonusd-<daemon id>
    topic_prefix: str = Field("clonusd", max_length=200)
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_s: int = Field(30, ge=5, le=3600)

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if (
            not v
            or any(c in v for c in "#+\0")
            or v.startswith("/")
            or v.endswith("/")
            or "//" in v
        ):
            raise ValueError("must be a plain topic path without wildcards or edge slashes")
        return v

    @model_validator(mode="after")
    def _secrets(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            try:
                secret = self.password_file.read_bytes()[:4096].decode("utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {self.password_file}: {exc.strerror}"
                ) from None
            except UnicodeDecodeError:
                raise ConfigError(
                    f"mqtt.password_file: {self.password_file} is not UTF-8 text"
                ) from None
            if not secret:
                raise ConfigError(f"mqtt.password_file: {self.password_file} is empty")
            return secret
        return None


class DetectorOverrides(_Strict):
    threshold_beats: int | None = Field(None, ge=1, le=50)
    band_hz: tuple[float, float] | None = None
    rate_hz: tuple[float, float] | None = None
    min_harmonic_ratio: float | None = Field(None, ge=0, le=1)
    max_envelope_floor: float | None = Field(None, ge=0, le=1)
    max_burst_s: float | None = Field(None, gt=0)  # inf turns the EMG burst-time check off
    max_period_cv: float | None = Field(None, gt=0)  # inf turns the EMG evenness check off
    max_alternation: float | None = Field(None, ge=0, le=1)  # 0 turns the EMG check off
    min_envelope_rhythm: float | None = Field(None, ge=-2, le=2)  # -2 turns the EMG check off
    max_excursion: dict[Literal["gyr", "acc"], float] | None = None
    max_beat_spread: float | None = Field(None, gt=0)  # inf turns the motion check off
    max_interval_swing: float | None = Field(None, gt=0)  # inf turns the motion check off
    max_lead_in: float | None = Field(None, gt=0)  # inf turns the check off
    min_seen_before_s: float | None = Field(None, ge=0, le=60)  # 0 turns the check off

    @field_validator("band_hz", "rate_hz")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0.1 <= v[0] < v[1] <= 500:
            raise ValueError("must be [low, high] in Hz with 0.1 <= low < high <= 500")
        return v


class ScheduledEpisode(_Strict):
    at_s: float = Field(ge=0, le=1e7)
    beats: int = Field(ge=1, le=500)
    frequency_hz: float = Field(5.5, gt=2, lt=12)


class SimulatedSource(_Strict):
    kind: Literal["simulated"]
    sensor: Literal["imu6", "acc3", "emg"] = "imu6"
    fs_hz: float = Field(200.0, ge=10, le=4000)
    chunk: int = Field(8, ge=1, le=200)  # samples per notification
    amplitude: float = Field(60.0, gt=0, le=1e5)  # deg/s (imu6), m/s^2 (acc3), mV (emg)
    noise: float = Field(2.0, ge=0, le=1e5)
    episodes: list[ScheduledEpisode] = Field(default_factory=list, max_length=10000)
    random_every_s: float | None = Field(None, ge=1, le=1e7)  # random episodes this often
    stall_at_s: float | None = Field(None, ge=0, le=1e7)  # stop sending while "connected"
    seed: int = Field(0, ge=0, le=2**31)


class ReplaySource(_Strict):
    kind: Literal["replay"]
    file: Path
    speed: float = Field(1.0, gt=0, le=10000)
    loop: bool = False
    chunk: int = Field(8, ge=1, le=1000)


def _hex_bytes(v: str) -> str:
    try:
        bytes.fromhex(v)
    except ValueError:
        raise ValueError('must be hex bytes, e.g. "ff aa 03 09 00"') from None
    return v


class GattWrite(_Strict):
    """One write to the band: which characteristic, what bytes (hex), whether acknowledged."""

    char: str = Field(pattern=UUID_PATTERN)
    hex: str
    response: bool = True

    @field_validator("hex")
    @classmethod
    def _hex(cls, v: str) -> str:
        return _hex_bytes(v)

    def data(self) -> bytes:
        return bytes.fromhex(self.hex)


class GenericBand(_Strict):
    """A DIY band described entirely here: what to subscribe, what to write, how to decode."""

    sensor: Literal["imu6", "acc3", "emg"]
    notify: list[str] = Field(min_length=1)
    start: list[GattWrite] = Field(default_factory=list)
    stop: list[GattWrite] = Field(default_factory=list)
    record: str
    fields: list[str] = Field(min_length=1)
    scale: list[float] | None = None
    header_skip: int = Field(0, ge=0, le=64)
    sync: str | None = None  # hex, e.g. "55 61": cut frames of `length` bytes at this header
    length: int | None = Field(None, ge=1, le=512)

    @field_validator("record")
    @classmethod
    def _record(cls, v: str) -> str:
        # Sized before anything is built from it: "<1000000000h" must not allocate 2 GB.
        try:
            size = struct.calcsize(v)
        except struct.error as exc:
            raise ValueError(f"not a struct format: {exc}") from None
        if not 0 < size <= 512:
            raise ValueError(f"a record of {size} bytes cannot come in a BLE notification")
        return v

    @field_validator("sync")
    @classmethod
    def _sync(cls, v: str | None) -> str | None:
        return None if v is None else _hex_bytes(v)

    @field_validator("notify")
    @classmethod
    def _uuids(cls, v: list[str]) -> list[str]:
        for u in v:
            if not re.fullmatch(UUID_PATTERN, u):
                raise ValueError(
                    f"{u!r} is not a 128-bit UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
                )
        return [u.lower() for u in v]

    @model_validator(mode="after")
    def _layout(self) -> GenericBand:
        if len(self.fields) > 64 or (self.scale is not None and len(self.scale) > 64):
            raise ValueError("at most 64 fields")
        if self.scale is not None and not all(math.isfinite(x) for x in self.scale):
            raise ValueError("scale must be finite numbers")
        self.parser()  # a layout the parser refuses is named here, at load time
        names = set(self.fields)
        need = {
            "imu6": {"ax", "ay", "az", "gx", "gy", "gz"},
            "acc3": {"ax", "ay", "az"},
            "emg": set(),
        }[self.sensor]
        if not need <= names:
            raise ValueError(f"a {self.sensor} band needs fields {sorted(need - names)}")
        if self.sensor == "emg" and not any(f.startswith("emg") for f in self.fields):
            raise ValueError("an emg band needs at least one field named emg0, emg1, ...")
        return self

    def parser(self) -> GenericParser:
        """A fresh parser for this layout (raises ValueError if it is not a valid one)."""
        from clonusd.daemon.sources.ble.bands.generic import GenericParser

        sync = bytes.fromhex(self.sync) if self.sync else None
        return GenericParser(
            self.record, self.fields, self.scale, self.header_skip, sync, self.length
        )


_MOVESENSE_HZ = (13, 26, 52, 104, 208)
_POLAR_HZ = (25, 26, 50, 52, 100, 104, 200, 208, 416)  # H10 and Verity Sense together
_ANY_HZ = tuple(range(1, 4001))

# Each profile: the sensor kinds it delivers (the first is its default), and for each the
# rates it accepts and the rate used when the config gives none.
BLE_PROFILES: dict[str, dict[str, tuple[tuple[int, ...], int]]] = {
    "movesense": {"imu6": (_MOVESENSE_HZ, 104), "acc3": (_MOVESENSE_HZ, 104)},
    "polar": {"acc3": (_POLAR_HZ, 100), "imu6": (_POLAR_HZ, 52)},  # per model: bands/polar.py
    "thingy52": {"imu6": (tuple(range(5, 201)), 100)},
    "witmotion": {"imu6": ((10, 20, 50, 100, 200), 100)},
    "myo": {"emg": ((200,), 200), "imu6": ((50,), 50)},  # raw EMG, or its IMU
    "generic": {kind: (_ANY_HZ, 100) for kind in ("imu6", "acc3", "emg")},
}


class BleSource(_Strict):
    kind: Literal["ble"]
    profile: Literal["movesense", "polar", "thingy52", "witmotion", "myo", "generic"] = "movesense"
    address: str | None = Field(None, pattern=r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
    name: str | None = None
    rate_hz: int | None = None  # the profile's default when not given
    sensor: Literal["imu6", "acc3", "emg"] | None = None  # polar: acc3 (H10) or imu6 (Verity)
    model: Literal["h10", "verity"] | None = None  # polar: which band, if its name does not say
    scan_timeout_s: float = Field(10.0, gt=0, le=120)
    connect_timeout_s: float = Field(20.0, gt=0, le=120)
    generic: GenericBand | None = None

    @model_validator(mode="after")
    def _target(self) -> BleSource:
        if (self.address is None) == (self.name is None):
            raise ValueError("give the band's address or its advertised name (one of them)")
        sensors = BLE_PROFILES[self.profile]
        if self.sensor is not None and self.sensor not in sensors:
            raise ValueError(
                f"the {self.profile} profile delivers {' or '.join(sensors)}, not {self.sensor}"
            )
        if self.profile == "polar":
            from clonusd.daemon.sources.ble.bands.polar import check_config

            check_config(self.model, self.name, self.sensor, self.rate_hz)  # names the fix
            return self
        if self.model is not None:
            raise ValueError(f'model is for profile "polar", not {self.profile!r}')
        if self.profile == "generic":
            if self.generic is None:
                raise ValueError('profile "generic" needs a [sensors.source.generic] table')
            if self.rate_hz is None:
                raise ValueError('profile "generic" needs rate_hz (the band\'s sample rate)')
        elif self.generic is not None:
            raise ValueError(f'a generic table is only for profile "generic", not {self.profile!r}')
        rates = sensors[self.sensor_kind][0]
        if self.rate_hz is not None and self.rate_hz not in rates:
            shown = f"{rates[0]}..{rates[-1]}" if len(rates) > 20 else ", ".join(map(str, rates))
            which = f" for {self.sensor_kind}" if len({r for r, _ in sensors.values()}) > 1 else ""
            raise ValueError(
                f"rate_hz {self.rate_hz} is not one the {self.profile} profile offers{which}"
                f" ({shown})"
            )
        return self

    @property
    def rate(self) -> int:
        if self.profile == "polar":
            return self._polar()[2]
        if self.rate_hz is not None:
            return self.rate_hz
        return BLE_PROFILES[self.profile][self.sensor_kind][1]

    @property
    def sensor_kind(self) -> str:
        if self.generic is not None:
            return self.generic.sensor
        if self.profile == "polar":
            return self._polar()[1]
        return self.sensor or next(iter(BLE_PROFILES[self.profile]))

    @property
    def polar_model(self) -> str | None:
        """Which Polar band ("h10", "verity"), from `model` or the name; None otherwise."""
        return self._polar()[0].key if self.profile == "polar" else None

    def _polar(self) -> tuple[PolarModel, str, int]:
        from clonusd.daemon.sources.ble.bands.polar import check_config

        return check_config(self.model, self.name, self.sensor, self.rate_hz)


SourceConfig = Annotated[SimulatedSource | ReplaySource | BleSource, Field(discriminator="kind")]


class SensorConfig(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    bed: str = Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")
    site: Literal["ankle", "wrist", "knee"]
    side: Literal["left", "right", "unknown"] = "unknown"
    source: SourceConfig
    detector: DetectorOverrides = DetectorOverrides()
    stall_after_s: float = Field(3.0, ge=0.5, le=300)

    def site_params(self) -> SiteParams:
        params = site_params(self.site)
        changes = {k: v for k, v in self.detector.model_dump().items() if v is not None}
        return params.with_overrides(**changes) if changes else params


DAEMON_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


def default_daemon_id() -> str:
    """The host name, made topic-safe (one daemon per host is the usual install)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-.")
    return name or "clonusd"


class DaemonConfig(_Strict):
    # Names this daemon in topics and payloads (`{prefix}/daemon/{id}/availability`).
    id: str = Field(default_factory=default_daemon_id, pattern=DAEMON_ID_PATTERN)
    state_dir: Path = Path("/var/lib/clonusd")
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Strict):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    mqtt: MqttConfig = MqttConfig()
    sensors: list[SensorConfig] = Field(min_length=1, max_length=64)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"clonusd-{self.daemon.id}"

    @model_validator(mode="after")
    def _unique(self) -> Config:
        seen: set[tuple[str, str]] = set()
        for s in self.sensors:
            if (s.bed, s.id) in seen:
                raise ValueError(f"sensor id {s.id!r} appears twice for bed {s.bed!r}")
            seen.add((s.bed, s.id))
        return self


def _describe(err: dict[str, object]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"  # type: ignore[attr-defined]
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] in ("missing",):
        return f"{loc}: required key is missing"
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    value = err.get("input")
    secret = "password" in loc
    shown = "" if secret or isinstance(value, dict | list) else f" (got {value!r})"
    return f"{loc}: {msg}{shown}"


MAX_CONFIG_BYTES = 1 << 20


def parse_config(text: str, source: str = "<config>") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: nested too deeply") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(dict(e)) for e in exc.errors(include_url=False)]
        raise ConfigError(f"{source}: " + "\n  ".join(["invalid configuration:", *lines])) from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid configuration: nested too deeply") from None


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_config(text, str(path))


def _readable(key: str, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def check_files(cfg: Config) -> None:
    """Every file the config names exists and is usable: secrets, TLS material."""
    m = cfg.mqtt
    for key in ("password_file", "tls_ca", "tls_cert", "tls_key"):
        path = getattr(m, key)
        if path is not None:
            _readable(f"mqtt.{key}", path)
    m.resolved_password()
    if m.tls_ca is not None:
        try:
            ctx = ssl.create_default_context(cafile=str(m.tls_ca))
            if m.tls_cert is not None and m.tls_key is not None:
                ctx.load_cert_chain(str(m.tls_cert), str(m.tls_key))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt.tls_ca/tls_cert/tls_key: not usable: {exc}") from None
