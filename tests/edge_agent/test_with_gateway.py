"""The edge agent against the REAL gateway: enrolment over its REST API, readings over a real
Mosquitto (the project's queue settings) into its Merkle log, signed receipts back.

Everything runs as the installer would run it: ``python -m edge_agent init / enrol / run /
status / simulate`` as processes; the gateway is the real one (``GatewayThread``) on a fresh
PostgreSQL database.

Longer than 400 lines because its end-to-end scenarios (an agent killed with -9, the fleet
simulator, enrolment retries, receipts whose proofs fail) share the one costly setup (gateway, database, broker,
their helpers); split, each file would repeat it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from attest_core.checkpoint import open_checkpoint
from attest_core.device import (
    AssetKind,
    EnrolmentStatement,
    Location,
    decode_enrolment_statement,
    log_key_hash,
)
from attest_core.entries import EnrolmentEntry, ReadingEntry, decode_entry, encode_entry, reading_entry_bytes
from attest_core.merkle import consistency_proof, inclusion_proof, leaf_hash, root_from_leaf_hashes
from attest_core.reading import decode_envelope, reading_hash
from attest_core.receipt import ProvenTree, Receipt, check_extension, check_inclusion
from attest_core.topics import receipts_topic
from edge_agent.config import load_config, update_config
from edge_agent.consistency import consistency_fetcher
from edge_agent.enrolment_request import EnrolmentRequest
from edge_agent.signer import load_signer
from tests.edge_agent.chaincheck import outbox
from tests.gateway.apiworld import Api, api_gateway, b64, secret
from tests.services import REPO, Broker, MosquittoProcess, Postgres
from tests.support import T0

INSTALLER = secret("installer-1")


# --- the world: a Mosquitto with the project's config, the real gateway ------------------------------


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    process = MosquittoProcess(tmp_path_factory.mktemp("mosquitto")).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def api(
    postgres: Postgres, mosquitto: MosquittoProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The real gateway (in a thread) on a fresh database, with installer, issuer and auditor tokens."""
    broker = Broker(mosquitto.host, mosquitto.port, "mosquitto (deploy/mosquitto/conf.d)")
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("gateway")) as api:
        yield api


@dataclass
class Proc:
    code: int
    out: str
    err: str


def agent_cli(*args: str | Path, timeout: float = 60) -> Proc:
    """``python -m edge_agent ARGS`` as a process."""
    proc = subprocess.run(
        [sys.executable, "-m", "edge_agent", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return Proc(proc.returncode, proc.stdout, proc.stderr)


def status(config: Path) -> dict[str, Any]:
    result = agent_cli("status", "--config", config, "--json")
    assert result.code == 0, result.err
    info: dict[str, Any] = json.loads(result.out)
    return info


def query(api: Api, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return list(await conn.fetch(sql, *args))

    rows: list[asyncpg.Record] = api.run(go)
    return rows


def until(check: Any, seconds: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if proc is not None:
            assert proc.poll() is None, f"the agent died by itself while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def logged_seq(api: Api, device_id: str) -> int:
    """The highest seq up to which the gateway holds every reading of the device, all logged."""
    row = query(
        api,
        "SELECT count(*) AS n, coalesce(max(seq), 0) AS top, count(log_index) AS logged FROM readings "
        "WHERE device_id = $1",
        device_id,
    )[0]
    return int(row["top"]) if row["n"] == row["top"] == row["logged"] else 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def init_device(home: Path, api: Api, mosquitto: MosquittoProcess, meter: str) -> Path:
    result = agent_cli(
        "init", "--dir", home, "--meter", meter, "--mqtt", mosquitto.url, "--gateway", api.gw.url
    )
    assert result.code == 0, result.err
    return home / "agent.toml"


def enrol_charger(config: Path, gateway: str, asset: str) -> Proc:
    return agent_cli(
        "enrol", "--config", config, "--gateway", gateway, "--token", INSTALLER,
        "--asset", asset, "--kind", "charger", "--rated-power", "22000",
    )  # fmt: skip


def check_gateway_chain(api: Api, statement: EnrolmentStatement, last_seq: int) -> dict[int, bytes]:
    """The gateway's readings of the device are exactly 1..last_seq, logged, signed and linked."""
    rows = query(
        api,
        "SELECT seq, envelope, log_index FROM readings WHERE device_id = $1 ORDER BY seq",
        statement.device_id,
    )
    assert [r["seq"] for r in rows] == list(range(1, last_seq + 1)), "gaps or extra readings at the gateway"
    assert all(r["log_index"] is not None for r in rows), "readings not logged"
    assert len({r["log_index"] for r in rows}) == len(rows)
    prev = statement.chain_anchor()
    for r in rows:
        envelope = decode_envelope(bytes(r["envelope"]))
        envelope.verify(statement.public_key)
        reading = envelope.reading()
        assert (reading.seq, reading.prev_hash) == (r["seq"], prev)
        prev = reading_hash(envelope.payload)
    # each reading is exactly one log entry: the one its log_index names, holding its exact envelope
    for r in rows[:: max(1, len(rows) // 40)] + rows[-1:]:  # through the public log API, for a sample
        served = api.http.get(f"/v1/log/entries/{r['log_index']}").content
        assert served == encode_entry(ReadingEntry(bytes(r["envelope"])))
    enrolments = query(api, "SELECT idx FROM entries WHERE kind = 1 AND device_id = $1", statement.device_id)
    assert len(enrolments) == 1
    # and the log holds nothing else unaccounted for: every index is one entry row or one reading
    [row] = query(
        api,
        "SELECT (SELECT size FROM log_state) AS size, "
        "(SELECT count(*) FROM entries) + (SELECT count(log_index) FROM readings) AS held, "
        "(SELECT count(*) FROM entries e JOIN readings r ON r.log_index = e.idx) AS both_",
    )
    assert (row["held"], row["both_"]) == (row["size"], 0)
    return {r["seq"]: bytes(r["envelope"]) for r in rows}


# --- 1a + 1c: a real agent, enrolled through the API, killed -9 mid-flow --------------------------------


def start_agent(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def test_a_real_agent_through_the_real_gateway_survives_kill_9(
    api: Api, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    config = init_device(tmp_path / "pi", api, mosquitto, "simulated-charger")
    asset = f"charger-{uuid.uuid4().hex[:6]}"
    enrolled = enrol_charger(config, api.gw.url, asset)
    assert enrolled.code == 0, enrolled.err
    device_id = load_config(config, environ={}).device_id
    assert f"enrolled: device {device_id} for asset {asset} at log index " in enrolled.out
    key = api.log_key()
    assert f"log key:          {key.to_string()}" in enrolled.out
    statement = decode_enrolment_statement(
        (load_config(config, environ={}).state_dir / "enrolment.bin").read_bytes()
    )
    assert (statement.log_origin, statement.log_key_hash) == (key.name, log_key_hash(key))  # the key pinned

    # 1c: the device appears in GET /v1/devices with its asset and kind
    listed = [d for page in api.walk("/v1/devices", "installer-1", asset=asset) for d in page]
    assert [(d["device_id"], d["asset_id"], d["asset_kind"], d["rated_power_w"]) for d in listed] == [
        (device_id, asset, "charger", 22000)
    ]
    assert listed[0]["status"] == "active"
    assert listed[0]["installer"] == "installer-1"
    shown = api.ok(api.get(f"/v1/assets/{asset}", "issuer-1"))
    assert shown["kind"] == "charger"

    conf = load_config(config, environ={})
    statement = decode_enrolment_statement((conf.state_dir / "enrolment.bin").read_bytes())
    update_config(config, "meter", {"interval_s": 0.01})  # 100 readings/s: always some in flight
    log = tmp_path / "agent.log"
    rng = random.Random()
    snapshots: list[dict[int, bytes]] = []
    rss: list[int] = []
    last = 0
    for _ in range(2):  # run, kill -9 at a random moment while readings flow, restart
        proc = start_agent(config, log)
        try:
            last = until(
                lambda b=last + 50: (n := logged_seq(api, device_id)) > b and n, 30, "readings", proc
            )
            rss.append(rss_kib(proc.pid))
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        snapshots.append(outbox(conf.db_path, device_id))  # what waited for a receipt at the kill

    # the last start: no new readings for a long while, so the outbox must drain to zero
    update_config(config, "meter", {"interval_s": 86_400})
    proc = start_agent(config, log)
    try:
        info = until(
            lambda: (s := status(config))["outbox_depth"] == 0 and s["last_receipt"] and s["last_receipt"]["seq"] == s["last_seq"] and s,
            30, "the outbox to drain", proc,
        )  # fmt: skip
        assert info["agent_running"] is True
        assert info["broker"]["state"] == "connected"
        assert info["log_key"] == f"{key.name}+{key.key_id.hex()}"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0, log.read_text()[-3000:]
    n = info["last_seq"]
    assert n > 100

    # every reading the agent made is at the gateway exactly once: seq 1..n, logged, chained
    at_gateway = check_gateway_chain(api, statement, n)
    assert any(snapshots), "nothing was waiting for a receipt at either kill (not mid-flow)"
    for i, snapshot in enumerate(snapshots):
        assert all(at_gateway[seq] == env for seq, env in snapshot.items()), (
            f"kill {i + 1}: a reading changed"
        )
    device = api.ok(api.get(f"/v1/devices/{device_id}", "auditor-1"))
    assert (device["last_accepted_seq"], device["last_logged_seq"]) == (n, n)
    readings = [
        r for page in api.walk(f"/v1/devices/{device_id}/readings", order="asc", limit=1000) for r in page
    ]
    assert [r["seq"] for r in readings] == list(range(1, n + 1))
    assert all(r["log_index"] is not None and "simulated" in r["flags"] for r in readings)
    assert sum(1 for r in readings if "power_up" in r["flags"]) == 3  # one boot reading per start
    # the receipt the agent kept names a logged entry of the real log
    assert info["last_receipt"]["log_index"] == max(r["log_index"] for r in readings)
    assert not query(api, "SELECT reason FROM quarantine WHERE device_id = $1", device_id)
    print(f"\nagent: {n} readings, 2 kills, RSS {max(rss) / 1024:.1f} MiB")


# --- 1b: the fleet simulator against the real gateway ---------------------------------------------------


def test_the_fleet_simulator_through_the_real_gateway(
    api: Api, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    state = tmp_path / "sim"
    started = time.monotonic()
    result = agent_cli(
        "simulate", "--devices", "6", "--kind", "mixed", "--interval", "300", "--speed", "86400",
        "--duration", "2", "--gateway", api.gw.url, "--token", INSTALLER, "--mqtt", mosquitto.url,
        "--state", state, "--drain", "40", "--progress", "1",
        timeout=120,
    )  # fmt: skip
    wall = time.monotonic() - started
    assert result.code == 0, result.err
    done = re.search(r"made (\d+), published (\d+), receipted (\d+), waiting in the outbox (\d+)", result.out)
    assert done is not None, result.out
    made, published, receipted, waiting = map(int, done.groups())
    assert (receipted, waiting) == (made, 0), result.out
    assert published >= made
    assert made >= 6 * 2 * 86_400 // 300

    fleet = {
        row[0]: row[1:]
        for row in _sqlite(state / "fleet.db", "SELECT device_id, asset_id, kind, rated_power_w FROM fleet")
    }
    assert len(fleet) == 6
    ids = list(fleet)
    # the gateway's log holds all of them: per device 1..n, every one logged
    rows = query(
        api,
        "SELECT device_id, count(*) AS n, max(seq) AS top, count(log_index) AS logged FROM readings "
        "WHERE device_id = ANY($1) GROUP BY device_id",
        ids,
    )
    assert sum(r["n"] for r in rows) == made
    assert all(r["n"] == r["top"] == r["logged"] for r in rows), rows
    assert len(rows) == 6
    assert not query(api, "SELECT reason FROM quarantine WHERE device_id = ANY($1)", ids)
    # each enrolled itself through the API, for its own asset and kind
    for device_id, (asset_id, kind, rated) in fleet.items():
        device = api.ok(api.get(f"/v1/devices/{device_id}", "installer-1"))
        assert (device["asset_id"], device["asset_kind"], device["rated_power_w"]) == (asset_id, kind, rated)
        assert (device["status"], device["last_logged_seq"]) == ("active", device["last_accepted_seq"])
    assert {k for _, k, _ in fleet.values()} == {"charger", "solar"}
    print(f"\nsimulator: {made} readings of 6 devices receipted through the real gateway in {wall:.1f} s "
          f"({made / wall:.0f} readings/s end to end, enrolment and process start included)")  # fmt: skip


def _sqlite(path: Path, sql: str) -> list[tuple[Any, ...]]:
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


# --- 2: enrolment is idempotent against the real gateway ------------------------------------------------


class AnswerEater:
    """An HTTP hop in front of the gateway that delivers each request and drops the answer to a
    POST: the gateway does its work, the client sees the connection close (a lost answer).  The
    answers to GETs (the log key, fetched before the enrolment) pass."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.answered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    @staticmethod
    def _message(sock: socket.socket, buffer: bytearray) -> bytes | None:
        """One HTTP message (head and Content-Length body) from ``sock``; None if it closed first."""
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                return None
            buffer += data
        head_end = buffer.index(b"\r\n\r\n") + 4
        length = 0
        for line in bytes(buffer[:head_end]).split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(buffer) < head_end + length:
            data = sock.recv(65536)
            if not data:
                return None
            buffer += data
        message = bytes(buffer[: head_end + length])
        del buffer[: head_end + length]
        return message

    def _handle(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.port)) as upstream:
            from_client, from_upstream = bytearray(), bytearray()
            while (request := self._message(client, from_client)) is not None:
                upstream.sendall(request)
                answer = self._message(upstream, from_upstream)
                if answer is None:
                    break
                if not request.startswith(b"POST "):
                    client.sendall(answer)
                    continue
                self.answered += 1  # the gateway answered: it did the work; the answer is lost
                break
            client.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_enrolment_is_idempotent_against_the_real_gateway(
    api: Api, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    config = init_device(tmp_path / "roof", api, mosquitto, "simulated-solar")
    conf = load_config(config, environ={})
    device_id = conf.device_id
    asset = f"solar-{uuid.uuid4().hex[:6]}"
    args = ["--asset", asset, "--kind", "solar", "--rated-power", "9800", "--lat", "52.52", "--lon", "13.405"]

    def enrol(gateway: str, *extra: str) -> Proc:
        return agent_cli(
            "enrol", "--config", config, "--gateway", gateway, "--token", INSTALLER, *args, *extra
        )

    def enrolment_entries() -> list[int]:
        return [
            r["idx"]
            for r in query(api, "SELECT idx FROM entries WHERE device_id = $1 AND kind = 1", device_id)
        ]

    # the gateway accepts the enrolment, but its answer never reaches the device
    eater = AnswerEater(api.gw.settings.api_port)
    try:
        lost = enrol(eater.url)
    finally:
        eater.close()
    assert eater.answered == 1
    assert lost.code == 3, lost.err
    assert "run the same enrol command again" in lost.err
    assert not (conf.state_dir / "enrolment.bin").exists()
    assert status(config)["enrolment_unconfirmed"] is True
    [index] = until(enrolment_entries, 10, "the enrolment to be logged")
    assert api.ok(api.get(f"/v1/devices/{device_id}", "installer-1"))["status"] == "active"

    # a new statement (a new time) is what the agent used to send: the gateway refuses it for good
    signer = load_signer(conf)
    stored = EnrolmentRequest.sign(
        EnrolmentStatement(device_id, signer.public_key, asset, AssetKind.SOLAR, 9800,
                           Location(52_520_000, 13_405_000), int(time.time() * 1000) + 1, api.log_key().name,
                           log_key_hash=log_key_hash(api.log_key())),
        signer,
    )  # fmt: skip
    r = api.post("/v1/devices", "installer-1",
                 json={"statement": b64(stored.statement_bytes), "proof_of_possession": b64(stored.proof)})  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (409, "already_enrolled")

    # running enrol again resends the stored bytes: 200, the same device, the same log entry
    again = enrol(api.gw.url)
    assert again.code == 0, again.err
    assert "resending the enrolment request stored in" in again.out
    assert f"enrolled: device {device_id} for asset {asset} at log index {index}" in again.out
    statement = decode_enrolment_statement((conf.state_dir / "enrolment.bin").read_bytes())
    logged = decode_entry(api.http.get(f"/v1/log/entries/{index}").content)
    assert isinstance(logged, EnrolmentEntry)
    assert logged.statement_bytes == statement.encode()
    assert load_config(config, environ={}).gateway.log_key == api.log_key().to_string()

    # and once more, deleting nothing: success, the same device, still one log entry
    once_more = enrol(api.gw.url)
    assert once_more.code == 0, once_more.err
    assert f"already enrolled: device {device_id} for asset {asset} at log index {index}" in once_more.out
    assert enrolment_entries() == [index]
    devices = [d for page in api.walk("/v1/devices", "installer-1", asset=asset) for d in page]
    assert [
        (d["device_id"], d["asset_kind"], d["location"]["lat"], d["location"]["lon"]) for d in devices
    ] == [(device_id, "solar", "52.52", "13.405")]

    # other details are refused with a clear message, nothing is sent
    other = agent_cli("enrol", "--config", config, "--gateway", api.gw.url, "--token", INSTALLER,
                      "--asset", asset, "--kind", "solar", "--rated-power", "9900")  # fmt: skip
    assert other.code == 5
    assert f"already enrolled for asset {asset}" in other.err
    assert enrolment_entries() == [index]


# --- 3: (v2) receipts prove: a receipt signed by the log key whose proof fails deletes nothing ----------


class Client:
    """A plain MQTT client on ``broker`` that counts the readings it sees and publishes receipts."""

    def __init__(self, broker: MosquittoProcess) -> None:
        self.readings = 0
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda *_: setattr(self, "readings", self.readings + 1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("attest/v1/+/readings", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def publish(self, topic: str, data: bytes) -> None:
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def stop_agent(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, log.read_text()[-3000:]


def test_the_agent_deletes_readings_only_on_a_receipt_that_proves_them(
    api: Api, mosquitto: MosquittoProcess, tmp_path: Path
) -> None:
    config = init_device(tmp_path / "pi", api, mosquitto, "simulated-charger")
    enrolled = enrol_charger(config, api.gw.url, f"charger-{uuid.uuid4().hex[:6]}")
    assert enrolled.code == 0, enrolled.err
    conf = load_config(config, environ={})
    device_id = conf.device_id
    log_signer = api.gw.gateway.signer.signer  # the gateway's own log key: receipts it could have signed
    update_config(config, "meter", {"interval_s": 0.2})
    log = tmp_path / "agent.log"

    # the happy path: the real gateway's receipts prove the readings, the outbox drains
    proc = start_agent(config, log)
    try:
        until(lambda: (r := status(config)["last_receipt"]) and r["seq"] >= 5, 30, "a proven receipt", proc)
    finally:
        stop_agent(proc, log)
    proven = status(config)["last_receipt"]
    assert proven["proven"] is True
    [row] = query(api, "SELECT root_hash FROM checkpoints WHERE size = $1 LIMIT 1", proven["tree_size"])
    assert proven["root_hash"] == bytes(row["root_hash"]).hex()  # the root of a checkpoint the log signed
    [row] = query(
        api, "SELECT log_index FROM readings WHERE device_id = $1 AND seq = $2", device_id, proven["seq"]
    )
    assert row["log_index"] == proven["log_index"]
    assert all(seq > proven["seq"] for seq in outbox(conf.db_path, device_id))
    shown = agent_cli("status", "--config", config)
    assert (
        f"last receipt  proven: seq {proven['seq']} at log index {proven['log_index']} of tree size "
        in shown.out
    )
    assert "REFUSED" not in shown.out

    # the agent on a broker the gateway does not read: its readings wait, and receipts signed by the
    # log key but whose proofs fail arrive there
    other = MosquittoProcess(tmp_path / "other-broker").start()
    client = Client(other)
    try:
        update_config(config, "mqtt", {"url": other.url})
        proc = start_agent(config, log)
        try:
            # a reading published there means the agent's subscription to its receipts came first
            until(lambda: client.readings > 0, 30, "the agent on the other broker", proc)
            waiting = until(
                lambda: len(o := outbox(conf.db_path, device_id)) >= 3 and o,
                30,
                "readings in the outbox",
                proc,
            )
            seq = max(waiting)  # made on this broker: the gateway never saw it
            entry = reading_entry_bytes(waiting[seq])
            size = proven["tree_size"]
            # 1. the log's newest checkpoint, which does not hold this reading: the inclusion proof (a
            #    real one, of the entry that is at that index) leads to another leaf; the tree is fine
            head = open_checkpoint(api.checkpoint(), api.log_key()).checkpoint
            real = [base64.b64decode(h) for h in api.http.get(
                "/v1/log/proof/inclusion", params={"index": head.size - 1, "size": head.size}).json()["hashes"]]  # fmt: skip
            extends = [base64.b64decode(h) for h in api.http.get(
                "/v1/log/proof/consistency", params={"from": size, "to": head.size}).json()["hashes"]]  # fmt: skip
            assert head.size >= size
            not_included = Receipt(device_id, seq, head.size - 1, head.size, head.root_hash, T0,
                                   tuple(real), size, tuple(extends))  # fmt: skip
            # 2. a tree that holds the reading (its inclusion proof is right) but rewrites the history
            #    the agent proved: it does not extend the last proven tree
            forked = [leaf_hash(f"rewritten entry {i}".encode()) for i in range(size)] + [leaf_hash(entry)]
            fork = Receipt(device_id, seq, size, size + 1, root_from_leaf_hashes(forked), T0,
                           tuple(inclusion_proof(size, size + 1, forked)), size,
                           tuple(consistency_proof(size, size + 1, forked)))  # fmt: skip
            check_inclusion(fork, entry)  # (the reading really is in the forked tree)
            before = set(waiting)
            client.publish(receipts_topic(device_id), not_included.sign(log_signer))
            client.publish(receipts_topic(device_id), fork.sign(log_signer))
            info = until(
                lambda: (s := status(config))["refused_receipts"] == 2 and s, 30, "the refusals", proc
            )
            # nothing was deleted: every reading that waited still waits
            assert before <= set(outbox(conf.db_path, device_id))
            assert info["last_receipt"]["seq"] == proven["seq"]  # the last PROVEN receipt did not move
            assert info["last_refused_receipt"]["code"] == "receipt_not_an_extension"
            shown = agent_cli("status", "--config", config).out
            assert (
                "REFUSED       2 receipt(s) signed by the log key whose proof FAILED (readings kept)" in shown
            )
        finally:
            stop_agent(proc, log)
    finally:
        client.close()
        other.stop()
    text = log.read_text()
    assert "REFUSED a receipt signed by the log key whose proof FAILED (receipt_inclusion_failed)" in text
    assert "REFUSED a receipt signed by the log key whose proof FAILED (receipt_not_an_extension)" in text

    # back on the gateway's broker: the readings reach the log and real receipts prove them all
    update_config(config, "mqtt", {"url": mosquitto.url})
    update_config(config, "meter", {"interval_s": 86_400})
    proc = start_agent(config, log)
    try:
        info = until(
            lambda: (s := status(config))["outbox_depth"] == 0 and s["last_receipt"]["seq"] == s["last_seq"] and s,
            30, "the outbox to drain", proc,
        )  # fmt: skip
    finally:
        stop_agent(proc, log)
    assert info["last_receipt"]["tree_size"] > proven["tree_size"]
    assert info["refused_receipts"] == 2  # kept as evidence
    # what the agent fetches when a receipt's proof starts elsewhere (a restarted gateway) comes from
    # the real API and proves the newest tree an extension of the first one proven
    fetch = consistency_fetcher(api.gw.url)
    assert fetch is not None
    last = info["last_receipt"]
    check_extension(
        Receipt(
            device_id, last["seq"], last["log_index"], last["tree_size"], bytes.fromhex(last["root_hash"]), T0
        ),
        ProvenTree(proven["tree_size"], bytes.fromhex(proven["root_hash"])),
        fetch(proven["tree_size"], last["tree_size"]),
    )
    check_gateway_chain(api, decode_enrolment_statement(conf.enrolment_path.read_bytes()), info["last_seq"])
