"""(v2) What the device does with each receipt: proven ones delete, anything it cannot prove deletes
nothing, proofs it needs are fetched from the gateway's API (the fake gateway's real HTTP server and
real Merkle log: tests/edge_agent/fakes.py), and kept receipts expire.  Most tests drive the device
directly on a real state database; the last runs the agent on a real broker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from attest_core.reading import decode_envelope
from attest_core.receipt import Receipt
from attest_core.topics import READINGS_FILTER, receipts_topic
from edge_agent.config import load_config, update_config
from edge_agent.consistency import consistency_fetcher
from edge_agent.device import DeviceRuntime
from edge_agent.errors import AgentError
from edge_agent.meters.base import MeterSample
from edge_agent.store import Store
from tests.edge_agent.chaincheck import outbox
from tests.edge_agent.fakes import FakeGateway
from tests.edge_agent.test_mqtt import Subscriber, prepare, running, until
from tests.services import Broker, free_port
from tests.support import T0, seeded_signer

DEVICE = "dev-receipts"
DAY_MS = 86_400_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "agent.db")
    yield s
    s.close()


def device_with_readings(store: Store, gateway: FakeGateway, n: int, **kwargs: object) -> DeviceRuntime:
    device = DeviceRuntime(
        device_id=DEVICE, asset_id="asset-1", anchor=b"\x0a" * 32, signer=seeded_signer("device"),
        store=store, log_public_key=gateway.log_signer.public_key, quiet=True, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    for i in range(n):
        reading = device.build(T0 + 60_000 * i, MeterSample(1000 * i))
        store.append([reading])
        device.committed_ok([reading])
    return device


def waiting(store: Store) -> list[int]:
    return [seq for seq, _ in store.pending(DEVICE, 0, 1000)]


def log_up_to(gateway: FakeGateway, store: Store, seq: int) -> None:
    """The fake log appends the device's readings up to ``seq`` (as the device stored them)."""
    envelopes = dict(store.pending(DEVICE, 0, 1000))
    gateway.log.log_readings(DEVICE, envelopes, seq)


def test_proofs_the_receipt_cannot_carry_are_fetched_and_nothing_is_deleted_without_one(
    store: Store, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    fetches: list[tuple[int, int]] = []
    fetch = consistency_fetcher(gateway.url)
    assert fetch is not None

    def counting(a: int, b: int) -> list[bytes]:
        fetches.append((a, b))
        return fetch(a, b)

    device = device_with_readings(store, gateway, 12, fetch_consistency=counting)
    log = gateway.log
    log.append(b"an entry of another device")
    log_up_to(gateway, store, 3)
    device.on_receipt(log.signed(DEVICE, 3))  # the first receipt: its tree is proven by inclusion
    assert waiting(store)[0] == 4
    assert fetches == []
    proven = log.sent[DEVICE]

    # the device misses a receipt; the next one's consistency proof starts at the missed one's tree
    log_up_to(gateway, store, 5)
    lost = log.receipt(DEVICE, 5)  # lost on the way
    log.append(b"another entry")
    log_up_to(gateway, store, 7)
    missed = log.receipt(DEVICE, 7)
    assert missed.from_size == lost.tree_size != proven
    device.on_receipt(missed.sign(log.signer))
    assert fetches == [(proven, missed.tree_size)]  # from the device's own last proven tree, over HTTP
    assert waiting(store)[0] == 8

    # a restarted gateway (from_size 0) whose API cannot be reached: nothing is deleted ...
    device.fetch_consistency = consistency_fetcher(f"http://127.0.0.1:{free_port()}")
    log_up_to(gateway, store, 9)
    with caplog.at_level(logging.WARNING, logger="edge_agent"):
        device.on_receipt(log.signed(DEVICE, 9, from_size=0))
    assert "cannot be proven yet: could not fetch the consistency proof" in caplog.text
    assert device.unproven_receipts == 1
    assert waiting(store)[0] == 8
    # ... and the next receipt that can be proven deletes them all: nothing is owed for ever
    log_up_to(gateway, store, 10)
    device.on_receipt(log.signed(DEVICE, 10, from_size=missed.tree_size))
    assert waiting(store)[0] == 11

    # a v1 receipt (an assertion, signed by the log key) deletes nothing
    device.on_receipt(Receipt(DEVICE, 11, 20, 21, b"\x01" * 32, T0, version=1).sign(log.signer))
    assert waiting(store)[0] == 11
    assert device.refused_receipts == 1
    assert [r.code for r in store.refused_receipts(DEVICE)] == ["receipt_unproven"]
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [3, 7, 10]
    last = store.last_receipt(DEVICE)
    assert last is not None
    assert (last.seq, last.tree_size, last.root_hash) == (10, log.sent[DEVICE], log.root(log.sent[DEVICE]))


def test_a_receipt_for_a_reading_already_proven_changes_nothing(store: Store, gateway: FakeGateway) -> None:
    device = device_with_readings(store, gateway, 5)
    log_up_to(gateway, store, 4)
    device.on_receipt(gateway.log.signed(DEVICE, 4))
    before = store.proven_receipts(DEVICE)
    device.on_receipt(gateway.log.signed(DEVICE, 2, size=3, from_size=0))  # an old one, delivered late
    assert store.proven_receipts(DEVICE) == before
    assert waiting(store) == [5]
    assert device.refused_receipts == 0


def test_kept_receipts_expire_but_the_newest_proven_one_stays(store: Store, gateway: FakeGateway) -> None:
    device = device_with_readings(store, gateway, 8, keep_receipts_ms=10 * DAY_MS)
    log = gateway.log
    for seq in (2, 4):
        log_up_to(gateway, store, seq)
        device.on_receipt(log.signed(DEVICE, seq))
    device.on_receipt(Receipt(DEVICE, 6, 20, 21, b"\x01" * 32, T0, version=1).sign(log.signer))  # refused
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [2, 4]
    assert len(store.refused_receipts(DEVICE)) == 1
    received = store.proven_receipts(DEVICE)[-1].received_ms

    store.prune_receipts(received + 9 * DAY_MS, 10 * DAY_MS)  # within the time kept: all stay
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [2, 4]
    assert len(store.refused_receipts(DEVICE)) == 1
    store.prune_receipts(received + 11 * DAY_MS, 10 * DAY_MS)
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [4]  # the next check starts from it
    assert store.refused_receipts(DEVICE) == []
    store.prune_receipts(received + 1000 * DAY_MS, 10 * DAY_MS)
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [4]
    # a device that proves a receipt drops what has expired at the same time
    store.db.execute("UPDATE proven_receipts SET received_ms = received_ms - 2 * ?", (DAY_MS,))  # backdated
    device.keep_receipts_ms = DAY_MS
    log_up_to(gateway, store, 6)
    device.on_receipt(log.signed(DEVICE, 6))
    assert [r.seq for r in store.proven_receipts(DEVICE)] == [6]


def test_the_retention_setting(enrolled: Path) -> None:
    config = load_config(enrolled, environ={})
    assert config.receipts.keep_days == 90  # the default, written by init
    assert "[receipts]\nkeep_days = 90" in enrolled.read_text()
    update_config(enrolled, "receipts", {"keep_days": 0.5})
    assert load_config(enrolled, environ={}).receipts.keep_ms == 43_200_000
    update_config(enrolled, "receipts", {"keep_days": 0})
    with pytest.raises(AgentError, match=r"receipts\.keep_days must be positive"):
        load_config(enrolled, environ={})


def test_a_receipt_beyond_the_last_reading_made_halts_the_device_and_deletes_nothing(
    store: Store, gateway: FakeGateway
) -> None:
    device = device_with_readings(store, gateway, 3)
    beyond = Receipt(DEVICE, 9, 0, 1, b"\x01" * 32, T0)
    device.on_receipt(beyond.sign(gateway.log_signer))
    assert "this device has only made 3" in device.halted
    assert waiting(store) == [1, 2, 3]


def test_the_running_agent_fetches_a_missing_proof_off_its_event_loop(
    enrolled: Path, gateway: FakeGateway, broker: Broker
) -> None:
    """The agent's MQTT link hands receipts over on the event loop: the proof is fetched in a thread
    and the receipt handled again on the loop once it is there."""
    config = prepare(enrolled, broker.host, broker.port)
    device = config.device_id
    sub = Subscriber(broker.host, broker.port, [READINGS_FILTER])
    log = gateway.log

    def envelopes() -> dict[int, bytes]:
        return {decode_envelope(raw).reading().seq: raw for raw, _ in sub.payloads(f"{device}/readings")}

    def first_waiting() -> int:
        return min(outbox(config.db_path, device), default=0)

    proven: list[int] = []

    async def scenario() -> None:
        async with running(config):
            await until(lambda: len(envelopes()) >= 8, 15, "8 readings")
            log.log_readings(device, envelopes(), 3)
            sub.publish(receipts_topic(device), log.signed(device, 3))
            await until(lambda: first_waiting() == 4, 5, "the first receipt")
            proven.append(log.sent[device])
            log.append(b"an entry of another device")
            log.log_readings(device, envelopes(), 6)
            sub.publish(receipts_topic(device), log.signed(device, 6, from_size=0))  # a restarted gateway
            await until(lambda: first_waiting() == 7, 5, "the receipt, proven with a fetched proof")

    try:
        asyncio.run(scenario())
    finally:
        sub.close()
    fetched = f"/v1/log/proof/consistency?from={proven[0]}&to={log.sent[device]}"
    assert [path for _, path, _ in gateway.requests if "/proof/" in path] == [fetched]
