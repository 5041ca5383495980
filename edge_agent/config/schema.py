"""The settings of the agent's config file: one dataclass per table, with defaults.

Relative paths are resolved against the file's directory when it is loaded
(``edge_agent.config.loading``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path("/etc/iot-attest/agent.toml")
DEFAULT_STATE_DIR = Path("/var/lib/iot-attest")
CONFIG_ENV = "IOT_ATTEST_CONFIG"
METER_TYPES = ("s0", "sunspec", "ocpp", "simulated-charger", "simulated-solar")
OCPP_MODES = ("local", "proxy")
MIN_FRAME_BYTES = 8192
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
class OcppConfig:
    """An OCPP-J charger (1.6 or 2.0.1) that connects to the agent (edge_agent/ocpp/)."""

    mode: str = "local"
    """local: the agent is the charger's backend; proxy: it relays to ``upstream_url``, keeping a copy."""
    listen_host: str = "0.0.0.0"  # noqa: S104 - the charger connects over the site network
    listen_port: int = 9000
    path: str = "/ocpp"
    """The charger's backend URL is ws(s)://<this Pi>:<listen_port><path>/<charge point id>."""
    chargers: dict[str, str] = field(default_factory=dict)
    """Allow list: charge point id -> its Basic-auth password (OCPP security profile 1 or 2)."""
    id_tags: list[str] = field(default_factory=list)
    """Local mode: RFID / id tags that may charge (others are answered Invalid)."""
    cert_file: str = ""
    """TLS certificate (chain) of the endpoint: wss:// (security profile 2); empty: ws://."""
    key_file: str = ""
    max_frame_bytes: int = 65_536
    """A frame over this closes that charger's connection (a 2,500-character record fits easily)."""
    sample_interval_s: int = 60
    """Asked of the charger: meter values this often during a session (and clock-aligned)."""
    heartbeat_interval_s: int = 300
    stale_after_s: float = 900.0
    """No register from a disconnected charger for this long: no periodic reading (MeterUnavailable)."""
    upstream_url: str = ""
    """Proxy mode: the real backend, ws(s)://host/path (the charge point id is appended)."""
    upstream_username: str = ""
    """Empty: the charge point id."""
    upstream_password: str = ""
    upstream_ca_file: str = ""
    upstream_cert_file: str = ""
    """Client certificate towards the backend (security profile 3)."""
    upstream_key_file: str = ""


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
    ocpp: OcppConfig = field(default_factory=OcppConfig)
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
    """The log's C2SP verifier key string: receipts must be signed by it.  ``enrol`` pins it before
    it signs the enrolment statement, which names the key's origin, and never replaces it."""
    ca_file: str = ""


@dataclass
class OutboxConfig:
    max_readings: int = 500_000
    """Warn at 80 % and when full; readings are never dropped (see README)."""


@dataclass
class ReceiptsConfig:
    keep_days: float = 90.0
    """How long proven and refused receipts are kept (the newest proven one is always kept)."""

    @property
    def keep_ms(self) -> int:
        return int(self.keep_days * 86_400_000)


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
    receipts: ReceiptsConfig = field(default_factory=ReceiptsConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)

    @property
    def db_path(self) -> Path:
        return self.state_dir / "agent.db"

    @property
    def enrolment_path(self) -> Path:
        return self.state_dir / "enrolment.bin"
