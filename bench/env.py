"""The benchmark's own services: a fresh database, a Mosquitto, gateway processes; process statistics."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx

from attest_core.note import encode_private_key
from bench.fleet import seed_for
from stack.databases import create_database, database_url, drop_database
from stack.embedded import EmbeddedPostgres, free_port
from stack.system import Tokens

REPO = Path(__file__).resolve().parent.parent
PG_LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"
ORIGIN = "bench.iot-attest.local/log"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], seconds: float, pause: float = 0.1) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(pause)
    return check()


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


# --- PostgreSQL ----------------------------------------------------------------------------------


async def _can_connect(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


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
            if not asyncio.run(_can_connect(url)):
                raise RuntimeError(f"DATABASE_URL is set but PostgreSQL does not answer at {url}")
            self.admin_dsn, self.how = url, "DATABASE_URL"
        elif asyncio.run(_can_connect(PG_LOCAL)):
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


# --- Mosquitto -------------------------------------------------------------------------------------


class Mosquitto:
    """A Mosquitto of the benchmark's own with the project's queue settings (deploy/mosquitto/conf.d)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.host = "127.0.0.1"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir / 'data'}/\n"
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"include_dir {REPO / 'deploy' / 'mosquitto' / 'conf.d'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)  # noqa: S603
        if not wait_for(lambda: port_open(self.host, self.port), 15):
            raise RuntimeError(f"mosquitto did not start on port {self.port}; see {self.workdir}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None


# --- the gateway -----------------------------------------------------------------------------------


def bench_tokens() -> Tokens:
    """The benchmark's tokens, named installer-bench, issuer-bench, auditor-bench."""
    return Tokens(prefix="bench")


def write_log_key(path: Path) -> None:
    """The log key of a benchmark run (deterministic, so a rerun gives comparable bundles)."""
    if not path.exists():
        path.write_text(encode_private_key(ORIGIN, seed_for("bench log key")) + "\n")
        path.chmod(0o600)


class GatewayProcess:
    """``python -m gateway run`` as a subprocess, configured through the environment."""

    def __init__(
        self, dsn: str, mqtt_url: str, workdir: Path, name: str, tokens: Tokens, **settings: str
    ) -> None:
        self.port = free_port()
        self.name = name
        key_file = workdir / "log.key"
        write_log_key(key_file)
        self.env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "MQTT_URL": mqtt_url,
            "GATEWAY_KEY_FILE": str(key_file),
            "GATEWAY_ORIGIN": ORIGIN,
            "GATEWAY_API_PORT": str(self.port),
            "GATEWAY_MQTT_CLIENT_ID": f"bench-{name}-{uuid.uuid4().hex[:6]}",
            "GATEWAY_TOKENS": tokens.config(),
            **{f"GATEWAY_{k.upper()}": v for k, v in settings.items()},
        }
        self.settings = settings
        self.log_path = workdir / f"gateway-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> GatewayProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-format", "text", "run"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the gateway {self.name} exited at start; see {self.log_path}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the gateway {self.name} did not become ready; see {self.log_path}")

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


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
