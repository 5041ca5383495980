"""Mosquitto started the way docker-compose.yml starts it, and MQTT clients that record what they get.

:func:`start_as_compose_does` runs the mosquitto service's command from docker-compose.yml
(compose-users.sh, which makes the users and then starts the machine's mosquitto binary) with its
environment and its copy of deploy/mosquitto/mosquitto.conf, every path in which is taken through
the service's volumes: a bind mount to the repository's file, a named volume to a temporary
directory.  Only the listener moves (to a free port on 127.0.0.1).
"""

from __future__ import annotations

import getpass
import os
import queue
import re
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from stack.processes import stop_process
from tests.deploy.deployfiles import (
    MOSQUITTO_DIR,
    command,
    environment,
    load_compose,
    mount_of,
    port_mappings,
)
from tests.services import free_port, port_open, wait_for

ADD_DEVICE = MOSQUITTO_DIR / "add-device.sh"
COMPOSE_USERS = MOSQUITTO_DIR / "compose-users.sh"
WAIT = 10.0


def mosquitto_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None:
        pytest.fail(f"{name} is not installed (apt install mosquitto mosquitto-clients)")
    return path


def run_script(script: Path, *args: str, password_file: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "MOSQUITTO_PASSWORD_FILE": str(password_file), **env},
    )


def add_device(device_id: str, password_file: Path, *options: str) -> str:
    result = run_script(ADD_DEVICE, *options, device_id, password_file=password_file)
    assert result.returncode == 0, result.stderr
    passwords = re.findall(r"^password: (\S+)$", result.stdout, re.MULTILINE)
    assert len(passwords) == 1, result.stdout
    assert result.stdout.count(passwords[0]) == 2, "printed as the password line and in the config snippet"
    return passwords[0]


def users_in(password_file: Path) -> list[str]:
    return [line.split(":", 1)[0] for line in password_file.read_text().splitlines() if line]


PATHS = ("password_file", "acl_file", "persistence_location", "include_dir")


def compose_service() -> dict[str, Any]:
    service: dict[str, Any] = load_compose()["services"]["mosquitto"]
    return service


def on_host(service: dict[str, Any], container_path: str, volumes: Path) -> str:
    """Where ``container_path`` of the service is here: its bind mount's repository file, or the
    named volume's directory under ``volumes``."""
    found = mount_of(service, container_path)
    assert found is not None, f"{container_path} is on none of the mosquitto service's volumes"
    mount, rel = found
    base = mount.host_path() if mount.is_bind else volumes / mount.source
    if not mount.is_bind:
        base.mkdir(parents=True, exist_ok=True)
    return str(base / rel) + ("/" if container_path.endswith("/") else "")


def adapted_conf(text: str, port: int, service: dict[str, Any], volumes: Path) -> str:
    """mosquitto.conf with each path taken through the service's volumes and the listener on ``port``."""
    seen: dict[str, int] = {}
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        name, _, value = (
            stripped.partition(" ") if stripped and not stripped.startswith("#") else ("", "", "")
        )
        if name == "listener":
            assert int(value.split()[0]) in [c for _, c in port_mappings(service)], (
                "the port compose publishes"
            )
            out.append(f"listener {port} 127.0.0.1")
        elif name in PATHS:
            out.append(f"{name} {on_host(service, value.strip(), volumes)}")
        else:
            out.append(line)
        if name in (*PATHS, "listener"):
            seen[name] = seen.get(name, 0) + 1
    assert seen == dict.fromkeys((*PATHS, "listener"), 1), (
        f"expected each of {PATHS} and listener once, got {seen}"
    )
    if os.geteuid() == 0:
        # Started as root, Mosquitto switches to the user `mosquitto`, who cannot
        # read the test's private temporary directory: stay this user instead.
        out.append(f"user {getpass.getuser()}")
    return "\n".join(out) + "\n"


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    password_file: Path
    passwords: dict[str, str] = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_as_compose_does(workdir: Path, devices: tuple[str, ...] = ()) -> Broker:
    """The mosquitto service of docker-compose.yml (defaults of every variable), here."""
    binary = mosquitto_tool("mosquitto")
    mosquitto_tool("mosquitto_passwd")
    service = compose_service()
    volumes = workdir / "volumes"
    env = environment(service)
    pwfile = Path(on_host(service, env["MOSQUITTO_PASSWORD_FILE"], volumes))
    passwords = {"gateway": env["MQTT_GATEWAY_PASSWORD"], "simulator": env["MQTT_SIMULATOR_PASSWORD"]}
    if not pwfile.exists():
        script_env = {k: v for k, v in env.items() if k != "MOSQUITTO_PASSWORD_FILE"}
        made = run_script(COMPOSE_USERS, "true", password_file=pwfile, **script_env)
        assert made.returncode == 0, made.stderr
    for device in devices:
        passwords[device] = add_device(device, pwfile)
    cmd = command(service)
    conf_at = cmd.index("-c") + 1
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf_text = Path(on_host(service, cmd[conf_at], volumes)).read_text(encoding="utf-8")
    conf.write_text(adapted_conf(conf_text, port, service, volumes), encoding="utf-8")
    assert Path(cmd[2]).name == "mosquitto", cmd
    here = [on_host(service, c, volumes) if c.startswith("/mosquitto/") else c for c in cmd]
    here[2], here[conf_at] = binary, str(conf)
    log = workdir / "mosquitto.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(here, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **env,
                                "MOSQUITTO_PASSWORD_FILE": str(pwfile)})  # fmt: skip
    running = Broker(port, proc, log, pwfile, passwords)
    if not wait_for(lambda: port_open("127.0.0.1", port) or proc.poll() is not None, 15):
        stop_process(proc, 10, kill_wait=10)
        pytest.fail(f"mosquitto did not start:\n{running.log_text()}")
    assert proc.poll() is None, f"mosquitto refused the configuration:\n{running.log_text()}"
    return running


class Client:
    """A paho client (MQTT 3.1.1) that records what it receives."""

    def __init__(self, broker: Broker, user: str | None, password: str | None = None) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.received: list[tuple[str, bytes]] = []
        self.connack: object = None
        self.connected = threading.Event()
        self.subacks: dict[int, list[object]] = {}
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{user}-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv311,
        )
        if user is not None:
            self.client.username_pw_set(user, broker.passwords.get(user) if password is None else password)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, msg: self.messages.put((msg.topic, bytes(msg.payload)))
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: object, userdata: object, flags: object, rc: object, props: object) -> None:
        self.connack = rc
        self.connected.set()

    def _on_subscribe(
        self, client: object, userdata: object, mid: int, codes: list[object], props: object
    ) -> None:
        self.subacks[mid] = codes

    def accepted(self) -> bool:
        assert self.connected.wait(WAIT), "no CONNACK"
        return not getattr(self.connack, "is_failure", True)

    def subscribe(self, *topics: str) -> None:
        assert self.accepted(), f"connection refused: {self.connack}"
        for topic in topics:
            _, mid = self.client.subscribe(topic, qos=1)
            assert wait_for(lambda mid=mid: mid in self.subacks, WAIT), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes) -> None:
        assert self.accepted(), f"connection refused: {self.connack}"
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(WAIT)
        assert info.is_published()

    def wait_for_message(self, topic: str, payload: bytes) -> None:
        """Until (topic, payload) arrived; everything received meanwhile is kept in ``received``."""
        while True:
            try:
                message = self.messages.get(timeout=WAIT)
            except queue.Empty:
                raise AssertionError(f"{payload!r} on {topic} never arrived; got {self.received}") from None
            self.received.append(message)
            if message == (topic, payload):
                return

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(clients: list[Client], broker: Broker, user: str | None, password: str | None = None) -> Client:
    client = Client(broker, user, password)
    clients.append(client)
    return client


def publish_denied(
    broker: Broker, user: str, topic: str, payload: bytes, password: str | None = None
) -> None:
    """Publish (QoS 1) on a connection of its own and wait for the PUBACK; the broker
    may close the connection afterwards."""
    client = Client(broker, user, password)
    try:
        client.publish(topic, payload)
    finally:
        client.close()
