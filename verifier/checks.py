"""The building blocks of a step-by-step audit: one checkpoint, one inclusion, one consistency proof.

Each check returns a small JSON-ready document (``iot-attest-check/v1``)::

    format     "iot-attest-check/v1"
    check      "checkpoint" | "inclusion" | "consistency"
    valid      true | false
    exit_code  0 (valid) | 2 (invalid)
    summary    one line saying what was established, or what failed
    log        {name, key_id, fingerprint, key}: the key the auditor supplied
    error      {code, message}                     only when invalid
    checkpoint {...}                               checkpoint and inclusion (as in the bundle report)
    old, new   {...}                               consistency: both checkpoints, once verified
    entry      {index, leaf_hash_hex, description} inclusion
    proof      the proof document that was checked, once parsed
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attest_core.checkpoint import SignedCheckpoint, WitnessKey, open_checkpoint
from attest_core.entries import (
    ClaimEntry,
    EnrolmentEntry,
    ReadingEntry,
    RevocationEntry,
    RotationEntry,
    WithdrawalEntry,
    decode_entry,
)
from attest_core.errors import AttestError
from attest_core.merkle import leaf_hash, verify_consistency, verify_inclusion
from attest_core.money import format_kwh
from attest_core.note import VerifierKey
from verifier.errors import ExitCode, InvalidEvidence
from verifier.inputs import describe_key
from verifier.proofs import parse_consistency_proof, parse_inclusion_proof
from verifier.report import checkpoint_info, iso_ms

CHECK_FORMAT = "iot-attest-check/v1"
MAX_NOTE_BYTES = 64 * 1024
"""A checkpoint note with 100 signature lines is a few kilobytes."""
MAX_ENTRY_BYTES = 1024 * 1024
MAX_PROOF_FILE_BYTES = 1024 * 1024


def _doc(check: str, log_key: VerifierKey) -> dict[str, Any]:
    return {
        "format": CHECK_FORMAT,
        "check": check,
        "valid": False,
        "exit_code": int(ExitCode.INVALID),
        "summary": "",
        "log": describe_key(log_key),
    }


def _finish(doc: dict[str, Any], error: AttestError | InvalidEvidence | None, summary: str) -> dict[str, Any]:
    if error is None:
        doc.update(valid=True, exit_code=int(ExitCode.OK), summary=summary)
    else:
        doc["summary"] = f"{doc['check']} check failed"
        doc["error"] = {"code": error.code, "message": error.message}
    return doc


def _open(
    note: bytes, log_key: VerifierKey, what: str, witnesses: Sequence[WitnessKey] = (), min_witnesses: int = 0
) -> SignedCheckpoint:
    try:
        return open_checkpoint(note, log_key, witnesses=witnesses, min_witnesses=min_witnesses)
    except AttestError as exc:
        raise InvalidEvidence(exc.code, f"{what}: {exc.message}") from None


def check_checkpoint(
    note: bytes, log_key: VerifierKey, witnesses: Sequence[WitnessKey] = (), min_witnesses: int = 0
) -> dict[str, Any]:
    doc = _doc("checkpoint", log_key)
    try:
        signed = _open(note, log_key, "the checkpoint", witnesses, min_witnesses)
    except InvalidEvidence as exc:
        return _finish(doc, exc, "")
    doc["checkpoint"] = info = checkpoint_info(signed)
    names = ", ".join(w["name"] for w in info["witnesses"])
    return _finish(
        doc,
        None,
        f"checkpoint of {info['origin']} at size {info['size']} is signed by the log key"
        + (f" and cosigned by {names}" if names else ""),
    )


def describe_entry(raw: bytes) -> str:
    """What a log entry holds, in a few words (the proof covers its bytes whatever they are)."""
    try:
        entry = decode_entry(raw)
    except AttestError as exc:
        return f"{len(raw)} bytes that do not decode as an iot-attest entry [{exc.code}]"
    try:
        if isinstance(entry, ReadingEntry):
            r = entry.reading
            return (
                f"reading {r.seq} of device {r.device_id} (asset {r.asset_id}) at {iso_ms(r.time_ms)}: "
                f"register {format_kwh(r.energy_mwh)} kWh"
            )
        if isinstance(entry, EnrolmentEntry):
            s = entry.statement
            return f"enrolment of device {s.device_id} for asset {s.asset_id} by {entry.installer}"
        if isinstance(entry, RotationEntry):
            rs = entry.statement
            return f"key rotation of device {rs.device_id} from reading {rs.effective_seq} on"
        if isinstance(entry, RevocationEntry):
            who = (
                ""
                if entry.revoker_role is None
                else f" by {entry.revoked_by} ({entry.revoker_role.label}), disowning "
                f"{entry.readings_disowned} logged reading(s)"
            )
            return (
                f"revocation of device {entry.device_id} after reading {entry.last_valid_seq}{who}: "
                f"{entry.reason}"
            )
        if isinstance(entry, ClaimEntry):
            c = entry.claim
            supersedes = (
                "" if entry.supersedes is None else f", superseding the claim {entry.supersedes.hex()}"
            )
            return (
                f"claim by {c.issuer}: {c.title!r}, {len(c.assets)} asset(s), "
                f"{iso_ms(c.period_start_ms)} to {iso_ms(c.period_end_ms)}{supersedes}"
            )
        if isinstance(entry, WithdrawalEntry):
            return f"withdrawal by {entry.issuer} of the claim {entry.claim.hex()}: {entry.reason}"
    except AttestError as exc:
        return f"an entry whose content does not decode [{exc.code}]"
    return "an entry"  # pragma: no cover - decode_entry returns one of the types above


def check_inclusion(
    note: bytes, entry: bytes, index: int, proof: bytes, log_key: VerifierKey
) -> dict[str, Any]:
    doc = _doc("inclusion", log_key)
    try:
        signed = _open(note, log_key, "the checkpoint")
        doc["checkpoint"] = checkpoint_info(signed)
        cp = signed.checkpoint
        leaf = leaf_hash(entry)
        doc["entry"] = {"index": index, "leaf_hash_hex": leaf.hex(), "description": describe_entry(entry)}
        try:
            parsed = parse_inclusion_proof(proof)
        except AttestError as exc:
            raise InvalidEvidence(exc.code, exc.message) from None
        doc["proof"] = parsed.to_json()
        if parsed.index != index:
            raise InvalidEvidence(
                "proof_mismatch", f"the proof is for entry {parsed.index}, not for entry {index}"
            )
        if parsed.size != cp.size:
            raise InvalidEvidence(
                "proof_mismatch",
                f"the proof is for a tree of size {parsed.size}, the checkpoint's tree has size {cp.size}",
            )
        try:
            verify_inclusion(index, cp.size, leaf, parsed.hashes, cp.root_hash)
        except AttestError as exc:
            raise InvalidEvidence(
                exc.code, f"entry {index} is not proven in the checkpoint's tree: {exc.message}"
            ) from None
    except InvalidEvidence as exc:
        return _finish(doc, exc, "")
    return _finish(
        doc, None, f"entry {index} ({doc['entry']['description']}) is in the log of size {cp.size}"
    )


def check_consistency(old: bytes, new: bytes, proof: bytes, log_key: VerifierKey) -> dict[str, Any]:
    doc = _doc("consistency", log_key)
    try:
        old_signed = _open(old, log_key, "the old checkpoint")
        doc["old"] = checkpoint_info(old_signed)
        new_signed = _open(new, log_key, "the new checkpoint")
        doc["new"] = checkpoint_info(new_signed)
        size1, size2 = old_signed.checkpoint.size, new_signed.checkpoint.size
        if size1 > size2:
            raise InvalidEvidence(
                "rollback", f"the old checkpoint (size {size1}) is larger than the new one (size {size2})"
            )
        try:
            parsed = parse_consistency_proof(proof)
        except AttestError as exc:
            raise InvalidEvidence(exc.code, exc.message) from None
        doc["proof"] = parsed.to_json()
        if (parsed.size1, parsed.size2) != (size1, size2):
            raise InvalidEvidence(
                "proof_mismatch",
                f"the proof goes from size {parsed.size1} to {parsed.size2}, the checkpoints have sizes "
                f"{size1} and {size2}",
            )
        try:
            verify_consistency(
                size1, size2, old_signed.checkpoint.root_hash, new_signed.checkpoint.root_hash, parsed.hashes
            )
        except AttestError as exc:
            raise InvalidEvidence(
                exc.code,
                f"the tree of size {size2} does not provably extend the tree of size {size1}: {exc.message}",
            ) from None
    except InvalidEvidence as exc:
        return _finish(doc, exc, "")
    return _finish(
        doc, None, f"the log of size {size2} extends the log of size {size1}: nothing was rewritten"
    )
