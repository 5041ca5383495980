"""Gateway settings: a TOML file (``--config``), overridden by environment variables.

Environment variables: ``DATABASE_URL``, ``MQTT_URL``, and ``GATEWAY_<SETTING>``
for any other setting (e.g. ``GATEWAY_CHECKPOINT_INTERVAL=0.5``).  ``GATEWAY_TOKENS``
is a JSON object (``{"alice": {"role": "installer", "sha256": "..."}}``, see
:mod:`gateway.tokens`); ``GATEWAY_WITNESSES`` a JSON list of witness key strings,
or the key strings separated by commas or white space.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from attest_core.broker import BrokerUrl, parse_broker_url
from attest_core.errors import DecodeError
from gateway.bodylimit import DEFAULT_MAX_REQUEST_BYTES
from gateway.errors import ConfigError

MqttUrl = BrokerUrl
"""The broker address (the contract's MQTT URL, parsed by attest_core.broker)."""


@dataclass(frozen=True)
class Settings:
    database_url: str = ""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    origin: str = "iot-attest.example/log"
    """The log's name: the first line of every checkpoint and the log key's name."""
    key_file: str = "gateway-log.key"
    checkpoint_interval: float = 1.0
    """Seconds between checkpoints while the log grows."""
    checkpoint_max_entries: int = 20_000
    """A checkpoint is also signed as soon as this many entries are waiting for one."""
    sequencer_batch: int = 5_000
    """Readings (and, separately, identity and claim entries) a sequencer step takes at most."""
    sequencer_device_share: int = 500
    """Readings of one device a sequencer step takes at most: a device's backlog, chained or stuck
    behind a gap, cannot fill a step and hold back the others."""
    max_readings_ahead: int = 5_000
    """Ingest turns away, before checking its signature, a reading this far or further beyond the
    device's next expected one (its last logged reading + 1, as last read): it could not be logged
    before the readings in between arrive, and a flood of them would cost everyone the checks."""
    sequencer_lease_ttl: float = 10.0
    """Seconds the sequencer's lease lasts unless renewed (every step renews it; at least 1 s). A
    sequencer cut off from the database is replaced within about 1.2 times this plus a second, and
    its database session's timeouts are derived from it (gateway.lease)."""
    gap_timeout: float = 30.0
    """Seconds a reading ahead of a gap in its device's sequence waits before it is quarantined."""
    max_clock_skew: float = 300.0
    """Readings dated further than this in the future are refused."""
    ingest_batch: int = 2_000
    ingest_linger: float = 0.02
    """Seconds the ingest waits to fill a batch."""
    mqtt_client_id: str = "iot-attest-gateway"
    """The client id of the persistent session in which the broker queues readings for this process
    (processes sharing the load through mqtt_share_group need one each). A process whose role does
    not ingest never uses it: it connects as ``<mqtt_client_id>-<role>-<8 random hex digits>`` with a
    clean session, and takes no readings."""
    mqtt_session_expiry: int = 7 * 24 * 3600
    """MQTT 5: how long the broker keeps the gateway's session (and queued readings) while it is away."""
    mqtt_receive_maximum: int = 5_000
    """MQTT 5: readings the broker may send before the gateway acknowledges any; enough to overlap
    receiving the next batch with storing this one (the broker's max_inflight_messages caps it too)."""
    mqtt_max_packet_size: int = 65_536
    """Bytes: the largest MQTT packet the gateway takes (advertised to an MQTT 5 broker as its Maximum
    Packet Size). A larger reading is not held in memory: it is quarantined as too_large with its first
    bytes only. Readings are at most 1 KiB plus topic and header."""
    mqtt_share_group: str = ""
    """If set, subscribe as $share/<group>/... so several gateway processes share the load."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    role: str = "all"
    """all | ingest | sequencer | api: what this process runs."""
    tokens: dict[str, Any] = field(default_factory=dict)
    """API tokens by name: ``{"role": "installer" | "issuer" | "auditor", "sha256": "<hex>"}`` (gateway.tokens)."""
    witnesses: list[str] = field(default_factory=list)
    """Witness verifier keys (C2SP ``<name>+<key id>+<key>``) whose cosignatures the gateway accepts."""
    enrol_wait: float = 5.0
    """Seconds an enrolment, revocation, rotation or claim waits for its log index before answering."""
    quarantine_garbage_bytes: int = 2048
    """A quarantined message that is garbage, not evidence, keeps only this many bytes of its payload
    (plus its full length and SHA-256); evidence is always kept whole (gateway.quarantine)."""
    quarantine_retention_days: float = 30.0
    """Garbage in quarantine not seen again for this many days is deleted; evidence never is."""
    quarantine_max_garbage_rows: int = 100_000
    """At most this many garbage rows are kept in quarantine: the least recently seen go first."""
    quarantine_prune_interval: float = 60.0
    """Seconds between two prunes of the quarantine's garbage (by processes that run the API)."""
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """HTTP request bodies above this many bytes are refused (413 request_too_large) as they arrive,
    before authentication; the default admits the largest claim with room (gateway.bodylimit)."""

    @property
    def mqtt(self) -> MqttUrl:
        try:
            return parse_broker_url(self.mqtt_url)
        except DecodeError as exc:
            raise ConfigError(f"MQTT_URL: {exc}") from exc


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        values.update(data.get("gateway", data))
    if env.get("DATABASE_URL"):
        values["database_url"] = env["DATABASE_URL"]
    if env.get("MQTT_URL"):
        values["mqtt_url"] = env["MQTT_URL"]
    known = {f.name: f for f in fields(Settings)}
    for key, raw in env.items():
        if key.startswith("GATEWAY_") and key[8:].lower() in known:
            values[key[8:].lower()] = raw
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    typed: dict[str, Any] = {}
    for name, value in values.items():
        kind = type(getattr(Settings(), name))
        try:
            if kind is float:
                typed[name] = float(value)
            elif kind is int:
                typed[name] = int(value)
            elif kind is str:
                typed[name] = str(value)
            elif kind is dict and isinstance(value, str):
                typed[name] = json.loads(value)
            elif kind is list and isinstance(value, str):
                text = value.strip()
                typed[name] = (
                    json.loads(text) if text.startswith("[") else [v for v in re.split(r"[\s,]+", text) if v]
                )
            else:
                typed[name] = value
        except (TypeError, ValueError):
            raise ConfigError(f"setting {name} must be a {kind.__name__}, got {value!r}") from None
    settings = Settings(**typed)
    if not settings.database_url:
        raise ConfigError("no database: set DATABASE_URL or database_url in the config file")
    settings.mqtt  # validates  # noqa: B018
    if settings.role not in ("all", "ingest", "sequencer", "api"):
        raise ConfigError(f"role must be all, ingest, sequencer or api, got {settings.role!r}")
    if settings.max_request_bytes < 1:
        raise ConfigError(f"max_request_bytes must be at least 1, got {settings.max_request_bytes}")
    for name in ("quarantine_garbage_bytes", "quarantine_max_garbage_rows"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"{name} must not be negative, got {getattr(settings, name)}")
    for name in ("quarantine_retention_days", "quarantine_prune_interval"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{name} must be more than 0, got {getattr(settings, name)}")
    if settings.sequencer_lease_ttl < 1:
        raise ConfigError(f"sequencer_lease_ttl must be at least 1 s, got {settings.sequencer_lease_ttl:g}")
    check_api_settings(settings)
    return settings


def check_api_settings(settings: Settings) -> None:
    """Parse the tokens and witness keys once, so that a bad entry stops the start with a clear message."""
    from gateway.tokens import TokenTable
    from gateway.witnesses import parse_witnesses

    TokenTable.parse(settings.tokens)
    parse_witnesses(settings.witnesses)
