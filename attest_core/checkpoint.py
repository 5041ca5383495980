"""Transparency log checkpoints (c2sp.org/tlog-checkpoint) and cosignatures (c2sp.org/tlog-cosignature).

A checkpoint is a signed note whose text is::

    <origin>
    <tree size, decimal, no leading zeros>
    <base64 of the 32-byte RFC 6962 root hash>
    [time <unix seconds>]
    [<other extension lines>]

Conventions of this project, on top of the specifications:

* **The log key's name is the log's origin.**  :func:`sign_checkpoint` refuses to
  sign a checkpoint whose origin differs from the signer's key name, and
  :func:`open_checkpoint` rejects one (code ``checkpoint_origin_mismatch``).
* One extension line is defined: ``time <unix seconds>`` (decimal, no leading
  zeros, below 2^63), the time the gateway signed the checkpoint.  If present it
  must be the *first* extension line and appear once; it is parsed into
  :attr:`Checkpoint.time`.  Any other line starting with ``time `` is malformed.
  Other extension lines are kept as opaque strings, in order.
* Every field is canonical, so ``parse_checkpoint_body(t).body() == t`` holds for
  every accepted ``t``: the checkpoint that is signed is exactly the one shown.
* The origin must be non-empty and have no leading or trailing white space (the
  specification merely recommends no spaces at all, and e.g. the Go checksum
  database's origin ``go.sum database tree`` has some).

The text itself is :mod:`attest_core.treehead`'s, cosignatures are
:mod:`attest_core.cosignature`'s (both re-exported here); this module signs and
opens checkpoints.  Witness cosignatures (type ``0x04``, "cosignature/v1") sign
``"cosignature/v1\\ntime <t>\\n" + checkpoint body`` and their signature line
carries ``key ID || 8-byte big-endian t || 64-byte Ed25519 signature``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attest_core.cosignature import (
    COSIGNATURE_KEY_TYPE,
    COSIGNATURE_PREFIX,
    Cosignature,
    WitnessKey,
    cosign_checkpoint,
    cosignature_message,
    cosignature_timestamp,
    verify_cosignature,
)
from attest_core.errors import AttestError, DecodeError, VerificationError
from attest_core.note import (
    NoteSigner,
    VerifierKey,
    add_signature_lines,
    check_trusted_keys,
    open_note,
    sign_note,
)
from attest_core.notetext import echo
from attest_core.treehead import (
    HASH_SIZE,
    MAX_UINT63,
    TIME_EXTENSION_PREFIX,
    Checkpoint,
    parse_checkpoint_body,
)

__all__ = [
    "COSIGNATURE_KEY_TYPE",
    "COSIGNATURE_PREFIX",
    "HASH_SIZE",
    "MAX_UINT63",
    "TIME_EXTENSION_PREFIX",
    "Checkpoint",
    "Cosignature",
    "SignedCheckpoint",
    "WitnessKey",
    "add_signature_lines",
    "cosign_checkpoint",
    "cosignature_message",
    "cosignature_timestamp",
    "open_checkpoint",
    "parse_checkpoint_body",
    "sign_checkpoint",
    "verify_cosignature",
]


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The signed note of ``checkpoint``, signed by the log key ``signer``.

    The signer's key name must be the checkpoint's origin (code
    ``checkpoint_origin_mismatch``).
    """
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint is a Checkpoint, not {type(checkpoint).__name__}")
    if not isinstance(signer, NoteSigner):
        raise TypeError(f"signer is a NoteSigner, not {type(signer).__name__}")
    if signer.name != checkpoint.origin:
        raise AttestError(
            f"the log key is named {signer.name!r} but the checkpoint origin is "
            f"{checkpoint.origin!r}; they must be equal",
            code="checkpoint_origin_mismatch",
        )
    return sign_note(checkpoint.body(), signer)


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint whose log signature (and witness cosignatures) verified.

    ``note_text`` is the complete signed note exactly as received (text, blank
    line, all signature lines, including unverified ones), suitable for storing
    and re-verifying.  ``cosignatures`` are the valid cosignatures of the trusted
    witnesses, one per witness, in the order of the witness list.
    """

    checkpoint: Checkpoint
    note_text: str
    cosignatures: tuple[Cosignature, ...] = ()

    @property
    def body(self) -> str:
        """The signed checkpoint text (identical to ``checkpoint.body()``)."""
        return self.checkpoint.body()

    @property
    def witness_names(self) -> tuple[str, ...]:
        return tuple(c.witness.name for c in self.cosignatures)


def open_checkpoint(
    note: str | bytes,
    log_key: VerifierKey,
    witnesses: Sequence[WitnessKey] = (),
    min_witnesses: int = 0,
) -> SignedCheckpoint:
    """Verify a signed checkpoint against the log key and, optionally, witnesses.

    Steps: the note must be signed by ``log_key`` (errors of
    :func:`~attest_core.note.open_note`); its text must be a valid checkpoint
    (errors of :func:`parse_checkpoint_body`); its origin must equal the log key's
    name (:class:`~attest_core.errors.VerificationError`, code
    ``checkpoint_origin_mismatch``); every cosignature by a trusted witness must
    verify (:class:`~attest_core.errors.SignatureError`, code ``bad_cosignature``);
    and at least ``min_witnesses`` distinct trusted witnesses must have cosigned
    (:class:`~attest_core.errors.VerificationError`, code ``not_enough_witnesses``).
    Signatures of other keys are ignored.
    """
    if not isinstance(log_key, VerifierKey):
        raise TypeError(f"log_key is a VerifierKey, not {type(log_key).__name__}")
    index = check_trusted_keys(witnesses, WitnessKey, "witnesses")
    if not isinstance(min_witnesses, int) or isinstance(min_witnesses, bool) or min_witnesses < 0:
        raise ValueError(f"min_witnesses is a non-negative int, got {min_witnesses!r}")
    if min_witnesses > len(index):
        raise ValueError(f"min_witnesses is {min_witnesses} but only {len(index)} witness keys are trusted")
    verified = open_note(note, [log_key])
    checkpoint = parse_checkpoint_body(verified.text)
    if checkpoint.body() != verified.text:  # cannot happen: every field is canonical
        raise DecodeError("the checkpoint text is not in canonical form", code="checkpoint_not_canonical")
    if checkpoint.origin != log_key.name:
        raise VerificationError(
            f"the checkpoint origin {echo(checkpoint.origin)} is not the log key name {log_key.name!r}",
            code="checkpoint_origin_mismatch",
        )
    found: dict[tuple[str, bytes], Cosignature] = {}
    for sig in verified.signatures:
        ident = (sig.name, sig.key_id)
        witness = index.get(ident)
        if witness is None:
            continue
        found.setdefault(ident, verify_cosignature(checkpoint, witness, sig))
    if len(found) < min_witnesses:
        raise VerificationError(
            f"the checkpoint is cosigned by {len(found)} trusted witness(es), "
            f"at least {min_witnesses} required",
            code="not_enough_witnesses",
        )
    cosignatures = tuple(found[ident] for ident in index if ident in found)
    text = bytes(note).decode("utf-8") if isinstance(note, bytes | bytearray | memoryview) else note
    return SignedCheckpoint(checkpoint, text, cosignatures)
