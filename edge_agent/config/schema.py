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
