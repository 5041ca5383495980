"""Gateway settings: a TOML file (``--config``), overridden by environment variables.

Environment variables: ``DATABASE_URL``, ``MQTT_URL``, and ``GATEWAY_<SETTING>``
for any setting (e.g. ``GATEWAY_CHECKPOINT_INTERVAL=0.5``; ``GATEWAY_DATABASE_URL``
wins over ``DATABASE_URL``, an empty ``DATABASE_URL`` or ``MQTT_URL`` counts as unset).
``GATEWAY_TOKENS`` is a JSON object (``{"alice": {"role": "installer", "sha256": "..."}}``,
see :mod:`gateway.tokens`); ``GATEWAY_WITNESSES`` a JSON list of witness key strings,
or the key strings separated by commas or white space.

pydantic-settings reads the environment and pydantic checks every value; a bad one
becomes a :class:`ConfigError` naming the setting.  Printed or logged, the settings
hide the passwords in ``database_url`` and ``mqtt_url`` and the token hashes.
``Settings(...)`` itself reads nothing but its arguments (tests and the benchmark build
it directly): only :func:`load_settings` consults the file and the environment.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from attest_core.broker import BrokerUrl, parse_broker_url
from attest_core.errors import DecodeError
from gateway.bodylimit import DEFAULT_MAX_REQUEST_BYTES
from gateway.errors import ConfigError

MqttUrl = BrokerUrl
"""The broker address (the contract's MQTT URL, parsed by attest_core.broker)."""

REDACTED = "***"
NO_DATABASE = "no database: set DATABASE_URL or database_url in the config file"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        coerce_numbers_to_str=True,  # `origin = 5` in the file is the name "5", as it always was
    )

    database_url: str = Field(
        default="", validation_alias=AliasChoices("gateway_database_url", "database_url")
    )
    """The PostgreSQL DSN (its password is redacted when the settings are printed)."""
    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883", validation_alias=AliasChoices("gateway_mqtt_url", "mqtt_url")
    )
    """The broker: mqtt[s]://[user:password@]host[:port] (the password is redacted when printed)."""
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
    sequencer_lease_ttl: float = Field(default=10.0, ge=1)
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
    role: Literal["all", "ingest", "sequencer", "api"] = "all"
    """all | ingest | sequencer | api: what this process runs."""
    tokens: dict[str, Any] = Field(default_factory=dict)
    """API tokens by name: ``{"role": "installer" | "operator" | "issuer" | "auditor", "sha256": "<hex>"}``
    (gateway.tokens)."""
    witnesses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Witness verifier keys (C2SP ``<name>+<key id>+<key>``) whose cosignatures the gateway accepts."""
    accept_v1_enrolments: bool = False
    """Enrol devices whose agent signs a v1 enrolment statement, which names no log (protocol v1
    agents). Off by default: such an enrolment could be replayed into another log. Devices already
    enrolled under v1 keep working either way."""
    enrol_wait: float = 5.0
    """Seconds an enrolment, revocation, rotation or claim waits for its log index before answering."""
    quarantine_garbage_bytes: int = Field(default=2048, ge=0)
    """A quarantined message that is garbage, not evidence, keeps only this many bytes of its payload
    (plus its full length and SHA-256); evidence is always kept whole (gateway.quarantine)."""
    quarantine_retention_days: float = Field(default=30.0, gt=0)
    """Garbage in quarantine not seen again for this many days is deleted; evidence never is."""
    quarantine_max_garbage_rows: int = Field(default=100_000, ge=0)
    """At most this many garbage rows are kept in quarantine: the least recently seen go first."""
    quarantine_prune_interval: float = Field(default=60.0, gt=0)
    """Seconds between two prunes of the quarantine's garbage (by processes that run the API)."""
    max_request_bytes: int = Field(default=DEFAULT_MAX_REQUEST_BYTES, ge=1)
    """HTTP request bodies above this many bytes are refused (413 request_too_large) as they arrive,
    before authentication; the default admits the largest claim with room (gateway.bodylimit)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments: :func:`load_settings` adds the file and the environment."""
        return (init_settings,)

    @field_validator("tokens", mode="before")
    @classmethod
    def _token_json(cls, value: Any) -> Any:
        """A string (GATEWAY_TOKENS, or a string in the file) is the table as JSON."""
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"setting tokens is not valid JSON: {exc}") from None

    @field_validator("witnesses", mode="before")
    @classmethod
    def _witness_list(cls, value: Any) -> Any:
        """A string is a JSON list, or the keys separated by commas or white space."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError as exc:
                raise ValueError(f"witnesses: not a JSON list: {exc}") from None
        return [v for v in re.split(r"[\s,]+", text) if v]

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        try:
            parse_broker_url(value)
        except DecodeError as exc:
            raise ValueError(f"MQTT_URL: {exc}") from None
        return value

    @property
    def mqtt(self) -> MqttUrl:
        try:
            return parse_broker_url(self.mqtt_url)
        except DecodeError as exc:
            raise ConfigError(f"MQTT_URL: {exc}") from exc

    def redacted(self) -> dict[str, Any]:
        """Every setting, the secrets hidden: what may be printed or logged."""
        values = dict(self)
        values["database_url"] = redact_url(self.database_url)
        values["mqtt_url"] = redact_url(self.mqtt_url)
        values["tokens"] = {
            name: {k: REDACTED if k == "sha256" else v for k, v in spec.items()}
            if isinstance(spec, dict)
            else spec
            for name, spec in self.tokens.items()
        }
        return values

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return self.redacted().items()


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@`` or a ``password=`` parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        secret = [k for k, _ in query if k.lower() in ("password", "sslpassword")]
        if parts.password is None and not secret:
            return url
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{parts.username or ''}:{REDACTED}@{host}")
        hidden = [(k, REDACTED if k in secret else v) for k, v in query]
        return urlunsplit(parts._replace(query=urlencode(hidden, safe="*/")))
    except ValueError:
        return REDACTED if "@" in url or "password" in url.lower() else url


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = {
            name.lower(): value
            for name, value in environ.items()
            # only these names, spelt in capitals: a lower-case `database_url` in the environment is
            # some other program's; an empty DATABASE_URL or MQTT_URL is unset (a shell's
            # `DATABASE_URL= cmd`), a GATEWAY_ one is not
            if (name.startswith("GATEWAY_") or (value and name in ("DATABASE_URL", "MQTT_URL")))
        }


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a TOML file: its ``[gateway]`` table, or the top level if it has none."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    table = data.get("gateway", data)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [gateway] must be a table")
    return table


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``path`` (if given) overridden by ``env`` (default: ``os.environ``), checked."""
    values = read_config_file(path) if path is not None else {}
    try:
        values.update(_EnvironmentSource(Settings, os.environ if env is None else env)())
    except SettingsError as exc:  # a GATEWAY_ value that should be JSON and is not
        field = re.search(r'field "(\w+)"', str(exc))
        name = field[1] if field else "?"
        raise ConfigError(
            f"setting {name} (GATEWAY_{name.upper()}) is not valid JSON: {exc.__cause__}"
        ) from None
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    if not settings.database_url:
        raise ConfigError(NO_DATABASE)
    check_api_settings(settings)
    return settings


KINDS = {"float": "a float", "int": "an int", "string": "a str", "dict": "a dict", "list": "a list"}
SECRET_SETTINGS = {"database_url", "mqtt_url", "gateway_database_url", "gateway_mqtt_url", "tokens"}


def describe(exc: ValidationError) -> str:
    """The first problem (all unknown names at once) as one line naming the setting."""
    errors = exc.errors(include_url=False)
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        return f"unknown settings: {', '.join(unknown)}"
    return _sentence(errors[0])


def _sentence(error: ErrorDetails) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    kind, ctx = error["type"], error.get("ctx", {})
    shown = REDACTED if name in SECRET_SETTINGS else repr(error["input"])
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        choices = [c.strip(" '") for c in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")]
        return f"{name} must be {', '.join(choices[:-1])} or {choices[-1]}, got {shown}"
    if kind == "greater_than_equal" and ctx["ge"] == 0:
        return f"{name} must not be negative, got {shown}"
    if kind == "greater_than_equal":
        return f"{name} must be at least {ctx['ge']:g}, got {shown}"
    if kind == "greater_than":
        return f"{name} must be more than {ctx['gt']:g}, got {shown}"
    for prefix, what in KINDS.items():
        if kind.startswith(prefix):
            return f"setting {name} must be {what}, got {shown}"
    return f"setting {name}: {error['msg']}, got {shown}"


def check_api_settings(settings: Settings) -> None:
    """Parse the tokens and witness keys once, so that a bad entry stops the start with a clear message."""
    from gateway.tokens import TokenTable
    from gateway.witnesses import parse_witnesses

    TokenTable.parse(settings.tokens)
    parse_witnesses(settings.witnesses)
