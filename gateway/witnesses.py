"""Witness cosignatures (c2sp.org/tlog-cosignature) posted to the gateway.

A witness that verified one of the gateway's checkpoints posts the checkpoint's
signed note with its cosignature line(s) appended (``POST /v1/log/cosignatures``).
The gateway accepts a cosignature only from a witness key it is configured with
(``witnesses``), only if it verifies over the checkpoint body, and only for a
checkpoint it signed itself (the body must equal a stored checkpoint's, byte for
byte).  It keeps one cosignature per witness and checkpoint and hands the lines
out with the checkpoint (``GET /v1/log/checkpoint``) and in evidence bundles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from attest_core.checkpoint import WitnessKey, parse_checkpoint_body, verify_cosignature
from attest_core.errors import AttestError, SignatureError
from attest_core.note import parse_note
from gateway.errors import ConfigError, CosignatureRefused

MAX_NOTE_BYTES = 64 * 1024


def parse_witnesses(keys: Sequence[str]) -> list[WitnessKey]:
    """The configured witness keys. Raises ConfigError naming the bad one."""
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ConfigError("witnesses must be a list of witness key strings (<name>+<key id>+<key>)")
    out: list[WitnessKey] = []
    for text in keys:
        if not isinstance(text, str):
            raise ConfigError(f"witness key {text!r} is not a string")
        try:
            key = WitnessKey.parse(text.strip())
        except (AttestError, ValueError) as exc:
            raise ConfigError(f"witness key {text!r} does not parse: {exc}") from None
        if any(k.name == key.name and k.key_id == key.key_id and k != key for k in out):
            raise ConfigError(f"two witness keys share the name {key.name} and key id {key.key_id.hex()}")
        if key not in out:
            out.append(key)
    return out


def witness_label(key: WitnessKey) -> str:
    """How a witness is named in the cosignatures table: ``<name>+<key id hex>``."""
    return f"{key.name}+{key.key_id.hex()}"


@dataclass
class CosignatureResult:
    checkpoint_size: int
    stored: list[str] = field(default_factory=list)
    already_stored: list[str] = field(default_factory=list)


def verified_cosignatures(note: str, witnesses: Sequence[WitnessKey]) -> tuple[str, list[tuple[str, str]]]:
    """(checkpoint body, [(witness label, signature line)]) of the configured witnesses' valid cosignatures.

    Raises :class:`CosignatureRefused`: 400 for a malformed note or checkpoint,
    403 if no configured witness cosigned or a cosignature does not verify.
    """
    try:
        parsed = parse_note(note)
        checkpoint = parse_checkpoint_body(parsed.text)
    except AttestError as exc:
        raise CosignatureRefused(400, exc.code, f"the body is not a signed checkpoint note: {exc}") from exc
    by_id = {(k.name, k.key_id): k for k in witnesses}
    found: dict[str, str] = {}
    for sig in parsed.signatures:
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            continue
        label = witness_label(key)
        try:
            line = verify_cosignature(checkpoint, key, sig).to_line()
        except SignatureError as exc:
            raise CosignatureRefused(403, exc.code, str(exc)) from exc
        if found.get(label, line) != line:
            raise CosignatureRefused(
                400, "duplicate_cosignature", f"witness {label} cosigned twice in one note"
            )
        found[label] = line
    if not found:
        known = ", ".join(witness_label(k) for k in witnesses) or "none are configured"
        raise CosignatureRefused(
            403,
            "unknown_witness",
            f"the note carries no cosignature by a witness this gateway accepts ({known})",
        )
    return parsed.text, sorted(found.items())


async def store_cosignatures(
    conn: asyncpg.Connection, body: str, lines: list[tuple[str, str]]
) -> CosignatureResult:
    """Store the cosignature lines for the stored checkpoint whose body is ``body``.

    Raises :class:`CosignatureRefused`: 404 if the gateway signed no such
    checkpoint, 409 if a witness already cosigned it differently.
    """
    size = parse_checkpoint_body(body).size
    checkpoint_id: int | None = None
    for row in await conn.fetch("SELECT id, note FROM checkpoints WHERE size = $1 ORDER BY id", size):
        if parse_note(row["note"]).text == body:
            checkpoint_id = row["id"]
            break
    if checkpoint_id is None:
        raise CosignatureRefused(
            404, "no_such_checkpoint", f"this gateway signed no checkpoint with this body (tree size {size})"
        )
    result = CosignatureResult(size)
    async with conn.transaction():
        for label, line in lines:
            inserted = await conn.fetchval(
                "INSERT INTO cosignatures (checkpoint_id, witness, line) VALUES ($1, $2, $3) "
                "ON CONFLICT (checkpoint_id, witness) DO NOTHING RETURNING true",
                checkpoint_id,
                label,
                line,
            )
            if inserted:
                result.stored.append(label)
                continue
            existing = await conn.fetchval(
                "SELECT line FROM cosignatures WHERE checkpoint_id = $1 AND witness = $2",
                checkpoint_id,
                label,
            )
            if existing != line:
                raise CosignatureRefused(
                    409,
                    "cosignature_conflict",
                    f"witness {label} already cosigned the checkpoint of size {size} with a different "
                    "cosignature; the first one is kept",
                )
            result.already_stored.append(label)
    return result
