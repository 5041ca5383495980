"""The agent's TOML configuration file: reading, validating, writing and updating it.

The file is written by ``init``, completed by ``enrol`` (gateway URL and log key)
and read by every command.  Unknown keys are errors (a typo must not silently
fall back to a default).  Relative paths are relative to the file's directory.
Environment variables override the file: ``MQTT_URL`` (the broker) and
``IOT_ATTEST_GATEWAY_URL`` (the gateway's REST API).

Example (what ``init`` writes, shortened)::

    [device]
    id = "dev-5x3kq7m2a9b4c1d8"
    state_dir = "/var/lib/iot-attest"

    [key]
    type = "file"                  # the signer backend; see edge_agent/signer.py
    path = "/etc/iot-attest/device.key"

    [meter]
    type = "s0"                    # s0 | sunspec | simulated-charger | simulated-solar
    interval_s = 60

    [meter.s0]
    pin = 17
    pull_up = true
    bounce_time_ms = 10
    impulses_per_kwh = 1000

    [mqtt]
    url = "mqtts://broker.example.org:8883"

    [gateway]
    url = "https://gateway.example.org"
    log_key = "log.example.org+1a2b3c4d+AQ..."
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attest_core.codec import ID_RE
from edge_agent.errors import AgentError, Exit

DEFAULT_CONFIG = Path("/etc/iot-attest/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/iot-attest")
CONFIG_ENV = "IOT_ATTEST_CONFIG"
METER_TYPES = ("s0", "sunspec", "simulated-charger", "simulated-solar")
SUNSPEC_REGISTERS = ("auto", "WH", "TotWhExp", "TotWhImp")


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


@dataclass
class KeyConfig:
    type: str = "file"
    path: Path = Path("device.key")


@dataclass
class S0Config:
    pin: int = 17
    """BCM GPIO number the S0 output is wired to (pin 11 of the header for GPIO17)."""
    pull_up: bool = True
    """True: the internal pull-up holds the line high and the meter's pulse pulls it low."""
    bounce_time_ms: float = 10.0
    """Edges closer than this to the last counted pulse are contact bounce, not pulses."""
    impulses_per_kwh: int = 1000
    """From the meter's label, e.g. "1000 imp/kWh" (1 pulse = 1 Wh)."""
    persist_interval_s: float = 1.0
    """How often the pulse count is written to disk between readings (the crash window)."""
    register_offset_mwh: int = 0
    """Added to the counted energy, e.g. the meter's display when the agent was installed."""
    pin_factory: str = ""
    """gpiozero pin factory (empty: gpiozero's default, or GPIOZERO_PIN_FACTORY)."""


@dataclass
class SunSpecConfig:
    host: str = ""
    port: int = 502
    unit_id: int = 1
    bases: list[int] = field(default_factory=lambda: [40000, 0, 50000])
    """Where to look for the 'SunS' marker, in this order."""
    register: str = "auto"
    """auto (inverter WH, else meter TotWhExp), WH, TotWhExp or TotWhImp."""
    timeout_s: float = 3.0


@dataclass
class SimulatedConfig:
    seed: int = 1
    speed: float = 1.0
    """Simulated time runs this many times faster than wall time (demos)."""
    rated_power_w: int = 0
    """0: the rated power of the enrolment statement."""


@dataclass
class MeterConfig:
    type: str = "s0"
    interval_s: float = 60.0
    s0: S0Config = field(default_factory=S0Config)
    sunspec: SunSpecConfig = field(default_factory=SunSpecConfig)
    simulated: SimulatedConfig = field(default_factory=SimulatedConfig)


@dataclass
class MqttConfig:
    url: str = ""
    """mqtt://host:1883 or mqtts://host:8883 (TLS); user:password@ may be part of it."""
    username: str = ""
    """Empty with a password set: the device id (what a per-device Mosquitto ACL expects)."""
    password: str = ""
    ca_file: str = ""
    """CA certificate(s) for mqtts://; empty: the system's trust store."""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = 60
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 120.0
    resend_after_s: float = 600.0
    """Publish unreceipted readings again when no receipt came for this long."""
    max_inflight: int = 100


@dataclass
class GatewayConfig:
    url: str = ""
    log_key: str = ""
    """The log's C2SP verifier key string: receipts must be signed by it."""
    ca_file: str = ""


@dataclass
class OutboxConfig:
    max_readings: int = 500_000
    """Warn at 80 % and when full; readings are never dropped (see README)."""


@dataclass
class ClockConfig:
    check_sync: bool = True
    """Flag readings taken while the kernel clock is not NTP-synchronised."""


@dataclass
class Config:
    path: Path
    device_id: str
    state_dir: Path
    key: KeyConfig = field(default_factory=KeyConfig)
    meter: MeterConfig = field(default_factory=MeterConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "agent.db"

    @property
    def enrolment_path(self) -> Path:
        return self.state_dir / "enrolment.bin"


# --------------------------------------------------------------------------- reading


def _fill(obj: Any, table: Mapping[str, Any], where: str) -> None:
    """Copy ``table`` into the dataclass ``obj``, checking names and types."""
    known = {f.name: f for f in fields(obj)}
    for key, value in table.items():
        if key not in known:
            raise AgentError(
                f"{where}: unknown setting {key!r} (known: {', '.join(sorted(known))})", Exit.USAGE
            )
        current = getattr(obj, key)
        if hasattr(current, "__dataclass_fields__"):
            if not isinstance(value, dict):
                raise AgentError(f"{where}.{key} must be a table", Exit.USAGE)
            _fill(current, value, f"{where}.{key}")
            continue
        setattr(obj, key, _coerce(current, value, f"{where}.{key}"))


def _coerce(current: Any, value: Any, where: str) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise AgentError(f"{where} must be true or false, got {value!r}", Exit.USAGE)
        return value
    if isinstance(current, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise AgentError(f"{where} must be an integer, got {value!r}", Exit.USAGE)
        return value
    if isinstance(current, float):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise AgentError(f"{where} must be a number, got {value!r}", Exit.USAGE)
        return float(value)
    if isinstance(current, Path):
        if not isinstance(value, str) or not value:
            raise AgentError(f"{where} must be a non-empty path, got {value!r}", Exit.USAGE)
        return Path(value)
    if isinstance(current, list):
        if not isinstance(value, list) or not all(isinstance(v, int) and v >= 0 for v in value):
            raise AgentError(f"{where} must be a list of register addresses, got {value!r}", Exit.USAGE)
        return value
    if not isinstance(value, str):
        raise AgentError(f"{where} must be a string, got {value!r}", Exit.USAGE)
    return value


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file (``AgentError`` with exit code 2 on any problem)."""
    path = (path or default_config_path()).absolute()
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentError(
            f"no config file at {path}: run `python -m edge_agent init` first (or pass --config)", Exit.USAGE
        ) from None
    except OSError as exc:
        raise AgentError(f"cannot read the config file {path}: {exc.strerror}", Exit.USAGE) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AgentError(f"the config file {path} is not valid TOML: {exc}", Exit.USAGE) from None
    return config_from_dict(data, path, environ)


def config_from_dict(data: dict[str, Any], path: Path, environ: Mapping[str, str]) -> Config:
    where = str(path)
    device = data.get("device")
    if not isinstance(device, dict) or "id" not in device:
        raise AgentError(f"{where}: the [device] table with an id is missing", Exit.USAGE)
    unknown = set(device) - {"id", "state_dir"}
    if unknown:
        raise AgentError(f"{where}: unknown setting(s) in [device]: {', '.join(sorted(unknown))}", Exit.USAGE)
    device_id = device["id"]
    if not isinstance(device_id, str) or ID_RE.fullmatch(device_id) is None:
        raise AgentError(
            f"{where}: device.id {device_id!r} is not an identifier "
            "(1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit)",
            Exit.USAGE,
        )
    base = path.parent
    state_dir = device.get("state_dir", str(DEFAULT_STATE_DIR))
    if not isinstance(state_dir, str) or not state_dir:
        raise AgentError(f"{where}: device.state_dir must be a path", Exit.USAGE)
    config = Config(path=path, device_id=device_id, state_dir=base / state_dir)
    for name in ("key", "meter", "mqtt", "gateway", "outbox", "clock"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise AgentError(f"{where}: [{name}] must be a table", Exit.USAGE)
        _fill(getattr(config, name), table, f"{where}: {name}")
    extra = set(data) - {"device", "key", "meter", "mqtt", "gateway", "outbox", "clock"}
    if extra:
        raise AgentError(f"{where}: unknown table(s) {', '.join(sorted(extra))}", Exit.USAGE)
    config.key.path = base / config.key.path
    if environ.get("MQTT_URL"):
        config.mqtt.url = environ["MQTT_URL"]
    if environ.get("IOT_ATTEST_GATEWAY_URL"):
        config.gateway.url = environ["IOT_ATTEST_GATEWAY_URL"]
    _validate(config, where)
    return config


def _validate(config: Config, where: str) -> None:
    meter = config.meter
    if meter.type not in METER_TYPES:
        raise AgentError(
            f"{where}: meter.type {meter.type!r} is not one of {', '.join(METER_TYPES)}", Exit.USAGE
        )
    if not 0.001 <= meter.interval_s <= 86_400:
        raise AgentError(f"{where}: meter.interval_s must be between 0.001 and 86400 s", Exit.USAGE)
    if meter.s0.impulses_per_kwh <= 0:
        raise AgentError(f"{where}: meter.s0.impulses_per_kwh must be positive", Exit.USAGE)
    if meter.s0.bounce_time_ms < 0 or meter.s0.persist_interval_s <= 0:
        raise AgentError(f"{where}: meter.s0 bounce_time_ms / persist_interval_s out of range", Exit.USAGE)
    if meter.sunspec.register not in SUNSPEC_REGISTERS:
        raise AgentError(
            f"{where}: meter.sunspec.register must be one of {', '.join(SUNSPEC_REGISTERS)}", Exit.USAGE
        )
    if not 0 <= meter.sunspec.unit_id <= 255:
        raise AgentError(f"{where}: meter.sunspec.unit_id must be 0..255", Exit.USAGE)
    if meter.simulated.speed <= 0:
        raise AgentError(f"{where}: meter.simulated.speed must be positive", Exit.USAGE)
    if config.outbox.max_readings < 1:
        raise AgentError(f"{where}: outbox.max_readings must be at least 1", Exit.USAGE)
    if config.mqtt.url and not re.match(r"^mqtts?://", config.mqtt.url):
        raise AgentError(
            f"{where}: mqtt.url {config.mqtt.url!r} must start with mqtt:// or mqtts://", Exit.USAGE
        )
    if config.mqtt.reconnect_min_s <= 0 or config.mqtt.reconnect_max_s < config.mqtt.reconnect_min_s:
        raise AgentError(f"{where}: mqtt.reconnect_min_s / reconnect_max_s out of range", Exit.USAGE)
    if config.mqtt.max_inflight < 1:
        raise AgentError(f"{where}: mqtt.max_inflight must be at least 1", Exit.USAGE)


# --------------------------------------------------------------------------- writing


def toml_value(value: str | int | float | bool | list[int]) -> str:
    """A TOML literal for a simple value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render_config(
    *,
    device_id: str,
    key_path: str,
    state_dir: str,
    meter_type: str = "s0",
    mqtt_url: str = "",
    gateway_url: str = "",
) -> str:
    """The text of a new config file, commented for installers."""
    v = toml_value
    return f"""\
# iot-attest edge agent configuration (written by `python -m edge_agent init`).
# Environment variables MQTT_URL and IOT_ATTEST_GATEWAY_URL override the file.

[device]
id = {v(device_id)}
state_dir = {v(state_dir)}          # chain state, outbox, pulse count (SQLite)

[key]
type = "file"                       # signer backend: "file" (secure elements later)
path = {v(key_path)}

[meter]
type = {v(meter_type)}                  # s0 | sunspec | simulated-charger | simulated-solar
interval_s = 60                     # one signed reading per interval (plus session start/end)

[meter.s0]                          # S0 pulse output (DIN 43864): open collector, <= 27 V / 27 mA
pin = 17                            # BCM GPIO number (GPIO17 = header pin 11); S0- to GND (pin 9)
pull_up = true                      # internal pull-up: the pulse pulls the line low
bounce_time_ms = 10
impulses_per_kwh = 1000             # from the meter's label ("1000 imp/kWh")
persist_interval_s = 1.0            # pulse count written to disk at least this often
register_offset_mwh = 0             # optional: meter display at installation, in mWh

[meter.sunspec]                     # SunSpec inverter or meter over Modbus TCP
host = ""                           # the inverter's IP address (Modbus TCP enabled on it)
port = 502
unit_id = 1
bases = [40000, 0, 50000]           # where to look for the 'SunS' marker
register = "auto"                   # auto | WH | TotWhExp | TotWhImp
timeout_s = 3.0

[meter.simulated]                   # simulated-charger / simulated-solar
seed = 1
speed = 1.0                         # simulated time runs this many times faster
rated_power_w = 0                   # 0: the rated power given at enrolment

[mqtt]
url = {v(mqtt_url)}                            # mqtt://host:1883 or mqtts://host:8883
username = ""                       # empty + password set: the device id is the user name
password = ""
ca_file = ""                        # CA for mqtts:// (empty: system trust store)
cert_file = ""
key_file = ""
keepalive_s = 60
reconnect_min_s = 1.0
reconnect_max_s = 120.0
resend_after_s = 600.0              # publish unreceipted readings again after this long
max_inflight = 100

[gateway]
url = {v(gateway_url)}                            # set by enrol
log_key = ""                        # set by enrol: the log's verifier key; receipts must verify with it
ca_file = ""

[outbox]
max_readings = 500000               # warn at 80 % and when full; readings are never dropped

[clock]
check_sync = true                   # flag readings taken while the clock is not NTP-synchronised
"""


def write_private_file(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600, durably.

    ``exclusive``: create the file with ``O_EXCL`` (fails if it exists); otherwise
    replace it atomically (temporary file in the same directory, fsync, rename).
    """
    if exclusive:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def update_config(path: Path, section: str, values: Mapping[str, str | int | float | bool]) -> None:
    """Set ``key = value`` lines inside ``[section]``, keeping the rest of the file as written.

    The installer may have edited and commented the file: only the named lines
    change (or are added after the section header).  The result is re-parsed
    before it replaces the file.
    """
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")
    start = next(
        (i for i, line in enumerate(lines) if (m := header.match(line)) and m.group(1).strip() == section),
        None,
    )
    if start is None:
        lines.append(f"\n[{section}]\n")
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])), len(lines))
    for key, value in values.items():
        literal = toml_value(value)
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for i in range(start + 1, end):
            if pattern.match(lines[i]):
                comment = ""
                if (m := re.search(r"\s+#[^\"]*$", lines[i])) is not None:
                    comment = m.group(0).rstrip("\n")
                lines[i] = f"{key} = {literal}{comment}\n"
                break
        else:
            lines.insert(start + 1, f"{key} = {literal}\n")
            end += 1
    new_text = "".join(lines)
    try:
        parsed = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - the edit is line-based and simple
        raise AgentError(f"could not update {path}: the result is not valid TOML ({exc})") from None
    table: Any = parsed
    for part in section.split("."):
        table = table.get(part, {})
    for key, value in values.items():
        if table.get(key) != value:  # pragma: no cover - defensive
            raise AgentError(f"could not update {path}: {section}.{key} did not take the new value")
    write_private_file(path, new_text.encode("utf-8"), exclusive=False)
