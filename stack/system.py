"""The whole system on this machine: database, broker, gateway process, tokens.

Uses ``DATABASE_URL`` / ``MQTT_URL`` when they are set, the embedded defaults
(pgserver, amqtt) otherwise, and starts the gateway as a real process.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from gateway.tokens import generate_token, hash_token
from stack.databases import create_database, drop_database
from stack.embedded import EmbeddedBroker, EmbeddedPostgres
from stack.processes import GatewayProcess

Say = Callable[[str], None]


@dataclass
class Tokens:
    """One token per role, made fresh; the gateway is given only their names, roles and hashes."""

    prefix: str = "demo"
    """Token names are <role>-<prefix>: what the log records as installer and issuer."""
    installer: str = field(default_factory=generate_token)
    issuer: str = field(default_factory=generate_token)
    auditor: str = field(default_factory=generate_token)

    def config(self) -> str:
        """GATEWAY_TOKENS: names, roles and SHA-256 hashes (never the tokens)."""
        tokens = {"installer": self.installer, "issuer": self.issuer, "auditor": self.auditor}
        return json.dumps(
            {
                f"{role}-{self.prefix}": {"role": role, "sha256": hash_token(token)}
                for role, token in tokens.items()
            }
        )


@dataclass
class System:
    say: Say
    api_port: int = 0
    origin: str = "demo.iot-attest.local/log"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="iot-attest-")))
    tokens: Tokens = field(default_factory=Tokens)
    database_url: str = ""
    mqtt_url: str = ""
    _pg: EmbeddedPostgres | None = None
    _broker: EmbeddedBroker | None = None
    _own_database: tuple[str, str] | None = None
    _gateway: GatewayProcess | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def gateway_log(self) -> Path:
        return self.workdir / "gateway.log"

    def start(self) -> System:
        self._start_database()
        self._start_broker()
        self._start_gateway()
        return self

    def _start_database(self) -> None:
        url = os.environ.get("DATABASE_URL")
        if url:
            name = f"iot_attest_demo_{uuid.uuid4().hex[:8]}"
            try:
                own: str | None = asyncio.run(create_database(url, name))
            except asyncpg.InsufficientPrivilegeError:
                own = None
            except (OSError, asyncpg.PostgresError) as exc:
                raise RuntimeError(f"PostgreSQL at DATABASE_URL does not answer: {exc}") from exc
            if own is not None:
                self._own_database = (url, name)
                self.database_url = own
                self.say(f"PostgreSQL: DATABASE_URL, in a new database {name} (dropped at the end)")
            else:
                self.database_url = url
                self.say("PostgreSQL: DATABASE_URL (no right to create a database: using it as it is)")
            return
        self.say("PostgreSQL: starting an embedded server (pgserver) ...")
        self._pg = EmbeddedPostgres().start()
        self.database_url = self._pg.url

    def _start_broker(self) -> None:
        url = os.environ.get("MQTT_URL")
        if url:
            self.mqtt_url = url
            self.say(f"MQTT: MQTT_URL ({urlsplit(url).hostname}:{urlsplit(url).port or 1883})")
            return
        self._broker = EmbeddedBroker().start()
        self.mqtt_url = self._broker.url
        self.say(f"MQTT: an embedded broker (amqtt, MQTT 3.1.1) on port {self._broker.port}")

    def _start_gateway(self) -> None:
        self._gateway = GatewayProcess(
            database_url=self.database_url,
            mqtt_url=self.mqtt_url,
            log_file=self.gateway_log,
            origin=self.origin,
            key_file=self.workdir / "gateway-log.key",
            client_id=f"iot-attest-demo-{uuid.uuid4().hex[:6]}",
            port=self.api_port,
            settings={"tokens": self.tokens.config()},
        )
        self.api_port = self._gateway.port
        self.say(f"gateway: starting (API on {self.gateway_url}, log in {self.gateway_log})")
        self._gateway.start(90, pause=0.2, request_timeout=2)
        self.say("gateway: ready")

    def stop(self) -> None:
        if self._gateway is not None:
            self._gateway.stop(20)
        if self._broker is not None:
            self._broker.stop()
        if self._own_database is not None:
            try:
                asyncio.run(drop_database(*self._own_database))
            except (OSError, asyncpg.PostgresError) as exc:
                self.say(f"could not drop the demo database {self._own_database[1]}: {exc}")
        if self._pg is not None:
            self._pg.remove()
