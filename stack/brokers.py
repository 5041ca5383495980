"""MQTT brokers run as subprocesses of our own: Mosquitto, amqtt and NATS, behind one interface.

Tests and benchmarks start one on free ports in a work directory, stop it cleanly
(it keeps whatever it persists), kill -9 it (a crash), wipe its saved state (a
broker that lost every session) and start it again on the same ports.

What each one supports, and how to configure it for the gateway, is in docs/brokers.md.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from stack.embedded import free_port
from stack.processes import MosquittoProcess, ServerProcess, port_open, wait_for

__all__ = [
    "AmqttProcess",
    "BrokerProcess",
    "MosquittoProcess",
    "NatsCluster",
    "NatsProcess",
    "broker_process",
]


class BrokerProcess(Protocol):
    """What a test needs of a broker it owns."""

    kind: str
    """"mosquitto", "amqtt" or "nats"."""
    host: str
    port: int
    """The MQTT port."""
    workdir: Path

    @property
    def url(self) -> str: ...

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        """Start it and wait until it accepts MQTT connections (RuntimeError if not)."""
        ...

    def stop(self, timeout: float = 15.0, *, strict: bool = False) -> None:
        """A clean shutdown: it saves what it persists."""
        ...

    def kill(self, wait: float = 15.0) -> None:
        """kill -9: whatever it had not saved is gone."""
        ...

    def wipe(self) -> None:
        """Delete its saved state (sessions, subscriptions, queued messages); only while it is stopped."""
        ...


def _spawn(argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    with open(log_file, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=log)


def _wait_listening(proc: subprocess.Popen[bytes], ports: list[int], timeout: float, what: str) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode})")
        return all(port_open("127.0.0.1", p) for p in ports)

    if not wait_for(up, timeout, pause=0.1):
        raise RuntimeError(f"{what} did not open ports {ports} in {timeout:g} s")


class NatsProcess(ServerProcess):
    """A ``nats-server`` with JetStream and an MQTT listener (MQTT 3.1.1 only).

    NATS keeps MQTT sessions, subscriptions and QoS 1 messages in JetStream, so
    JetStream must be on, with a ``server_name``; its files are in ``workdir``/jetstream.
    The client port is needed by nothing here but cannot be turned off; no monitoring port.
    Output goes to ``workdir``/nats.log.
    """

    kind = "nats"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        client_port: int | None = None,
        *,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
    ) -> None:
        """``cluster_port`` and ``routes`` (the other nodes' cluster ports): a node of a cluster."""
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.client_port = client_port or free_port()
        self.store = workdir / "jetstream"
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nats.conf"
        cluster = ""
        replicas = ""
        if cluster_port is not None:
            peers = ", ".join(f'"nats-route://127.0.0.1:{r}"' for r in routes or [])
            cluster = (
                f'cluster {{\n  name: "iot-attest"\n  listen: 127.0.0.1:{cluster_port}\n'
                f"  routes: [{peers}]\n}}\n"
            )
            # every node holds a copy of the sessions and queued messages
            replicas = f"  stream_replicas: {len(routes or []) + 1}\n"
        self.conf.write_text(
            # nats-server refuses an mqtt block without an explicit server name
            f'server_name: "iot-attest-{self.port}"\n'
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{\n  store_dir: "{self.store}"\n}}\n'
            + cluster
            + f"mqtt {{\n  listen: 127.0.0.1:{self.port}\n{replicas}}}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsProcess:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.proc = _spawn([binary, "-c", str(self.conf)], self.workdir / "nats.log")
        # the client port opens last, once JetStream has recovered its streams
        _wait_listening(
            self.proc, [self.port, self.client_port], timeout, f"nats-server (see {self.workdir})"
        )
        return self

    def _clear_state(self) -> None:
        shutil.rmtree(self.store, ignore_errors=True)


class NatsCluster:
    """``size`` NATS nodes in one JetStream cluster, each with its MQTT listener, in ``workdir``/node-<i>.

    MQTT streams are replicated to every node. The nodes are started together, since a
    JetStream cluster has no leader (and MQTT clients are refused) until a majority is up.
    """

    def __init__(self, workdir: Path, size: int = 3) -> None:
        cluster_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsProcess(
                workdir / f"node-{i}",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
            )
            for i in range(size)
        ]

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            node.start(timeout)
        return self

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


class AmqttProcess(ServerProcess):
    """The amqtt broker (MQTT 3.1.1) as a subprocess, so it can be killed and started again.

    It keeps sessions and queued messages in memory only: any restart, clean or
    not, is a broker that lost every session. (amqtt's SQLite plugin would keep
    subscriptions but not queued messages, and not those of anonymous clients.)
    Output goes to ``workdir``/amqtt.log.
    """

    kind = "amqtt"
    stop_signal = signal.SIGINT
    """The amqtt command shuts the broker down on KeyboardInterrupt (SIGTERM just ends it)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "amqtt.yaml"
        # no packet logger and no $SYS plugin: anonymous access and nothing else
        self.conf.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def stop(self, timeout: float = 5.0, *, strict: bool = False) -> None:
        """SIGINT, then kill -9 after ``timeout``, clean or not (``strict`` asks nothing more here).

        A clean end saves nothing (amqtt keeps nothing), and amqtt 0.12's shutdown can hang for
        good when a client connects while it runs: its log then shows the connection accepted
        after "Shutting down broker...".
        """
        super().stop(timeout, strict=False)

    def start(self, timeout: float = 30.0) -> AmqttProcess:
        script = Path(sys.executable).parent / "amqtt"
        if not script.exists():
            raise RuntimeError("amqtt is not installed (pip install '.[demo]')")
        self.proc = _spawn([str(script), "-c", str(self.conf)], self.workdir / "amqtt.log")
        _wait_listening(self.proc, [self.port], timeout, f"amqtt (see {self.workdir})")
        return self


BROKERS = ("mosquitto", "amqtt", "nats")


def broker_process(kind: str, workdir: Path) -> BrokerProcess:
    """A broker of this kind (one of BROKERS), not started, with its files in workdir."""
    if kind == "mosquitto":
        return MosquittoProcess(workdir)
    if kind == "amqtt":
        return AmqttProcess(workdir)
    if kind == "nats":
        return NatsProcess(workdir)
    raise ValueError(f"unknown broker {kind!r}: one of {', '.join(BROKERS)}")
