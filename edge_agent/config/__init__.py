"""The agent's TOML configuration file.

One module per job: ``schema`` (the settings and their defaults), ``coercion``
(TOML values into settings), ``loading`` (read, validate, environment),
``template`` (the file ``init`` writes) and ``editing`` (changing a value in place).

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
    type = "s0"                    # s0 | sunspec | ocpp | simulated-charger | simulated-solar
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

from edge_agent.config.editing import update_config
from edge_agent.config.loading import config_from_dict, load_config
from edge_agent.config.schema import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    DEFAULT_STATE_DIR,
    METER_TYPES,
    SUNSPEC_REGISTERS,
    ClockConfig,
    Config,
    GatewayConfig,
    KeyConfig,
    MeterConfig,
    MqttConfig,
    OcppConfig,
    OutboxConfig,
    S0Config,
    SimulatedConfig,
    SunSpecConfig,
    default_config_path,
)
from edge_agent.config.template import render_config

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DEFAULT_STATE_DIR",
    "METER_TYPES",
    "SUNSPEC_REGISTERS",
    "ClockConfig",
    "Config",
    "GatewayConfig",
    "KeyConfig",
    "MeterConfig",
    "MqttConfig",
    "OcppConfig",
    "OutboxConfig",
    "S0Config",
    "SimulatedConfig",
    "SunSpecConfig",
    "config_from_dict",
    "default_config_path",
    "load_config",
    "render_config",
    "update_config",
]
