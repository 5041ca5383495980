"""deploy/mosquitto/: the user scripts, and a real Mosquitto started the way docker-compose.yml
starts it (tests/deploy/livebroker.py), enforcing the ACL.  The configuration, the ACL, the scripts
and the compose file are checked by what the broker does, not by reading them.

A denied publish is silent in MQTT 3.1.1 (the PUBACK still comes), so "cannot publish" is checked
from the receiving side: the forbidden message is published and acknowledged first, an allowed one
after it; Mosquitto routes a message before it acknowledges it, so once the allowed message has
arrived the forbidden one would have arrived too.  Each forbidden publish uses a connection of its
own: with conf.d's ``max_queued_messages 0``, Mosquitto 2.0.11 closes the connection of a client
right after acknowledging a publish it denied.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.topics import READINGS_FILTER, readings_topic, receipts_topic, status_topic
from stack.processes import stop_process
from tests.deploy.deployfiles import environment, load_compose, port_mappings
from tests.deploy.livebroker import (
    ADD_DEVICE,
    COMPOSE_USERS,
    WAIT,
    Broker,
    Client,
    add_device,
    compose_service,
    connect,
    mosquitto_tool,
    publish_denied,
    run_script,
    start_as_compose_does,
    users_in,
)
from tests.services import wait_for


def test_add_device(tmp_path: Path) -> None:
    mosquitto_tool("mosquitto_passwd")
    pwfile = tmp_path / "auth" / "passwd"
    first = add_device("dev-one", pwfile)
    assert re.fullmatch(r"[0-9a-f]{48}", first)
    assert pwfile.stat().st_mode & 0o077 == 0, "the password file must not be readable by others"
    assert add_device("dev-two", pwfile) != first
    assert users_in(pwfile) == ["dev-one", "dev-two"]
    assert first not in pwfile.read_text(), "only the hash is stored"
    # an existing device is refused unless --replace
    again = run_script(ADD_DEVICE, "dev-one", password_file=pwfile)
    assert again.returncode != 0
    assert "already" in again.stderr
    before = pwfile.read_text()
    add_device("dev-one", pwfile, "--replace")
    assert pwfile.read_text() != before
    assert sorted(users_in(pwfile)) == ["dev-one", "dev-two"]
    # not a device id, or a reserved user: refused, nothing written
    for bad in ("", "-x", "dev/one", "dev+", "#", "a" * 65, "dév", "gateway", "simulator"):
        result = run_script(ADD_DEVICE, bad, password_file=pwfile)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
    assert sorted(users_in(pwfile)) == ["dev-one", "dev-two"]
    # the instructions it prints: the agent config and the reload
    out = run_script(ADD_DEVICE, "dev-three", password_file=pwfile).stdout
    assert "[mqtt]" in out
    assert "SIGHUP" in out


def test_compose_users(tmp_path: Path) -> None:
    mosquitto_tool("mosquitto_passwd")
    pwfile = tmp_path / "auth" / "passwd"
    result = run_script(
        COMPOSE_USERS,
        "sh",
        "-c",
        "echo started",
        password_file=pwfile,
        MQTT_GATEWAY_PASSWORD="gw",
        MQTT_SIMULATOR_PASSWORD="sim",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started", "it must exec its arguments"
    assert sorted(users_in(pwfile)) == ["gateway", "simulator"]
    add_device("dev-kept", pwfile)
    # production: no simulator password, no simulator user; devices are kept
    result = run_script(
        COMPOSE_USERS, "true", password_file=pwfile, MQTT_GATEWAY_PASSWORD="gw2", MQTT_SIMULATOR_PASSWORD=""
    )
    assert result.returncode == 0, result.stderr
    assert sorted(users_in(pwfile)) == ["dev-kept", "gateway"]
    # the gateway's password is required
    env_without = {k: v for k, v in os.environ.items() if k != "MQTT_GATEWAY_PASSWORD"}
    missing = subprocess.run(
        ["sh", str(COMPOSE_USERS), "true"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env_without, "MOSQUITTO_PASSWORD_FILE": str(pwfile)},
    )
    assert missing.returncode != 0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = start_as_compose_does(tmp_path_factory.mktemp("mosquitto"), ("dev-a", "dev-b"))
    try:
        yield running
    finally:
        stop_process(running.proc, 10, kill_wait=10)


@pytest.fixture
def clients(broker: Broker) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def test_only_known_users_may_connect(broker: Broker, clients: list[Client]) -> None:
    assert not connect(clients, broker, None).accepted(), "anonymous clients must be refused"
    assert not connect(clients, broker, "dev-a", "wrong-password").accepted()
    assert not connect(clients, broker, "dev-a", broker.passwords["dev-b"]).accepted()
    assert connect(clients, broker, "dev-a").accepted()
    assert connect(clients, broker, "gateway").accepted()


def test_a_device_publishes_only_its_own_readings_and_status(broker: Broker, clients: list[Client]) -> None:
    gateway = connect(clients, broker, "gateway")
    gateway.subscribe(READINGS_FILTER, status_topic("+"))
    shared = connect(clients, broker, "gateway")  # a second gateway process sharing the readings
    shared.subscribe(f"$share/ingest/{READINGS_FILTER}")
    publish_denied(broker, "dev-a", readings_topic("dev-b"), b"forged reading")
    publish_denied(broker, "dev-a", status_topic("dev-b"), b"forged status")
    publish_denied(broker, "dev-a", readings_topic("gateway"), b"reading as the gateway")
    device = connect(clients, broker, "dev-a")
    device.publish(status_topic("dev-a"), b"online")
    device.publish(readings_topic("dev-a"), b"own reading")
    gateway.wait_for_message(readings_topic("dev-a"), b"own reading")
    shared.wait_for_message(readings_topic("dev-a"), b"own reading")
    assert gateway.received == [(status_topic("dev-a"), b"online"), (readings_topic("dev-a"), b"own reading")]
    assert shared.received == [(readings_topic("dev-a"), b"own reading")]
    # the gateway itself cannot put readings in a device's name
    publish_denied(broker, "gateway", readings_topic("dev-a"), b"reading forged by the gateway")
    publish_denied(broker, "gateway", status_topic("dev-a"), b"status forged by the gateway")
    device.publish(readings_topic("dev-a"), b"second reading")
    gateway.wait_for_message(readings_topic("dev-a"), b"second reading")
    assert gateway.received[2:] == [(readings_topic("dev-a"), b"second reading")]


def test_a_device_reads_only_its_own_receipts(broker: Broker, clients: list[Client]) -> None:
    device_a = connect(clients, broker, "dev-a")
    # Mosquitto 2.0 grants these subscriptions but delivers only what the ACL lets dev-a read
    device_a.subscribe(receipts_topic("dev-a"), receipts_topic("dev-b"), receipts_topic("+"), "#")
    device_b = connect(clients, broker, "dev-b")
    device_b.subscribe(receipts_topic("dev-b"))
    gateway = connect(clients, broker, "gateway")
    gateway.publish(receipts_topic("dev-b"), b"receipt for b")
    gateway.publish(receipts_topic("dev-a"), b"receipt for a")
    device_b.wait_for_message(receipts_topic("dev-b"), b"receipt for b")
    device_a.wait_for_message(receipts_topic("dev-a"), b"receipt for a")
    assert all(message == (receipts_topic("dev-a"), b"receipt for a") for message in device_a.received)
    # nor anyone's readings
    other = connect(clients, broker, "dev-b")
    other.publish(readings_topic("dev-b"), b"b's reading")
    gateway.publish(receipts_topic("dev-a"), b"marker")
    device_a.wait_for_message(receipts_topic("dev-a"), b"marker")
    assert not any(topic.endswith("/readings") for topic, _ in device_a.received)


def test_the_demo_simulator_may_act_for_any_device(broker: Broker, clients: list[Client]) -> None:
    gateway = connect(clients, broker, "gateway")
    gateway.subscribe(READINGS_FILTER)
    simulator = connect(clients, broker, "simulator")
    simulator.subscribe(receipts_topic("+"))
    simulator.publish(readings_topic("dev-sim-1"), b"simulated reading")
    gateway.wait_for_message(readings_topic("dev-sim-1"), b"simulated reading")
    gateway.publish(receipts_topic("dev-sim-1"), b"simulated receipt")
    simulator.wait_for_message(receipts_topic("dev-sim-1"), b"simulated receipt")


def test_a_new_device_after_add_device_and_sighup(broker: Broker, clients: list[Client]) -> None:
    """The documented procedure: add-device.sh, then SIGHUP; no ACL edit, no restart."""
    gateway = connect(clients, broker, "gateway")
    gateway.subscribe(READINGS_FILTER)
    assert not connect(clients, broker, "dev-new", "not-yet").accepted()
    password = add_device("dev-new", broker.password_file)
    broker.proc.send_signal(signal.SIGHUP)

    def logs_in() -> bool:
        probe = Client(broker, "dev-new", password)
        try:
            return probe.accepted()
        finally:
            probe.close()

    assert wait_for(logs_in, WAIT), f"dev-new cannot log in after SIGHUP:\n{broker.log_text()}"
    publish_denied(broker, "dev-new", readings_topic("dev-a"), b"forged by the new device", password)
    device = connect(clients, broker, "dev-new", password)
    device.publish(readings_topic("dev-new"), b"first reading")
    gateway.wait_for_message(readings_topic("dev-new"), b"first reading")
    assert gateway.received == [(readings_topic("dev-new"), b"first reading")]
    assert broker.proc.poll() is None


def test_the_compose_services_log_in_with_their_urls(broker: Broker, clients: list[Client]) -> None:
    """The gateway's and the simulator's MQTT_URL in docker-compose.yml name this broker's port and
    the users compose-users.sh made, with their passwords: the simulated fleet's readings reach the gateway."""
    services = load_compose()["services"]
    urls = {name: urlsplit(environment(services[name])["MQTT_URL"]) for name in ("gateway", "simulator")}
    listener = [c for _, c in port_mappings(compose_service())]
    for name, url in urls.items():
        assert (url.scheme, url.hostname) == ("mqtt", "mosquitto"), name
        assert url.port in listener, name
    gateway = connect(clients, broker, urls["gateway"].username, urls["gateway"].password)
    gateway.subscribe(READINGS_FILTER)
    simulator = connect(clients, broker, urls["simulator"].username, urls["simulator"].password)
    simulator.publish(readings_topic("dev-compose-1"), b"a simulated reading")
    gateway.wait_for_message(readings_topic("dev-compose-1"), b"a simulated reading")


def test_queued_readings_survive_a_restart_and_none_are_dropped(tmp_path: Path) -> None:
    """Persistence, and no cap on a session's queue: readings for a gateway that is away (more than
    Mosquitto's default limit of 1000) are all delivered after the broker restarts."""
    count = 1500
    first = start_as_compose_does(tmp_path)
    try:
        session = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-persistent", clean_session=False,
                              protocol=mqtt.MQTTv311)  # fmt: skip
        session.username_pw_set("gateway", first.passwords["gateway"])
        session.connect("127.0.0.1", first.port)
        session.loop_start()
        assert session.subscribe(READINGS_FILTER, qos=1)[0] == mqtt.MQTT_ERR_SUCCESS
        time.sleep(0.5)
        session.disconnect()
        session.loop_stop()
        sender = Client(first, "simulator")
        try:
            for i in range(count):
                sender.client.publish(readings_topic("dev-q"), str(i).encode(), qos=1)
            sender.publish(readings_topic("dev-q"), b"last")
        finally:
            sender.close()
    finally:
        stop_process(first.proc, 10, kill_wait=10)
    again = start_as_compose_does(tmp_path)
    received: queue.Queue[bytes] = queue.Queue()
    try:
        back = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="gw-persistent", clean_session=False,
                           protocol=mqtt.MQTTv311)  # fmt: skip
        back.username_pw_set("gateway", again.passwords["gateway"])
        back.on_message = lambda c, u, msg: received.put(bytes(msg.payload))
        back.connect("127.0.0.1", again.port)
        back.loop_start()
        got: list[bytes] = []
        while b"last" not in got:
            try:
                got.append(received.get(timeout=WAIT))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {count + 1} queued readings arrived") from None
        back.disconnect()
        back.loop_stop()
    finally:
        stop_process(again.proc, 10, kill_wait=10)
    assert got == [str(i).encode() for i in range(count)] + [b"last"]
