"""kill -9 the real agent at random moments: nothing lost, no sequence number reused."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.reading import Status, Trigger, decode_envelope
from attest_core.topics import readings_topic
from edge_agent.config import load_config, update_config
from edge_agent.enrol import load_enrolment
from tests.edge_agent.chaincheck import chain_row, check_chain, outbox
from tests.edge_agent.fakes import FakeGateway
from tests.services import Broker

KILLS = 6


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_for_progress(db: Path, device_id: str, beyond: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the agent died by itself"
        if db.exists():
            try:
                next_seq = chain_row(db, device_id)[0]
            except Exception:  # the schema may not exist yet
                next_seq = 0
            if next_seq > beyond:
                return next_seq
        time.sleep(0.02)
    raise AssertionError("the agent made no progress")


def test_kill_9_at_random_moments(
    enrolled: Path, gateway: FakeGateway, broker: Broker, tmp_path: Path
) -> None:
    config_path = enrolled
    update_config(config_path, "meter", {"interval_s": 0.002})
    update_config(config_path, "mqtt", {"url": f"mqtt://{broker.host}:{broker.port}"})
    config = load_config(config_path, environ={})
    statement = load_enrolment(config.state_dir)
    assert statement is not None
    device_id, db = config.device_id, config.db_path

    # Everything the agent publishes, to compare with what it kept.
    published: list[bytes] = []
    lock = threading.Lock()
    sub = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with lock:
            published.append(bytes(message.payload))

    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe(readings_topic(device_id), qos=1)
    sub.loop_start()
    assert subscribed.wait(10)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log = tmp_path / "agent.log"
    snapshots: list[dict[int, bytes]] = []
    last = 0
    try:
        for _ in range(KILLS):
            proc = start_agent(config_path, log)
            try:
                last = wait_for_progress(db, device_id, last + 10, proc)
                time.sleep(rng.uniform(0.0, 0.25))  # a random moment: signing, committing, publishing
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            assert proc.returncode == -signal.SIGKILL
            snapshots.append(outbox(db, device_id))
            last = chain_row(db, device_id)[0] - 1  # what survived the kill
        # one more start, stopped cleanly this time
        proc = start_agent(config_path, log)
        wait_for_progress(db, device_id, last + 10, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()[-3000:]
        time.sleep(0.5)  # let the subscriber drain
    finally:
        sub.loop_stop()
        sub.disconnect()

    readings = check_chain(db, device_id, statement.public_key, statement.chain_anchor())
    final = outbox(db, device_id)
    # No reading that existed after a kill was ever replaced: a sequence number is used once.
    for i, snapshot in enumerate(snapshots):
        assert snapshot.items() <= final.items(), f"kill {i + 1} (seed {seed}): a stored reading changed"
    # Every reading that reached the broker is the stored one with that sequence number.
    with lock:
        seen = list(published)
    assert len(seen) > 50
    for raw in seen:
        reading = decode_envelope(raw).reading()
        assert final[reading.seq] == raw, f"seq {reading.seq} was published with other content (seed {seed})"
    # each start begins with a boot reading
    boots = [r.seq for r in readings if r.trigger is Trigger.BOOT]
    assert len(boots) == KILLS + 1, boots
    assert readings[-1].seq > 100
    # The v2 counters survived every kill: each start counted once, none lost, none twice
    # (check_chain also checked every reading's counters against the one before it).
    last = readings[-1].counters
    assert last is not None
    assert last.powerups == KILLS + 1 == sum(1 for r in readings if r.status & Status.POWER_UP)
    assert last.fault_readings == sum(1 for r in readings if r.status & (Status.TAMPER | Status.METER_ERROR))
