"""The benchmark's own services: a fresh database, a Mosquitto, gateway processes; process statistics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg

from attest_core.keys import Ed25519Signer
from attest_core.note import VerifierKey, encode_private_key
from bench.fleet import seed_for
from stack.databases import PG_LOCAL, can_connect, create_database, database_url, drop_database
from stack.embedded import EmbeddedPostgres
from stack.processes import REPO, GatewayProcess
from stack.system import Tokens

ORIGIN = "bench.iot-attest.local/log"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --- PostgreSQL ----------------------------------------------------------------------------------


@dataclass
class Postgres:
    """Fresh databases on the machine's server (DATABASE_URL or 127.0.0.1:5432), else an embedded one."""

    admin_dsn: str = ""
    how: str = ""
    embedded: EmbeddedPostgres | None = None
    created: list[str] = field(default_factory=list)

    def start(self) -> Postgres:
        url = os.environ.get("DATABASE_URL")
        if url:
            if not asyncio.run(can_connect(url)):
                raise RuntimeError(f"DATABASE_URL is set but PostgreSQL does not answer at {url}")
            self.admin_dsn, self.how = url, "DATABASE_URL"
        elif asyncio.run(can_connect(PG_LOCAL)):
            self.admin_dsn, self.how = PG_LOCAL, "the machine's server on 127.0.0.1:5432"
        else:
            say("no PostgreSQL server answers: starting an embedded one (pgserver)")
            self.embedded = EmbeddedPostgres().start()
            self.admin_dsn, self.how = self.embedded.url, "embedded (pgserver)"
        return self

    def dsn_for(self, name: str) -> str:
        return database_url(self.admin_dsn, name)

    def create(self, label: str) -> str:
        name = f"iat_bench_{label}_{uuid.uuid4().hex[:8]}"
        url = asyncio.run(create_database(self.admin_dsn, name))
        self.created.append(name)
        return url

    def drop(self, dsn: str) -> None:
        name = urlsplit(dsn).path.lstrip("/")
        asyncio.run(drop_database(self.admin_dsn, name))
        if name in self.created:
            self.created.remove(name)

    def server_version(self) -> str:
        async def go() -> str:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                version: str = await conn.fetchval("SHOW server_version")
                return version
            finally:
                await conn.close()

        return asyncio.run(go())

    def close(self) -> None:
        for name in list(self.created):
            try:
                self.drop(self.dsn_for(name))
            except (OSError, asyncpg.PostgresError) as exc:
                say(f"could not drop database {name}: {exc}")
        if self.embedded is not None:
            self.embedded.remove()


# --- the gateway -----------------------------------------------------------------------------------


def bench_tokens() -> Tokens:
    """The benchmark's tokens, named installer-bench, issuer-bench, auditor-bench."""
    return Tokens(prefix="bench")


def bench_log_key() -> VerifierKey:
    """The public half of :func:`write_log_key`'s key: what the benchmark's enrolments name."""
    return VerifierKey.from_public_key(ORIGIN, Ed25519Signer(seed_for("bench log key")).public_key)


def write_log_key(path: Path) -> None:
    """The log key of a benchmark run (deterministic, so a rerun gives comparable bundles)."""
    if not path.exists():
        path.write_text(encode_private_key(ORIGIN, seed_for("bench log key")) + "\n")
        path.chmod(0o600)


def bench_gateway(
    dsn: str, mqtt_url: str, workdir: Path, name: str, tokens: Tokens, **settings: str
) -> GatewayProcess:
    """A gateway process of the benchmark (not started): its log in workdir/gateway-<name>.log."""
    key_file = workdir / "log.key"
    write_log_key(key_file)
    return GatewayProcess(
        database_url=dsn,
        mqtt_url=mqtt_url,
        log_file=workdir / f"gateway-{name}.log",
        origin=ORIGIN,
        key_file=key_file,
        client_id=f"bench-{name}-{uuid.uuid4().hex[:6]}",
        settings={"tokens": tokens.config(), **settings},
        name=name,
    )


# --- process statistics ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    rss = hwm = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return rss, hwm


def machine_info() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in load],
        "shared": "a 2-core machine shared with other work: figures vary from run to run",
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"],  # noqa: S607
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("-dirty" if dirty.stdout.strip() else "")
