"""Reading the config file: parse, fill the settings, apply the environment, validate.

Environment variables override the file: ``MQTT_URL`` (the broker) and
``IOT_ATTEST_GATEWAY_URL`` (the gateway's REST API).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attest_core.codec import ID_RE
from edge_agent.config.coercion import fill
from edge_agent.config.schema import (
    DEFAULT_STATE_DIR,
    METER_TYPES,
    MIN_FRAME_BYTES,
    OCPP_MODES,
    SUNSPEC_REGISTERS,
    Config,
    default_config_path,
)
from edge_agent.errors import AgentError, Exit


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
    for name in ("key", "meter", "mqtt", "gateway", "outbox", "receipts", "clock"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise AgentError(f"{where}: [{name}] must be a table", Exit.USAGE)
        fill(getattr(config, name), table, f"{where}: {name}")
    extra = set(data) - {"device", "key", "meter", "mqtt", "gateway", "outbox", "receipts", "clock"}
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
    _validate_ocpp(config, where)
    if meter.simulated.speed <= 0:
        raise AgentError(f"{where}: meter.simulated.speed must be positive", Exit.USAGE)
    if config.outbox.max_readings < 1:
        raise AgentError(f"{where}: outbox.max_readings must be at least 1", Exit.USAGE)
    if not config.receipts.keep_days > 0:
        raise AgentError(f"{where}: receipts.keep_days must be positive", Exit.USAGE)
    if config.mqtt.url and not re.match(r"^mqtts?://", config.mqtt.url):
        raise AgentError(
            f"{where}: mqtt.url {config.mqtt.url!r} must start with mqtt:// or mqtts://", Exit.USAGE
        )
    if config.mqtt.reconnect_min_s <= 0 or config.mqtt.reconnect_max_s < config.mqtt.reconnect_min_s:
        raise AgentError(f"{where}: mqtt.reconnect_min_s / reconnect_max_s out of range", Exit.USAGE)
    if config.mqtt.max_inflight < 1:
        raise AgentError(f"{where}: mqtt.max_inflight must be at least 1", Exit.USAGE)


def _validate_ocpp(config: Config, where: str) -> None:
    ocpp = config.meter.ocpp
    if ocpp.mode not in OCPP_MODES:
        raise AgentError(f"{where}: meter.ocpp.mode must be one of {', '.join(OCPP_MODES)}", Exit.USAGE)
    if not 0 <= ocpp.listen_port <= 65_535:
        raise AgentError(f"{where}: meter.ocpp.listen_port must be 0..65535", Exit.USAGE)
    if not ocpp.path.startswith("/"):
        raise AgentError(f"{where}: meter.ocpp.path must start with /", Exit.USAGE)
    if ocpp.max_frame_bytes < MIN_FRAME_BYTES:
        raise AgentError(
            f"{where}: meter.ocpp.max_frame_bytes must be at least {MIN_FRAME_BYTES}", Exit.USAGE
        )
    if ocpp.sample_interval_s < 1 or ocpp.heartbeat_interval_s < 1 or ocpp.stale_after_s <= 0:
        raise AgentError(
            f"{where}: meter.ocpp sample_interval_s / heartbeat_interval_s / stale_after_s must be positive",
            Exit.USAGE,
        )
    if bool(ocpp.cert_file) != bool(ocpp.key_file):
        raise AgentError(
            f"{where}: meter.ocpp needs both cert_file and key_file for TLS, or neither", Exit.USAGE
        )
    if bool(ocpp.upstream_cert_file) != bool(ocpp.upstream_key_file):
        raise AgentError(
            f"{where}: meter.ocpp needs both upstream_cert_file and upstream_key_file, or neither", Exit.USAGE
        )
    for charger, password in ocpp.chargers.items():
        if ID_RE.fullmatch(charger) is None:
            raise AgentError(
                f"{where}: meter.ocpp.chargers: {charger!r} is not a charge point id "
                "(1-64 characters from A-Z a-z 0-9 . _ -)",
                Exit.USAGE,
            )
        if len(password) < 8:
            raise AgentError(
                f"{where}: meter.ocpp.chargers: the password of {charger!r} must be at least 8 characters "
                "(OCPP's AuthorizationKey / BasicAuthPassword: 16 to 40 recommended)",
                Exit.USAGE,
            )
