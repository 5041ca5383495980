"""The quarantine keeps evidence whole and forever, and bounds garbage (gateway.quarantine), on real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from attest_core.chain import ChainState
from gateway.config import Settings, load_settings
from gateway.errors import ConfigError
from gateway.ingest import DeviceCache, Message, store_batch
from gateway.migrations import available, migrate
from gateway.quarantine import EVIDENCE_REASONS, is_evidence, prune
from gateway.sequencer import Sequencer
from tests.gateway.apiworld import Api, api_gateway
from tests.gateway.helpers import enrol_device, log_signer, settings_for
from tests.services import Broker, Postgres
from tests.support import T0, TestDevice, seeded_signer

KEEP = 32
"""quarantine_garbage_bytes in these tests: less than any reading, so evidence cut short would show."""


def db_test(fn: Callable[[asyncpg.Connection, Settings], Awaitable[None]]) -> Callable[[str, Path], None]:
    """Run an async test body on the test's own migrated database, with settings keeping KEEP bytes of garbage."""

    def wrapper(database: str, tmp_path: Path) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(database)
            try:
                await migrate(conn)
                await fn(conn, settings_for(database, tmp_path, quarantine_garbage_bytes=KEEP))
            finally:
                await conn.close()

        asyncio.run(go())

    wrapper.__name__ = fn.__name__
    return wrapper


def topic(device_id: str) -> str:
    return f"attest/v1/{device_id}/readings"


async def rows(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    """Quarantine rows by reason (one each in these tests)."""
    found = await conn.fetch("SELECT * FROM quarantine ORDER BY id")
    by_reason = {r["reason"]: r for r in found}
    assert len(by_reason) == len(found)
    return by_reason


def forged(reading: bytes) -> bytes:
    """The reading with its signature (the last 64 bytes) altered: same key id, bad signature."""
    return reading[:-1] + bytes([reading[-1] ^ 1])


def test_the_classification() -> None:
    for reason in (
        "equivocation",
        "chain_break",
        "bad_signature",
        "revoked_device",
        "out_of_order",
        "future_time",
        "unknown_key_id",
    ):
        assert is_evidence(reason), reason
    for reason in (
        "too_large",
        "bad_topic",
        "unknown_device",
        "topic_mismatch",
        "truncated",
        "malformed",
        "new",
    ):
        assert not is_evidence(reason), reason


def test_the_settings() -> None:
    env = {
        "DATABASE_URL": "postgresql://x/y",
        "GATEWAY_QUARANTINE_GARBAGE_BYTES": "0",
        "GATEWAY_QUARANTINE_RETENTION_DAYS": "0.5",
        "GATEWAY_QUARANTINE_MAX_GARBAGE_ROWS": "10",
    }
    s = load_settings(env=env)
    assert (s.quarantine_garbage_bytes, s.quarantine_retention_days, s.quarantine_max_garbage_rows) == (
        0,
        0.5,
        10,
    )
    d = load_settings(env={"DATABASE_URL": "postgresql://x/y"})
    assert (d.quarantine_garbage_bytes, d.quarantine_retention_days, d.quarantine_max_garbage_rows) == (
        2048,
        30.0,
        100_000,
    )
    assert d.quarantine_prune_interval == 60.0
    for name, bad in (
        ("QUARANTINE_GARBAGE_BYTES", "-1"),
        ("QUARANTINE_RETENTION_DAYS", "0"),
        ("QUARANTINE_MAX_GARBAGE_ROWS", "-5"),
        ("QUARANTINE_PRUNE_INTERVAL", "0"),
    ):
        with pytest.raises(ConfigError, match=name.lower()):
            load_settings(env={**env, f"GATEWAY_{name}": bad})


@db_test
async def test_garbage_keeps_a_prefix_with_its_length_and_hash(conn: asyncpg.Connection, s: Settings) -> None:
    big = bytes(range(256)) * 20  # 5120 bytes: too large for a reading
    long_topic = "attest/v1/" + "q" * 5000
    messages = [
        Message(topic("dev-1"), big),
        Message(long_topic, b"z" * 100),
        Message(topic("ghost"), TestDevice("ghost", "a").reading(T0, 1).encode()),
        Message(topic("dev-2"), b"\x01" * 100),
    ]
    result = await store_batch(conn, messages, DeviceCache(ttl=0), s)
    assert result.refused == {"too_large": 1, "bad_topic": 1, "unknown_device": 1, "truncated": 1}
    found = await rows(conn)
    for message, reason in zip(
        messages, ("too_large", "bad_topic", "unknown_device", "truncated"), strict=True
    ):
        row = found[reason]
        assert bytes(row["payload"]) == message.payload[:KEEP]
        assert row["payload_length"] == len(message.payload)
        assert bytes(row["payload_sha256"]) == hashlib.sha256(message.payload).digest()
        assert row["garbage"] is True
    assert len(found["bad_topic"]["topic"]) < 1100
    assert len(found["bad_topic"]["detail"]) < 1100
    assert found["bad_topic"]["topic"].startswith(long_topic[:1000])

    # the same garbage again is counted on its row; other garbage with the same first bytes is a row of its own
    other = big[:-1] + b"\x00"
    await store_batch(conn, [Message(topic("dev-1"), big), Message(topic("dev-1"), other)], DeviceCache(), s)
    counts = [
        (r["count"], r["payload_length"], bytes(r["payload_sha256"]))
        for r in await conn.fetch("SELECT * FROM quarantine WHERE reason = 'too_large' ORDER BY id")
    ]
    assert counts == [(2, 5120, hashlib.sha256(big).digest()), (1, 5120, hashlib.sha256(other).digest())]


@db_test
async def test_evidence_is_kept_whole(conn: asyncpg.Connection, s: Settings) -> None:
    d, revoked = TestDevice("dev-1", "asset-1"), TestDevice("dev-r", "asset-r")
    for device in (d, revoked):
        await enrol_device(conn, device)
    await conn.execute("UPDATE devices SET revoked_at = now(), last_valid_seq = 0 WHERE device_id = 'dev-r'")
    genesis = d.state
    r1 = d.reading(T0, 1).encode()
    d.state = genesis
    twin = d.reading(T0, 2).encode()  # seq 1 again, different bytes
    r2 = d.reading(T0 + 1000, 3).encode()
    stranger = TestDevice("dev-1", "asset-1")
    stranger.signer = seeded_signer("someone else")
    messages = [
        Message(topic("dev-1"), r1),
        Message(topic("dev-1"), twin),
        Message(topic("dev-1"), forged(r2)),
        Message(topic("dev-1"), stranger.reading(T0, 7).encode()),
        Message(topic("dev-1"), d.reading(int(time.time() * 1000) + 3_600_000, 4).encode()),
        Message(topic("dev-r"), revoked.reading(T0, 1).encode()),
    ]
    result = await store_batch(conn, messages, DeviceCache(ttl=0), s)
    assert result.accepted == 1
    assert result.refused == {
        "equivocation": 1,
        "bad_signature": 1,
        "unknown_key_id": 1,
        "future_time": 1,
        "revoked_device": 1,
    }
    # a reading that does not link to its chain: refused by the sequencer
    c = TestDevice("dev-c", "asset-c")
    await enrol_device(conn, c)
    c1 = c.reading(T0, 1).encode()
    c.state = ChainState(2, b"\x13" * 32)
    broken = c.reading(T0 + 1000, 2).encode()
    assert (
        await store_batch(
            conn, [Message(topic("dev-c"), c1), Message(topic("dev-c"), broken)], DeviceCache(), s
        )
    ).accepted == 2
    sequencer = Sequencer(s, log_signer(), lambda t, p: None)
    await sequencer.load(conn)
    while True:
        step = await sequencer.step(conn)
        if not (step.entries or step.readings or step.quarantined):
            break
    found = await rows(conn)
    expected = {
        "equivocation": twin,
        "bad_signature": forged(r2),
        "unknown_key_id": messages[3].payload,
        "future_time": messages[4].payload,
        "revoked_device": messages[5].payload,
        "chain_break": broken,
    }
    assert set(found) == set(expected)
    for reason, payload in expected.items():
        row = found[reason]
        assert len(payload) > KEEP
        assert bytes(row["payload"]) == payload, reason
        assert (row["payload_length"], bytes(row["payload_sha256"])) == (
            len(payload),
            hashlib.sha256(payload).digest(),
        )
        assert row["garbage"] is False


async def add(conn: asyncpg.Connection, reason: str, days_ago: float, garbage: bool | None = None) -> int:
    """A quarantine row last seen ``days_ago`` days ago; garbage defaults to the classification."""
    payload = uuid.uuid4().bytes
    row_id: int = await conn.fetchval(
        "INSERT INTO quarantine (fingerprint, topic, payload, reason, detail, payload_length, payload_sha256, "
        "garbage, first_seen, last_seen) "
        "VALUES ($1, 't', $2, $3, 'd', 16, $1, $4, now() - make_interval(secs => $5), now() - make_interval(secs => $5)) "
        "RETURNING id",
        hashlib.sha256(payload).digest(),
        payload,
        reason,
        (not is_evidence(reason)) if garbage is None else garbage,
        days_ago * 86_400.0,
    )
    return row_id


async def ids(conn: asyncpg.Connection) -> set[int]:
    return {r["id"] for r in await conn.fetch("SELECT id FROM quarantine")}


@db_test
async def test_prune_removes_old_and_excess_garbage_never_evidence(
    conn: asyncpg.Connection, s: Settings
) -> None:
    evidence = {await add(conn, reason, 3650) for reason in sorted(EVIDENCE_REASONS)}
    for days in (31, 40, 400):
        await add(conn, "unknown_device", days)
    recent = [await add(conn, "bad_topic", days) for days in (29, 20, 10, 5, 1, 0)]  # oldest first
    settings = s.model_copy(update={"quarantine_retention_days": 30.0, "quarantine_max_garbage_rows": 4})
    assert await prune(conn, settings) == 3 + 2
    assert await ids(conn) == evidence | set(recent[2:])
    assert await prune(conn, settings) == 0  # nothing left to do
    # a cap of 0 keeps no garbage, and still every piece of evidence
    assert await prune(conn, settings.model_copy(update={"quarantine_max_garbage_rows": 0})) == 4
    assert await ids(conn) == evidence


def test_rows_from_before_the_bounds_are_classified_by_the_prune(database: str, tmp_path: Path) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(database)
        try:
            ours = next(v for v, name, _ in available() if name.endswith("_quarantine_bounds.sql"))
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for version, name, sql in available():
                if version < ours:
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)
            big = b"g" * 5000
            for reason, payload in (("too_large", big), ("equivocation", b"e" * 300)):
                await conn.execute(
                    "INSERT INTO quarantine (fingerprint, topic, payload, reason, detail) VALUES ($1, 't', $2, $3, 'd')",
                    reason.encode(),
                    payload,
                    reason,
                )
            assert any(name.endswith("_quarantine_bounds.sql") for name in await migrate(conn))
            settings = settings_for(database, tmp_path, quarantine_garbage_bytes=KEEP)
            assert await prune(conn, settings) == 0
            found = await rows(conn)
            assert (bytes(found["too_large"]["payload"]), found["too_large"]["garbage"]) == (big[:KEEP], True)
            assert found["too_large"]["payload_length"] == 5000
            assert bytes(found["too_large"]["payload_sha256"]) == hashlib.sha256(big).digest()
            assert (bytes(found["equivocation"]["payload"]), found["equivocation"]["garbage"]) == (
                b"e" * 300,
                False,
            )
        finally:
            await conn.close()

    asyncio.run(go())


# --- a running gateway: the periodic prune, its metrics and the API --------------------------------------------


@pytest.fixture(scope="module")
def bounded(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(
        postgres,
        broker,
        tmp_path_factory.mktemp("bounded"),
        quarantine_garbage_bytes=KEEP,
        quarantine_max_garbage_rows=2,
        quarantine_prune_interval=0.2,
    ) as api:
        yield api


def metric(api: Api, name: str) -> float:
    for line in api.http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no metric {name}")


def test_the_gateway_prunes_and_counts(bounded: Api) -> None:
    api = bounded
    d = TestDevice(f"dev-{uuid.uuid4().hex[:6]}", "asset-p")
    api.enrol(d)
    evidence = forged(d.reading(T0, 1).encode())
    junk = [(TestDevice(f"ghost-{i}", "x"), b"\x01" + bytes([0x80 + i]) * 99) for i in range(5)]
    result = api.ingest([(d, evidence), *junk])
    assert result.refused == {"bad_signature": 1, "truncated": 5}
    deadline = time.monotonic() + 20
    while (
        metric(api, "iot_attest_quarantine_pruned_total") < 3
        or metric(api, "iot_attest_quarantine_garbage_rows") != 2
    ):
        assert time.monotonic() < deadline, "the gateway did not prune its quarantine"
        time.sleep(0.1)
    items: list[dict[str, Any]] = api.ok(api.get("/v1/quarantine"))["items"]
    kept = {x["reason"]: x for x in items if x["reason"] == "bad_signature"}
    assert base64.b64decode(kept["bad_signature"]["payload"]) == evidence
    assert kept["bad_signature"]["payload_truncated"] is False
    assert kept["bad_signature"]["evidence"] is True
    garbage = [x for x in items if x["reason"] == "truncated"]
    assert [x["device"] for x in garbage] == ["ghost-4", "ghost-3"]  # the newest two
    for x in garbage:
        raw = b"\x01" + bytes([0x80 + int(x["device"][-1])]) * 99
        assert base64.b64decode(x["payload"]) == raw[:KEEP]
        assert (x["payload_length"], x["payload_truncated"], x["evidence"]) == (100, True, False)
        assert base64.b64decode(x["payload_sha256"]) == hashlib.sha256(raw).digest()
