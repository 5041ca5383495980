"""Witness cosignatures (c2sp.org/tlog-cosignature, type ``0x04``, "cosignature/v1").

A witness signs ``"cosignature/v1\\ntime <t>\\n" + checkpoint body``; its signature
line carries ``key ID || 8-byte big-endian t || 64-byte Ed25519 signature``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from attest_core.errors import DecodeError, SignatureError
from attest_core.keys import SIGNATURE_SIZE, Signer, check_public_key, verify_signature
from attest_core.note import (
    KEY_ID_SIZE,
    NoteKey,
    NoteSignature,
    check_key_name,
    key_id_for,
)
from attest_core.treehead import MAX_UINT63, Checkpoint, check_uint63

#: Signature type byte of Ed25519 cosignature/v1 witness keys (c2sp.org/tlog-cosignature).
COSIGNATURE_KEY_TYPE = 0x04
#: The header line of the message a witness signs.
COSIGNATURE_PREFIX = "cosignature/v1\n"

_TIMESTAMP_SIZE = 8
_COSIGNATURE_SIZE = _TIMESTAMP_SIZE + SIGNATURE_SIZE


@dataclass(frozen=True, repr=False)
class WitnessKey(NoteKey):
    """The public key of a witness that makes Ed25519 cosignature/v1 cosignatures (type ``0x04``).

    Its key string is ``<name>+<8 hex key ID>+<base64(0x04 || public key)>``; use
    :meth:`parse`, :meth:`from_public_key` and :meth:`to_string` as with
    :class:`~attest_core.note.VerifierKey`.
    """

    KEY_TYPE: ClassVar[int] = COSIGNATURE_KEY_TYPE
    KIND: ClassVar[str] = "witness key"


def cosignature_message(checkpoint: Checkpoint, time: int) -> bytes:
    """What a cosignature/v1 witness signs: header, ``time <t>`` line, checkpoint body."""
    check_uint63(time, "cosignature time", "bad_cosignature")
    return f"{COSIGNATURE_PREFIX}time {time}\n{checkpoint.body()}".encode()


def cosign_checkpoint(checkpoint: Checkpoint, witness_name: str, signer: Signer, time: int) -> str:
    """A witness's cosignature/v1 signature line (with final newline) for ``checkpoint``.

    ``time`` is the POSIX time of cosigning.  Append the line to the log's signed
    note with :func:`~attest_core.note.add_signature_lines`.
    """
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"checkpoint is a Checkpoint, not {type(checkpoint).__name__}")
    check_key_name(witness_name)
    if not isinstance(signer, Signer):
        raise TypeError(f"signer must implement attest_core.keys.Signer, got {type(signer).__name__}")
    public_key = check_public_key(signer.public_key)
    message = cosignature_message(checkpoint, time)
    signature = signer.sign(message)
    if not isinstance(signature, bytes) or not verify_signature(public_key, message, signature):
        raise SignatureError(
            f"the signer for witness {witness_name} returned a signature that does not verify"
        )
    key_id = key_id_for(witness_name, COSIGNATURE_KEY_TYPE, public_key)
    return NoteSignature(witness_name, key_id, time.to_bytes(_TIMESTAMP_SIZE, "big") + signature).to_line()


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The timestamp of a cosignature/v1 signature (not verified).

    Raises :class:`~attest_core.errors.DecodeError` (code ``bad_cosignature``) if
    the signature is not 8 + 64 bytes or the timestamp is 2^63 or more.
    """
    if len(signature.signature) != _COSIGNATURE_SIZE:
        raise DecodeError(
            f"a cosignature/v1 signature is {KEY_ID_SIZE + _COSIGNATURE_SIZE} bytes with its key ID, "
            f"got {KEY_ID_SIZE + len(signature.signature)}",
            code="bad_cosignature",
        )
    timestamp = int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big")
    if timestamp > MAX_UINT63:
        raise DecodeError("a cosignature timestamp must be below 2^63", code="bad_cosignature")
    return timestamp


@dataclass(frozen=True)
class Cosignature:
    """A verified witness cosignature: the witness, its timestamp and the Ed25519 signature."""

    witness: WitnessKey
    time: int
    signature: bytes

    def to_line(self) -> str:
        """The signature line, including its final newline."""
        raw = self.time.to_bytes(_TIMESTAMP_SIZE, "big") + self.signature
        return NoteSignature(self.witness.name, self.witness.key_id, raw).to_line()


def verify_cosignature(checkpoint: Checkpoint, witness: WitnessKey, signature: NoteSignature) -> Cosignature:
    """Check ``witness``'s cosignature/v1 ``signature`` over ``checkpoint``.

    Raises :class:`~attest_core.errors.SignatureError` (code ``bad_cosignature``) if it is
    malformed or does not verify.  The caller matches the signature line to the witness (name
    and key ID).
    """
    try:
        timestamp = cosignature_timestamp(signature)
    except DecodeError as exc:
        raise SignatureError(
            f"the cosignature by witness {witness.name}+{witness.key_id.hex()} is malformed: {exc}",
            code="bad_cosignature",
        ) from exc
    raw = signature.signature[_TIMESTAMP_SIZE:]
    if not verify_signature(witness.public_key, cosignature_message(checkpoint, timestamp), raw):
        raise SignatureError(
            f"the cosignature by witness {witness.name}+{witness.key_id.hex()} does not verify",
            code="bad_cosignature",
        )
    return Cosignature(witness, timestamp, raw)
