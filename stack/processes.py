"""Our own processes: the gateway and a Mosquitto, each run as a subprocess, and waiting on them.

Used by the demo and ``make up`` (stack/system.py), the benchmarks (bench/) and
the tests: one way to start, wait for, stop and kill them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from stack.embedded import free_port

REPO = Path(__file__).resolve().parent.parent
"""The repository: the gateway runs in it, and the Mosquitto settings are in deploy/mosquitto/conf.d."""


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check: Callable[[], bool], seconds: float, pause: float = 0.2) -> bool:
    """Call ``check`` every ``pause`` seconds until it is true (True) or ``seconds`` have passed (its last answer)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(pause)
    return check()


def stop_process(
    proc: subprocess.Popen[bytes],
    timeout: float = 20.0,
    *,
    strict: bool = False,
    sig: signal.Signals = signal.SIGTERM,
    kill_wait: float = 5.0,
) -> None:
    """Ask a process to end (``sig``) and wait up to ``timeout`` s; if it has not, kill -9 it.

    After the kill it is waited for ``kill_wait`` s more. ``strict``: a clean end was
    required, so subprocess.TimeoutExpired is raised after the kill.
    """
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)
        if strict:
            raise


@dataclass
class GatewayProcess:
    """``python -m gateway --log-format text run`` as a subprocess, configured through its environment.

    ``settings`` become GATEWAY_<NAME> variables (``{"checkpoint_interval": "0.3"}``:
    GATEWAY_CHECKPOINT_INTERVAL=0.3) and win over the ones made from the other fields.
    Its output is appended to ``log_file``; start() may be called again after stop() or kill().
    """

    database_url: str
    mqtt_url: str
    log_file: Path
    origin: str
    key_file: Path
    client_id: str
    port: int = 0
    """The API's port; 0: a free one, chosen now (and kept across restarts)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    """What error messages call it: "the gateway <name>"."""
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self._called} is not started")
        return self.proc.pid

    @property
    def _called(self) -> str:
        return f"the gateway {self.name}" if self.name else "the gateway"

    def env(self) -> dict[str, str]:
        """The environment it runs in: this process's, with the gateway's settings."""
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "MQTT_URL": self.mqtt_url,
            "GATEWAY_ORIGIN": self.origin,
            "GATEWAY_KEY_FILE": str(self.key_file),
            "GATEWAY_API_PORT": str(self.port),
            "GATEWAY_MQTT_CLIENT_ID": self.client_id,
            **{f"GATEWAY_{k.upper()}": v for k, v in self.settings.items()},
        }

    def start(
        self, timeout: float = 60.0, *, pause: float = 0.1, request_timeout: float = 1.0
    ) -> GatewayProcess:
        """Start it and wait until it is ready (wait_ready's arguments)."""
        self.spawn()
        self.wait_ready(timeout, pause=pause, request_timeout=request_timeout)
        return self

    def spawn(self) -> None:
        """Start the process, without waiting for it."""
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--log-format", "text", "run"],
                env=self.env(), cwd=REPO, stdout=log, stderr=log,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0, *, pause: float = 0.1, request_timeout: float = 1.0) -> None:
        """Poll GET /readyz every ``pause`` s until it answers 200.

        RuntimeError if the process exits first or is not ready within ``timeout`` s.
        """
        if self.proc is None:
            raise RuntimeError(f"{self._called} is not started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self._called} exited at start; see {self.log_file}")
            try:
                if httpx.get(self.url + "/readyz", timeout=request_timeout).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(pause)
        raise RuntimeError(f"{self._called} did not become ready in {timeout:g} s; see {self.log_file}")

    def metric(self, name: str) -> float:
        """The value of an unlabelled Prometheus metric at GET /metrics (0.0 if it is not there)."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def stop(self, timeout: float = 20.0, *, strict: bool = False) -> None:
        """SIGTERM, a clean shutdown; kill -9 if it has not ended in ``timeout`` s (see stop_process)."""
        if self.proc is not None:
            stop_process(self.proc, timeout, strict=strict)

    def kill(self, wait: float = 10.0) -> None:
        """kill -9: a crash."""
        if self.proc is None:
            raise RuntimeError(f"{self._called} is not started")
        self.proc.kill()
        self.proc.wait(wait)


class ServerProcess:
    """A server of our own as a subprocess (a broker): stopped cleanly, killed, its saved state wiped.

    ``stop`` sends ``stop_signal`` and kills it -9 if it has not ended in time; ``kill`` is
    kill -9; ``wipe`` deletes what it saved (``_clear_state``), only while it is not running.
    start() may be called again after stop() or kill().
    """

    kind = "server"
    stop_signal = signal.SIGTERM
    proc: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 15.0, *, strict: bool = False) -> None:
        if self.proc is not None:
            try:
                stop_process(self.proc, timeout, strict=strict, sig=self.stop_signal)
            finally:
                self.proc = None

    def kill(self, wait: float = 15.0) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(wait)
            self.proc = None

    def wipe(self) -> None:
        if self.proc is not None:
            raise RuntimeError(f"{self.kind} is running: stop or kill it before wiping its state")
        self._clear_state()

    def _clear_state(self) -> None:
        """Delete the saved state; nothing by default."""


class MosquittoProcess(ServerProcess):
    """A Mosquitto of our own with the project's queue settings (deploy/mosquitto/conf.d).

    Listens on 127.0.0.1:``port`` (a free one by default), allows anonymous clients
    and keeps its persistent state in ``workdir``/data (unless ``persistence`` is
    false: then a restart forgets every session and queued message); its output goes
    to ``workdir``/mosquitto.log. start() may be called again after stop() or kill().
    """

    kind = "mosquitto"

    def __init__(self, workdir: Path, port: int | None = None, *, persistence: bool = True) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.host = "127.0.0.1"
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {workdir / 'data'}/\n"
            # run as root, Mosquitto would otherwise become the user "mosquitto", who cannot write workdir
            + ("user root\n" if os.geteuid() == 0 else "")
            + f"include_dir {REPO / 'deploy' / 'mosquitto' / 'conf.d'}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> MosquittoProcess:
        """Start it and wait until its port is open (RuntimeError if not within ``timeout`` s)."""
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        with open(self.workdir / "mosquitto.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "-c", str(self.conf)], stdout=log, stderr=log)
        if not wait_for(lambda: port_open(self.host, self.port), timeout, pause=0.1):
            raise RuntimeError(f"mosquitto did not start on port {self.port}; see {self.workdir}")
        return self

    def _clear_state(self) -> None:
        """Sessions, subscriptions and queued messages (a clean stop saves them; kill -9 loses what
        came since the last autosave)."""
        shutil.rmtree(self.workdir / "data", ignore_errors=True)
        (self.workdir / "data").mkdir(parents=True)
