"""Claims: filing them and reading them back.

A claim becomes a claim log entry (``pending_entries``, kind 5) and a row of ``claims`` holding
the exact entry bytes and their SHA-256 (unique: two claims filed in the same millisecond with
the same content get different ``logged_at_ms``).  The sequencer logs the entry; its log index
is found by that hash (``entries`` has an index on ``sha256(data)`` for claim entries,
migration 002) and then kept in ``claims.log_index``.

No double counting: filing takes :data:`CLAIMS_LOCK`, so claims and withdrawals are decided
one at a time however many gateway processes run; a claim whose period overlaps a live claim on
any of its assets is refused (409 ``already_claimed``), and a v2 claim entry names, per asset,
the latest live claim on it by leaf hash, and the claim it supersedes.  Those are the rules of
:class:`attest_core.claimchain.LiveClaims`; the SQL here is their second form, tested against it.

The verdict on a claim is gateway.verdicts', its evidence bundle gateway.bundles'.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import asyncpg

from attest_core.claim import Claim
from attest_core.entries import (
    MAX_REASON_BYTES,
    ClaimEntry,
    EntryType,
    WithdrawalEntry,
    decode_entry,
    encode_entry,
)
from attest_core.merkle import leaf_hash
from gateway import logstore
from gateway.errors import Refused

CLAIMS_LOCK = 0x10_7A77_C1A
"""Advisory lock id: held while a claim is filed or withdrawn, so that each decision sees every
claim decided before it, in any gateway process."""


@dataclass(frozen=True)
class StoredClaim:
    id: int
    issuer: str
    entry: bytes
    entry_hash: bytes
    log_index: int | None
    claim: Claim
    logged_at_ms: int
    voided_by: str | None = None
    """None while the claim is live; else what voided it (withdrawn, superseded by claim N)."""


@dataclass(frozen=True)
class LatestCheckpoint:
    size: int
    note: str
    """The signed note with the stored witness cosignatures appended."""


def _now_ms() -> int:
    return int(time.time() * 1000)


async def index_claims(conn: asyncpg.Connection) -> None:
    """Fill the chain columns of claims filed before they existed (migration 006), from their entries."""
    rows = await conn.fetch("SELECT id, entry FROM claims WHERE leaf_hash IS NULL ORDER BY id")
    for row in rows:
        entry = decode_entry(bytes(row["entry"]))
        assert isinstance(entry, ClaimEntry)
        await _index(conn, row["id"], bytes(row["entry"]), entry)


async def _index(conn: asyncpg.Connection, claim_id: int, entry: bytes, decoded: ClaimEntry) -> None:
    """Fill claim ``claim_id``'s chain columns: ``entry`` is its entry's bytes, ``decoded`` them decoded."""
    claim = decoded.claim
    await conn.execute(
        "UPDATE claims SET leaf_hash = $2, period_start_ms = $3, period_end_ms = $4, supersedes = $5 WHERE id = $1",
        claim_id,
        leaf_hash(entry),
        claim.period_start_ms,
        claim.period_end_ms,
        decoded.supersedes,
    )
    await conn.executemany(
        "INSERT INTO claim_assets (asset_id, claim_id) VALUES ($1, $2)", [(a, claim_id) for a in claim.assets]
    )


async def _void_superseded(conn: asyncpg.Connection, superseded: bytes, by: int) -> None:
    await conn.execute(
        "UPDATE claims SET voided_by = $2 WHERE leaf_hash = $1 AND voided_by IS NULL",
        superseded,
        f"superseded by claim {by}",
    )


async def _live_claim_of(conn: asyncpg.Connection, claim_id: int, issuer: str, verb: str) -> bytes:
    """The leaf hash of live claim ``claim_id`` of ``issuer``, or the refusal saying why not."""
    row = await conn.fetchrow("SELECT issuer, leaf_hash, voided_by FROM claims WHERE id = $1", claim_id)
    if row is None:
        raise Refused(404, "unknown_claim", f"there is no claim {claim_id}")
    if row["issuer"] != issuer:
        raise Refused(
            403, "not_your_claim", f"claim {claim_id} is {row['issuer']}'s: only its issuer {verb} it"
        )
    if row["voided_by"] is not None:
        raise Refused(409, "claim_void", f"claim {claim_id} is already void ({row['voided_by']})")
    return bytes(row["leaf_hash"])


async def file_claim(
    conn: asyncpg.Connection, claim: Claim, issuer: str, supersedes: int | None = None
) -> int:
    """Queue ``claim`` for the log and store it; return its id.

    Refused (409 ``already_claimed``) if its period overlaps a live claim on one of its assets,
    ``supersedes`` (an earlier live claim of the same issuer, void from now on) aside.
    """
    logged_at = _now_ms()
    if logged_at < claim.period_end_ms:
        raise Refused(
            400,
            "period_not_ended",
            f"the claim's period ends at {claim.period_end_ms} (Unix ms), after now: a claim is filed once its "
            "period has ended, so every device and identity entry of the period is bound to it",
        )
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIMS_LOCK)
        await index_claims(conn)
        superseded = (
            None if supersedes is None else await _live_claim_of(conn, supersedes, issuer, "supersedes")
        )
        clash = await conn.fetchrow(
            "SELECT c.id, c.issuer, c.log_index, a.asset_id FROM claim_assets a JOIN claims c ON c.id = a.claim_id "
            "WHERE a.asset_id = ANY($1::text[]) AND c.voided_by IS NULL AND c.id IS DISTINCT FROM $4 "
            "AND c.period_start_ms < $3 AND $2 < c.period_end_ms ORDER BY c.id LIMIT 1",
            list(claim.assets),
            claim.period_start_ms,
            claim.period_end_ms,
            supersedes,
        )
        if clash is not None:
            where = "" if clash["log_index"] is None else f", log entry {clash['log_index']}"
            raise Refused(
                409,
                "already_claimed",
                f"asset {clash['asset_id']} is already claimed for an overlapping period by claim {clash['id']} "
                f"({clash['issuer']}{where}); an issuer corrects its own claim by superseding it",
            )
        latest = {
            r["asset_id"]: bytes(r["leaf_hash"])
            for r in await conn.fetch(
                "SELECT DISTINCT ON (a.asset_id) a.asset_id, c.leaf_hash FROM claim_assets a "
                "JOIN claims c ON c.id = a.claim_id WHERE a.asset_id = ANY($1::text[]) AND c.voided_by IS NULL "
                "AND c.id IS DISTINCT FROM $2 ORDER BY a.asset_id, c.id DESC",
                list(claim.assets),
                supersedes,
            )
        }
        previous = tuple(latest.get(a) for a in claim.assets)
        # The latest identity entry of each asset, held (FOR SHARE) until the claim is queued: an
        # enrolment, rotation or revocation queued meanwhile comes after the claim in the log.
        heads = {
            r["asset_id"]: None if r["head"] is None else bytes(r["head"])
            for r in await conn.fetch(
                "SELECT asset_id, head FROM asset_identity WHERE asset_id = ANY($1::text[]) FOR SHARE",
                list(claim.assets),
            )
        }
        identity = tuple(heads.get(a) for a in claim.assets)
        for attempt in range(100):
            decoded = ClaimEntry(claim, logged_at + attempt, superseded, previous, identity)
            entry = encode_entry(decoded)
            digest = hashlib.sha256(entry).digest()
            claim_id = await conn.fetchval(
                "INSERT INTO claims (issuer, entry, entry_hash) VALUES ($1, $2, $3) "
                "ON CONFLICT (entry_hash) DO NOTHING RETURNING id",
                issuer,
                entry,
                digest,
            )
            if claim_id is None:
                continue  # the same claim in the same millisecond: log it as a separate entry
            await _index(conn, claim_id, entry, decoded)
            if superseded is not None:
                await _void_superseded(conn, superseded, claim_id)
            await conn.execute(
                "INSERT INTO pending_entries (kind, data) VALUES ($1, $2)", int(EntryType.CLAIM), entry
            )
            return int(claim_id)
    raise RuntimeError("could not give the claim a unique entry")  # pragma: no cover


async def withdraw_claim(conn: asyncpg.Connection, claim_id: int, issuer: str, reason: str) -> None:
    """Withdraw live claim ``claim_id`` of ``issuer``: a withdrawal entry is queued for the log."""
    if len(reason.encode("utf-8")) > MAX_REASON_BYTES:
        raise Refused(400, "too_large", f"a withdrawal reason is at most {MAX_REASON_BYTES} bytes")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIMS_LOCK)
        await index_claims(conn)
        target = await _live_claim_of(conn, claim_id, issuer, "withdraws")
        entry = encode_entry(WithdrawalEntry(issuer, target, reason, _now_ms()))
        await conn.execute(
            "UPDATE claims SET voided_by = 'withdrawn', void_reason = $2 WHERE id = $1", claim_id, reason
        )
        await conn.execute(
            "INSERT INTO claim_withdrawals (claim_hash, entry, entry_hash) VALUES ($1, $2, $3)",
            target,
            entry,
            hashlib.sha256(entry).digest(),
        )
        await conn.execute(
            "INSERT INTO pending_entries (kind, data) VALUES ($1, $2)", int(EntryType.WITHDRAWAL), entry
        )


def _stored(row: asyncpg.Record) -> StoredClaim:
    entry = bytes(row["entry"])
    decoded = decode_entry(entry)
    assert isinstance(decoded, ClaimEntry)
    return StoredClaim(
        row["id"],
        row["issuer"],
        entry,
        bytes(row["entry_hash"]),
        row["log_index"],
        decoded.claim,
        decoded.logged_at_ms,
        row["voided_by"],
    )


async def _with_index(conn: asyncpg.Connection, claim: StoredClaim) -> StoredClaim:
    if claim.log_index is not None:
        return claim
    index = await conn.fetchval(
        "SELECT idx FROM entries WHERE kind = $1 AND sha256(data) = $2",
        int(EntryType.CLAIM),
        claim.entry_hash,
    )
    if index is None:
        return claim
    await conn.execute("UPDATE claims SET log_index = $2 WHERE id = $1", claim.id, index)
    return dataclasses.replace(claim, log_index=index)


_CLAIM_COLUMNS = "SELECT id, issuer, entry, entry_hash, log_index, voided_by FROM claims "


async def get_claim(conn: asyncpg.Connection, claim_id: int) -> StoredClaim | None:
    row = await conn.fetchrow(_CLAIM_COLUMNS + "WHERE id = $1", claim_id)
    return None if row is None else await _with_index(conn, _stored(row))


async def list_claims(
    conn: asyncpg.Connection, issuer: str | None, before: int | None, limit: int
) -> list[StoredClaim]:
    rows = await conn.fetch(
        _CLAIM_COLUMNS + "WHERE ($1::text IS NULL OR issuer = $1) AND ($2::bigint IS NULL OR id < $2) "
        "ORDER BY id DESC LIMIT $3",
        issuer,
        before,
        limit,
    )
    return [await _with_index(conn, _stored(r)) for r in rows]


async def latest_checkpoint(conn: asyncpg.Connection) -> LatestCheckpoint | None:
    """The latest signed checkpoint, with the witness cosignatures stored for it."""
    row = await logstore.latest_checkpoint(conn)
    if row is None:
        return None
    lines = await conn.fetch(
        "SELECT line FROM cosignatures WHERE checkpoint_id = $1 ORDER BY witness", row["id"]
    )
    return LatestCheckpoint(row["size"], row["note"] + "".join(r["line"] for r in lines))


async def chain_entries(conn: asyncpg.Connection, subject: bytes, size: int) -> list[tuple[int, bytes]]:
    """(log index, entry bytes) of what a bundle of claim entry ``subject`` carries besides it:
    the claims its links reach, asset by asset back to the first, and every logged entry (below
    ``size``) that withdrew or superseded one of them or the claim itself.

    The chain is the one :func:`attest_core.claimchain.check_claim_chain` walks."""
    decoded = decode_entry(subject)
    assert isinstance(decoded, ClaimEntry)
    found: dict[bytes, tuple[int, bytes]] = {}
    todo = list(decoded.links().items())
    while todo:
        wanted = list({link for _, link in todo if link not in found})
        for row in await conn.fetch(_CLAIM_COLUMNS + "WHERE leaf_hash = ANY($1::bytea[])", wanted):
            claim = await _with_index(conn, _stored(row))
            if claim.log_index is not None and claim.log_index < size:
                found[leaf_hash(claim.entry)] = (claim.log_index, claim.entry)
            # else not in the tree: the verifier reports the link as left out
        nxt: list[tuple[str, bytes]] = []
        for asset, link in todo:
            if link in found:
                entry = decode_entry(found[link][1])
                assert isinstance(entry, ClaimEntry)
                before = entry.links().get(asset)
                if before is not None and before not in found:
                    nxt.append((asset, before))
        todo = nxt
    hashes = [*found, leaf_hash(subject)]
    out = dict(found.values())
    for row in await conn.fetch(_CLAIM_COLUMNS + "WHERE supersedes = ANY($1::bytea[])", hashes):
        claim = await _with_index(conn, _stored(row))
        if claim.log_index is not None and claim.log_index < size:
            out[claim.log_index] = claim.entry
    for row in await conn.fetch(
        "SELECT claim_hash, entry, entry_hash, log_index FROM claim_withdrawals WHERE claim_hash = ANY($1::bytea[])",
        hashes,
    ):
        index = row["log_index"]
        if index is None:
            index = await conn.fetchval(
                "SELECT idx FROM entries WHERE kind = $1 AND sha256(data) = $2",
                int(EntryType.WITHDRAWAL),
                row["entry_hash"],
            )
            if index is not None:
                await conn.execute(
                    "UPDATE claim_withdrawals SET log_index = $2 WHERE claim_hash = $1",
                    row["claim_hash"],
                    index,
                )
        if index is not None and index < size:
            out[index] = bytes(row["entry"])
    return sorted(out.items())
