"""Real PostgreSQL and MQTT for the tests: found, started, or embedded — never skipped.

Order of preference for each service:

1. the URL in ``DATABASE_URL`` / ``MQTT_URL``, if set;
2. the machine's own server on 127.0.0.1 (5432 / 1883), started with the
   system's command if it is installed but not running;
3. an embedded server (``pgserver`` / ``amqtt``) started for this test run.

Whatever is used is printed, so a run never silently tests against nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from stack.databases import PG_LOCAL, can_connect, create_database, database_url, drop_database
from stack.embedded import EmbeddedBroker, EmbeddedPostgres

# the tests import these from here too (the helpers themselves are in stack/, shared with bench/)
from stack.embedded import free_port as free_port
from stack.processes import REPO as REPO
from stack.processes import MosquittoProcess as MosquittoProcess
from stack.processes import port_open as port_open
from stack.processes import wait_for as wait_for

MQTT_LOCAL = ("127.0.0.1", 1883)


def say(message: str) -> None:
    print(f"[test services] {message}", file=sys.stderr, flush=True)


@dataclass
class Postgres:
    admin_dsn: str
    how: str
    _stop: Callable[[], None] | None = None
    _databases: list[str] = field(default_factory=list)

    def dsn_for(self, database: str) -> str:
        return database_url(self.admin_dsn, database)

    def create_database(self) -> str:
        """A fresh, empty database for one test module; dropped at the end of the run."""
        name = f"iat_test_{uuid.uuid4().hex[:12]}"
        url = asyncio.run(create_database(self.admin_dsn, name))
        self._databases.append(name)
        return url

    def close(self) -> None:
        try:
            asyncio.run(drop_database(self.admin_dsn, *self._databases))
        finally:
            if self._stop is not None:
                self._stop()


def start_postgres() -> Postgres:
    url = os.environ.get("DATABASE_URL")
    if url:
        if not asyncio.run(can_connect(url)):
            raise RuntimeError(f"DATABASE_URL is set but PostgreSQL does not answer at {url}")
        say(f"PostgreSQL: DATABASE_URL ({urlsplit(url).hostname})")
        return Postgres(url, "DATABASE_URL")
    if asyncio.run(can_connect(PG_LOCAL)):
        say("PostgreSQL: the machine's server on 127.0.0.1:5432")
        return Postgres(PG_LOCAL, "local")
    if shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        versions = sorted(os.listdir("/etc/postgresql"))
        if versions:
            say(f"PostgreSQL is not running: starting cluster {versions[-1]}/main")
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
                check=False,
                capture_output=True,
            )
            if wait_for(lambda: asyncio.run(can_connect(PG_LOCAL)), 30):
                return Postgres(PG_LOCAL, "local (started)")
    say("PostgreSQL: no server on this machine")
    return start_embedded_postgres()


def start_embedded_postgres() -> Postgres:
    server = EmbeddedPostgres().start()
    say(f"PostgreSQL: started an embedded server (pgserver) in {server.datadir}")
    return Postgres(server.url, "embedded", server.remove)


@dataclass
class Broker:
    host: str
    port: int
    how: str
    username: str | None = None
    password: str | None = None
    _stop: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username else ""
        return f"mqtt://{auth}{self.host}:{self.port}"

    def close(self) -> None:
        if self._stop is not None:
            self._stop()


def start_broker() -> Broker:
    url = os.environ.get("MQTT_URL")
    if url:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 1883
        if not port_open(host, port, 3):
            raise RuntimeError(f"MQTT_URL is set but no broker answers at {host}:{port}")
        say(f"MQTT: MQTT_URL ({host}:{port})")
        return Broker(host, port, "MQTT_URL", parts.username, parts.password)
    if port_open(*MQTT_LOCAL):
        say("MQTT: the machine's Mosquitto on 127.0.0.1:1883")
        return Broker(*MQTT_LOCAL, "local")
    conf = Path("/etc/mosquitto/mosquitto.conf")
    if shutil.which("mosquitto") and conf.exists():
        say("MQTT: Mosquitto is not running: starting it")
        subprocess.run(["mosquitto", "-d", "-c", str(conf)], check=False, capture_output=True)
        if wait_for(lambda: port_open(*MQTT_LOCAL), 15):
            return Broker(*MQTT_LOCAL, "local (started)")
    say("MQTT: no broker on this machine")
    return start_embedded_broker()


def start_embedded_broker() -> Broker:
    broker = EmbeddedBroker().start()
    say(f"MQTT: started an embedded broker (amqtt, MQTT 3.1.1) on port {broker.port}")
    return Broker(broker.host, broker.port, "embedded", _stop=broker.stop)


def make_certificates(tmp_path: Path) -> Path:
    """A CA made here and a server certificate for 127.0.0.1 signed by it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA")  # fmt: skip
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip
    return tmp_path
