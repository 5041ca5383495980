"""No double counting at the gateway: a claim overlapping a live claim is refused, also when
several connections (gateway processes) file at once; supersession and withdrawal; the claim
entries' links are the ones attest_core.claimchain.LiveClaims expects (the SQL is the rule's
second form); the log's entries read in ranges."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.claimchain import LiveClaims, LoggedClaim, LoggedWithdrawal
from attest_core.entries import ClaimEntry, WithdrawalEntry, decode_entry, encode_entry
from attest_core.merkle import leaf_hash
from gateway import claims
from gateway.errors import Refused
from gateway.migrations import migrate
from tests.gateway.apiworld import Api, api_gateway
from tests.services import Broker, Postgres
from tests.support import DAY, T0, TestDevice, flat_claim

DAYS = ["2026-10-01T00:00:00Z", "2026-10-02T00:00:00Z", "2026-10-03T00:00:00Z", "2026-10-04T00:00:00Z"]


def body(assets: list[str], start: int = 0, end: int = 1, title: str = "claim") -> dict[str, Any]:
    return {
        "title": title,
        "assets": assets,
        "period_start": DAYS[start],
        "period_end": DAYS[end],
        "tariff": {"currency": "EUR", "price_per_kwh": "0.30"},
        "claimed_energy_kwh": "0",
        "claimed_amount": "0",
    }


@pytest.fixture(scope="module")
def api(postgres: Postgres, broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api_gateway(postgres, broker, tmp_path_factory.mktemp("double")) as api:
        for n in range(1, 4):
            api.enrol(TestDevice(f"dc-dev-{n}", f"dc-{n}"))
        yield api


def post(api: Api, path: str, who: str, payload: dict[str, Any], status: int) -> dict[str, Any]:
    answer: dict[str, Any] = api.ok(api.post(path, who, json=payload), status)
    return answer


def error(api: Api, path: str, who: str, payload: dict[str, Any], status: int) -> dict[str, str]:
    r = api.post(path, who, json=payload)
    assert r.status_code == status, r.text
    return r.json()["error"]  # type: ignore[no-any-return]


def test_the_same_energy_backs_one_live_claim(api: Api) -> None:
    first = post(api, "/v1/claims", "issuer-1", body(["dc-1", "dc-2"], 0, 2), 201)
    assert first["void"] is None
    # another issuer, one asset in common, one day in common: refused, naming the earlier claim
    refused = error(api, "/v1/claims", "issuer-2", body(["dc-2", "dc-3"], 1, 3), 409)
    assert refused["code"] == "already_claimed"
    assert f"by claim {first['id']} (issuer-1" in refused["message"]
    assert "dc-2" in refused["message"]
    # the same issuer cannot claim it again either
    assert error(api, "/v1/claims", "issuer-1", body(["dc-1"], 0, 1), 409)["code"] == "already_claimed"
    # the day after, or another asset, is free
    post(api, "/v1/claims", "issuer-2", body(["dc-2", "dc-3"], 2, 3), 201)
    post(api, "/v1/claims", "issuer-2", body(["dc-3"], 0, 2), 201)


def test_an_issuer_supersedes_or_withdraws_its_own_claims_only(api: Api) -> None:
    first = post(api, "/v1/claims", "issuer-1", body(["dc-1"], 2, 3, "first"), 201)
    path = f"/v1/claims/{first['id']}"
    assert error(api, path + "/supersede", "issuer-2", body(["dc-1"], 2, 3), 403)["code"] == "not_your_claim"
    assert error(api, path + "/withdraw", "issuer-2", {"reason": "mine now"}, 403)["code"] == "not_your_claim"
    fixed = post(api, path + "/supersede", "issuer-1", body(["dc-1"], 2, 3, "fixed"), 201)
    assert api.ok(api.get(path))["void"] == f"superseded by claim {fixed['id']}"
    entry = decode_entry(base64.b64decode(fixed["entry"]))
    assert isinstance(entry, ClaimEntry)
    assert entry.supersedes == leaf_hash(base64.b64decode(first["entry"]))
    assert error(api, path + "/supersede", "issuer-1", body(["dc-1"], 2, 3), 409)["code"] == "claim_void"
    # a withdrawal frees the period for anyone
    withdrawn = post(api, f"/v1/claims/{fixed['id']}/withdraw", "issuer-1", {"reason": "sold"}, 200)
    assert withdrawn["void"] == "withdrawn"
    assert (
        error(api, f"/v1/claims/{fixed['id']}/withdraw", "issuer-1", {"reason": "x"}, 409)["code"]
        == "claim_void"
    )
    post(api, "/v1/claims", "issuer-2", body(["dc-1"], 2, 3, "new owner"), 201)
    assert (
        error(api, "/v1/claims/424242/withdraw", "issuer-1", {"reason": "x"}, 404)["code"] == "unknown_claim"
    )


def test_log_entries_are_read_in_ranges(api: Api) -> None:
    size = api.wait_logged()
    doc = api.ok(api.get("/v1/log/entries", None, params={"start": 0, "end": size}))
    assert [e["index"] for e in doc["entries"]] == list(range(size))
    for e in doc["entries"]:
        assert base64.b64decode(e["entry"]) == api.http.get(f"/v1/log/entries/{e['index']}").content
    beyond = api.ok(api.get("/v1/log/entries", None, params={"start": size - 1, "end": size + 5}))
    assert [e["index"] for e in beyond["entries"]] == [size - 1]
    for params in ({"start": 5, "end": 5}, {"start": 0, "end": 1001}):
        r = api.get("/v1/log/entries", None, params=params)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "bad_range")


@pytest.fixture(scope="module")
def dsn(postgres: Postgres) -> str:
    url = postgres.create_database()

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(go())
    return url


def test_connections_filing_at_once_get_one_claim_through(dsn: str) -> None:
    """Eight connections (as eight gateway processes would) file overlapping claims at once."""

    async def go() -> list[int | str]:
        conns = [await asyncpg.connect(dsn) for _ in range(8)]
        try:

            async def one(n: int, conn: asyncpg.Connection) -> int | str:
                claim = flat_claim(("race-a", f"race-{n}"), start=T0 + n * 1000, end=T0 + DAY)
                try:
                    return await claims.file_claim(conn, claim, "issuer-1")
                except Refused as exc:
                    return exc.code

            return list(await asyncio.gather(*(one(n, c) for n, c in enumerate(conns))))
        finally:
            for c in conns:
                await c.close()

    outcomes = asyncio.run(go())
    assert sorted(map(str, outcomes)).count("already_claimed") == 7
    assert len([o for o in outcomes if isinstance(o, int)]) == 1


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from("xyz"), min_size=1),
            st.integers(0, 5),
            st.integers(1, 3),
            st.sampled_from(["file", "supersede", "withdraw"]),
            st.sampled_from(["issuer-1", "issuer-2"]),
        ),
        min_size=1,
        max_size=10,
    ),
)
def test_the_gateways_decisions_are_the_rule_of_the_core(
    dsn: str, plan: list[tuple[set[str], int, int, str, str]]
) -> None:
    """Claims, supersessions and withdrawals filed in SQL: every refusal is one LiveClaims (the
    core's rule) would make, and replaying the queued entries through it raises no alert."""

    salt = uuid.uuid4().hex[:8]  # each example's own assets: the database outlives it

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            first_pending = await conn.fetchval("SELECT coalesce(max(id), 0) FROM pending_entries")
            mine: dict[str, list[int]] = {"issuer-1": [], "issuer-2": []}
            model = LiveClaims()
            index = 0
            for names, start, days, action, issuer in plan:
                assets = tuple(sorted(f"p{salt}-{a}" for a in names))
                claim = dataclasses.replace(
                    flat_claim(assets, start=T0 + start * DAY, end=T0 + (start + days) * DAY), issuer=issuer
                )
                target = mine[issuer][-1] if mine[issuer] and action != "file" else None
                if action == "withdraw" and target is not None:
                    await claims.withdraw_claim(conn, target, issuer, "plan")
                    withdrawn = await claims.get_claim(conn, target)
                    assert withdrawn is not None
                    w = WithdrawalEntry(issuer, leaf_hash(withdrawn.entry), "plan", T0)
                    assert model.add_withdrawal(LoggedWithdrawal(index, w)) == []
                    mine[issuer].remove(target)
                    index += 1
                    continue
                draft = ClaimEntry(claim, 0, None, (None,) * len(assets))
                if target is not None:
                    stored = await claims.get_claim(conn, target)
                    assert stored is not None
                    draft = dataclasses.replace(draft, supersedes=leaf_hash(stored.entry))
                expected_refusal = bool(model.overlapping(draft))
                if expected_refusal:
                    with pytest.raises(Refused) as refused:
                        await claims.file_claim(conn, claim, issuer, target)
                    assert refused.value.code == "already_claimed"
                    continue
                claim_id = await claims.file_claim(conn, claim, issuer, target)
                stored = await claims.get_claim(conn, claim_id)
                assert stored is not None
                assert (
                    model.add_claim(LoggedClaim(index, leaf_hash(stored.entry), decode_claim(stored.entry)))
                    == []
                )
                if target is not None:
                    mine[issuer].remove(target)
                mine[issuer].append(claim_id)
                index += 1
            # the entries as the sequencer will log them, replayed by a monitor: no alert
            monitor = LiveClaims()
            rows = await conn.fetch(
                "SELECT data FROM pending_entries WHERE id > $1 ORDER BY id", first_pending
            )
            for i, row in enumerate(rows):
                entry = decode_entry(bytes(row["data"]))
                if isinstance(entry, WithdrawalEntry):
                    assert monitor.add_withdrawal(LoggedWithdrawal(i, entry)) == []
                else:
                    assert isinstance(entry, ClaimEntry)
                    assert monitor.add_claim(LoggedClaim(i, leaf_hash(bytes(row["data"])), entry)) == []
        finally:
            await conn.close()

    asyncio.run(go())


def decode_claim(data: bytes) -> ClaimEntry:
    entry = decode_entry(data)
    assert isinstance(entry, ClaimEntry)
    return entry


def test_claims_filed_before_the_chain_existed_are_indexed(dsn: str, tmp_path: Path) -> None:
    """A v1 claim row (as migration 006 finds it) takes part in the refusal once indexed."""

    async def go() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            old = encode_entry(ClaimEntry(flat_claim(("legacy-a",)), T0))
            await conn.execute(
                "INSERT INTO claims (issuer, entry, entry_hash) VALUES ('issuer-1', $1, sha256($1))", old
            )
            try:
                await claims.file_claim(conn, flat_claim(("legacy-a",)), "issuer-2")
            except Refused as exc:
                return exc.code
            return "filed"
        finally:
            await conn.close()

    assert asyncio.run(go()) == "already_claimed"


def test_a_claim_is_filed_once_its_period_has_ended(api: Api) -> None:
    future = dict(body(["dc-3"]), period_start="2026-10-01T00:00:00Z", period_end="2099-01-01T00:00:00Z")
    refused = error(api, "/v1/claims", "issuer-1", future, 400)
    assert refused["code"] == "period_not_ended"
