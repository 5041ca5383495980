"""Reading a bundle: strict JSON, canonical base64, entries sorted by index.

Nothing here is verified yet; :mod:`attest_core.bundle.verify` does that.  The
format is described in :mod:`attest_core.bundle`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, NoReturn

from attest_core.anchor import Anchor, parse_anchor
from attest_core.errors import BundleError
from attest_core.verdict import EvidenceKind

BUNDLE_FORMAT = "iot-attest-evidence/v2"
"""What a v2 gateway writes: v1's members and ``evidence``."""
BUNDLE_FORMAT_V3 = "iot-attest-evidence/v3"
"""What a gateway writes once its log is anchored on a chain: v2's members and ``anchor``."""
BUNDLE_FORMAT_V1 = "iot-attest-evidence/v1"
"""Still read: a v1 bundle declares no evidence kind (see :func:`attest_core.evaluation.evaluate`)."""
_MEMBERS_V1 = ("format", "checkpoint", "claim_index", "entries", "proof")
_MEMBERS = {
    BUNDLE_FORMAT_V1: _MEMBERS_V1,
    BUNDLE_FORMAT: (*_MEMBERS_V1, "evidence"),
    BUNDLE_FORMAT_V3: (*_MEMBERS_V1, "evidence", "anchor"),
}
_EVIDENCE = {kind.value: kind for kind in EvidenceKind}
_a2b_base64 = binascii.a2b_base64
_b2a_base64 = binascii.b2a_base64


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed bundle: nothing in it is verified yet."""

    checkpoint: str
    claim_index: int
    entries: tuple[tuple[int, bytes], ...]
    proof: tuple[bytes, ...]
    evidence: EvidenceKind | None = None
    """What the bundle declares it holds (v2); None for a v1 bundle."""
    anchor: Anchor | None = None
    """Where the log was anchored on a chain (v3); None for a v1 or v2 bundle."""

    def __post_init__(self) -> None:
        if self.anchor is not None and self.evidence is None:
            raise ValueError("a bundle with an anchor (v3) declares its evidence")

    @property
    def format(self) -> str:
        if self.evidence is None:
            return BUNDLE_FORMAT_V1
        return BUNDLE_FORMAT if self.anchor is None else BUNDLE_FORMAT_V3


def b64(data: bytes) -> str:
    """Standard base64 with padding: the one spelling a bundle accepts."""
    return base64.b64encode(data).decode("ascii")


def fail(message: str, code: str = "bad_bundle") -> NoReturn:
    raise BundleError(message, code=code)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                fail(f"member {key!r} appears twice in one object", "duplicate_member")
            seen.add(key)
    return out


def _no_floats(text: str) -> NoReturn:
    fail(f"the number {text} is not an integer: a bundle holds no fractional numbers", "bad_number")


def _no_constants(text: str) -> NoReturn:
    fail(f"{text} is not valid JSON", "bad_json")


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        fail(f"{what} must be a non-negative integer, got {value!r}", "bad_member")
    return value


def _str(value: Any, what: str) -> str:
    if type(value) is not str:
        fail(f"{what} must be a string, got {type(value).__name__}", "bad_member")
    return value


def _canonical_b64(text: Any) -> bytes | None:
    """The bytes of ``text`` if it is canonical standard base64, else None (then
    :func:`decode_b64` says what is wrong): the fast path of parsing a bundle."""
    if type(text) is not str:
        return None
    try:
        raw = _a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return raw if _b2a_base64(raw, newline=False) == text.encode("ascii") else None


def decode_b64(text: Any, what: str) -> bytes:
    """Strict, canonical standard base64: exactly one spelling per byte string."""
    text = _str(text, what)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleError(f"{what} is not valid base64", code="bad_base64") from exc
    if b64(raw) != text:
        fail(f"{what} is not canonical base64 (padding or unused bits altered)", "bad_base64")
    return raw


def parse_bundle(data: bytes | str) -> Bundle:
    """Parse a bundle's JSON strictly; raise :class:`BundleError` saying what is wrong."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError("the bundle is not UTF-8 text", code="bad_json") from exc
    try:
        doc = json.loads(
            data, object_pairs_hook=_no_duplicates, parse_float=_no_floats, parse_constant=_no_constants
        )
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"the bundle is not valid JSON (it may be truncated): {exc}", code="bad_json"
        ) from exc
    except RecursionError as exc:
        raise BundleError("the bundle nests too deeply", code="bad_json") from exc
    if type(doc) is not dict:
        fail("a bundle is a JSON object", "bad_json")
    if "format" not in doc:
        fail("the bundle lacks format", "missing_member")
    form = doc["format"]
    members = _MEMBERS.get(form) if type(form) is str else None
    if members is None:
        known = ", ".join(repr(f) for f in _MEMBERS)
        fail(f"format {form!r} is not one of {known}", "bad_format")
    missing = [m for m in members if m not in doc]
    extra = sorted(set(doc) - set(members))
    if missing:
        fail(f"the bundle lacks {', '.join(missing)}", "missing_member")
    if extra:
        fail(f"the bundle has unknown members for {form}: {', '.join(extra)}", "unknown_member")
    evidence = None
    if form != BUNDLE_FORMAT_V1:
        evidence = _EVIDENCE.get(doc["evidence"]) if type(doc["evidence"]) is str else None
        if evidence is None:
            fail(f'evidence must be "full" or "boundary", got {doc["evidence"]!r}', "bad_member")
    checkpoint = _str(doc["checkpoint"], "checkpoint")
    claim_index = _int(doc["claim_index"], "claim_index")
    raw_entries = doc["entries"]
    if type(raw_entries) is not list or not raw_entries:
        fail("entries must be a non-empty list", "bad_member")
    entries: list[tuple[int, bytes]] = []
    append = entries.append
    previous = -1
    # Messages are built only for the entry that fails: this loop runs once per reading.
    for n, item in enumerate(raw_entries):
        if type(item) is not dict or len(item) != 2 or "index" not in item or "entry" not in item:
            fail(f"entries[{n}] must be an object with exactly 'index' and 'entry'", "bad_member")
        index = item["index"]
        if type(index) is not int or index < 0:
            _int(index, f"entries[{n}].index")
        if index <= previous:
            fail(f"entries[{n}] has index {index}: entries must be sorted by index, each once", "entry_order")
        previous = index
        raw = _canonical_b64(item["entry"])
        append((index, decode_b64(item["entry"], f"entries[{n}].entry") if raw is None else raw))
    raw_proof = doc["proof"]
    if type(raw_proof) is not list:
        fail("proof must be a list", "bad_member")
    proof = tuple(decode_b64(h, f"proof[{n}]") for n, h in enumerate(raw_proof))
    anchor = parse_anchor(doc["anchor"]) if form == BUNDLE_FORMAT_V3 else None
    return Bundle(checkpoint, claim_index, tuple(entries), proof, evidence, anchor)
