"""The proof documents the gateway serves, parsed strictly.

``GET /v1/log/proof/inclusion?index=I&size=N`` answers
``{"index": I, "size": N, "hashes": [base64, ...]}`` and
``GET /v1/log/proof/consistency?from=M&to=N`` answers
``{"from": M, "to": N, "hashes": [base64, ...]}``.  Every hash is canonical
standard base64 of 32 bytes.  Members other than these are ignored (they are
covered by nothing, so nothing here relies on them).  A document that is not
of this form raises :class:`~attest_core.errors.ProofError` with code
``malformed_proof``: it proves nothing, so it is invalid evidence (exit code 2).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, NoReturn

from attest_core.errors import ProofError
from attest_core.merkle import HASH_SIZE
from attest_core.notetext import b64decode_canonical

MAX_PROOF_BYTES = 1024 * 1024
"""A proof of a 2^63-leaf tree has fewer than 130 hashes; a megabyte is generous."""


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    size: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "size": self.size, "hashes": _b64_list(self.hashes)}


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"from": self.size1, "to": self.size2, "hashes": _b64_list(self.hashes)}


def _b64_list(hashes: tuple[bytes, ...]) -> list[str]:
    return [base64.b64encode(h).decode("ascii") for h in hashes]


def _fail(what: str, message: str) -> NoReturn:
    raise ProofError(f"the {what} {message}", code="malformed_proof")


def _object(data: bytes | str, what: str, members: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(data, bytes):
        if len(data) > MAX_PROOF_BYTES:
            _fail(what, f"is larger than {MAX_PROOF_BYTES} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            _fail(what, "is not UTF-8 text")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, RecursionError) as exc:
        _fail(what, f"is not valid JSON (it may be truncated): {exc}")
    if type(doc) is not dict:
        _fail(what, f"is a JSON object with members {', '.join(members)}")
    missing = [m for m in members if m not in doc]
    if missing:
        _fail(what, f"lacks the member(s) {', '.join(missing)}")
    return doc


def _uint(doc: dict[str, Any], member: str, what: str) -> int:
    value = doc[member]
    if type(value) is not int or not 0 <= value < 2**63:
        _fail(what, f"member {member!r} must be an integer in [0, 2^63), got {value!r}")
    return value


def _hashes(doc: dict[str, Any], what: str) -> tuple[bytes, ...]:
    raw = doc["hashes"]
    if type(raw) is not list:
        _fail(what, "member 'hashes' must be a list of base64 strings")
    out: list[bytes] = []
    for n, item in enumerate(raw):
        digest = b64decode_canonical(item) if type(item) is str else None
        if digest is None:
            _fail(what, f"hashes[{n}] is not canonical standard base64")
        if len(digest) != HASH_SIZE:
            _fail(what, f"hashes[{n}] is {len(digest)} bytes, a SHA-256 hash is {HASH_SIZE}")
        out.append(digest)
    return tuple(out)


def parse_inclusion_proof(data: bytes | str) -> InclusionProof:
    what = "inclusion proof"
    doc = _object(data, what, ("index", "size", "hashes"))
    return InclusionProof(_uint(doc, "index", what), _uint(doc, "size", what), _hashes(doc, what))


def parse_consistency_proof(data: bytes | str) -> ConsistencyProof:
    what = "consistency proof"
    doc = _object(data, what, ("from", "to", "hashes"))
    return ConsistencyProof(_uint(doc, "from", what), _uint(doc, "to", what), _hashes(doc, what))
