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

Witness cosignatures (type ``0x04``, "cosignature/v1") sign
``"cosignature/v1\\ntime <t>\\n" + checkpoint body`` and their signature line
carries ``key ID || 8-byte big-endian t || 64-byte Ed25519 signature``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from attest_core.errors import AttestError, DecodeError, SignatureError, VerificationError
from attest_core.keys import SIGNATURE_SIZE, Signer, check_public_key, verify_signature
from attest_core.note import (
    KEY_ID_SIZE,
    NoteKey,
    NoteSignature,
    NoteSigner,
    VerifierKey,
    add_signature_lines,
    b64decode_canonical,
    check_key_name,
    check_trusted_keys,
    key_id_for,
    open_note,
    sign_note,
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

#: Signature type byte of Ed25519 cosignature/v1 witness keys (c2sp.org/tlog-cosignature).
COSIGNATURE_KEY_TYPE = 0x04
#: The header line of the message a witness signs.
COSIGNATURE_PREFIX = "cosignature/v1\n"
#: Size of an RFC 6962 (SHA-256) root hash.
HASH_SIZE = 32
#: Largest tree size and timestamp accepted: 2^63 - 1.
MAX_UINT63 = 2**63 - 1
#: Start of the extension line that carries the checkpoint's signing time.
TIME_EXTENSION_PREFIX = "time "

_TIMESTAMP_SIZE = 8
_COSIGNATURE_SIZE = _TIMESTAMP_SIZE + SIGNATURE_SIZE
_CONTROL = re.compile(r"[\x00-\x1f]")
_CONTROL_EXCEPT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_DIGITS = len(str(MAX_UINT63))
_MAX_ECHO = 48


def _echo(text: str) -> str:
    if len(text) > _MAX_ECHO:
        return repr(text[:_MAX_ECHO]) + f"... ({len(text)} characters)"
    return repr(text)


def _parse_uint63(text: str, what: str, code: str, overflow_code: str) -> int:
    """A decimal with no sign, no leading zeros, ASCII digits only, below 2^63."""
    if _DECIMAL.fullmatch(text) is None:
        raise DecodeError(
            f"the {what} {_echo(text)} is not a decimal number without leading zeros", code=code
        )
    if len(text) > _MAX_DIGITS or int(text) > MAX_UINT63:
        raise DecodeError(f"the {what} {_echo(text)} does not fit in 63 bits", code=overflow_code)
    return int(text)


def _check_uint63(value: object, what: str, code: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"the {what} is an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_UINT63:
        raise DecodeError(f"the {what} {value} is not in [0, 2^63 - 1]", code=code)
    return value


def _line_problem(line: str) -> str | None:
    match = _CONTROL.search(line)
    if match is not None:
        return f"contains the control character U+{ord(match.group()):04X}"
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (lone surrogate)"
    return None


@dataclass(frozen=True, repr=False)
class WitnessKey(NoteKey):
    """The public key of a witness that makes Ed25519 cosignature/v1 cosignatures (type ``0x04``).

    Its key string is ``<name>+<8 hex key ID>+<base64(0x04 || public key)>``; use
    :meth:`parse`, :meth:`from_public_key` and :meth:`to_string` as with
    :class:`~attest_core.note.VerifierKey`.
    """

    KEY_TYPE: ClassVar[int] = COSIGNATURE_KEY_TYPE
    KIND: ClassVar[str] = "witness key"


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash, signing time and extension lines.

    Every value is checked on construction (``DecodeError`` with the same codes
    as :func:`parse_checkpoint_body`).
    """

    origin: str
    size: int
    root_hash: bytes
    time: int | None = None
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str):
            raise TypeError(f"the origin is a str, not {type(self.origin).__name__}")
        problem = _origin_problem(self.origin)
        if problem is not None:
            raise DecodeError(f"the origin {_echo(self.origin)} {problem}", code="checkpoint_bad_origin")
        _check_uint63(self.size, "tree size", "checkpoint_size_overflow")
        if not isinstance(self.root_hash, bytes):
            raise TypeError(f"the root hash is bytes, not {type(self.root_hash).__name__}")
        if len(self.root_hash) != HASH_SIZE:
            raise DecodeError(
                f"the root hash is {HASH_SIZE} bytes, got {len(self.root_hash)}",
                code="checkpoint_bad_root_hash",
            )
        if self.time is not None:
            _check_uint63(self.time, "time", "checkpoint_bad_time")
        if not isinstance(self.extensions, tuple):
            raise TypeError("the extension lines are a tuple of str")
        for line in self.extensions:
            if not isinstance(line, str):
                raise TypeError("the extension lines are a tuple of str")
            if not line:
                raise DecodeError("an extension line is empty", code="checkpoint_empty_line")
            problem = _line_problem(line)
            if problem is not None:
                raise DecodeError(
                    f"the extension line {_echo(line)} {problem}", code="checkpoint_control_char"
                )
            if line.startswith(TIME_EXTENSION_PREFIX):
                raise DecodeError(
                    "a 'time ' extension line is given as Checkpoint.time, not in extensions",
                    code="checkpoint_bad_time",
                )

    def body(self) -> str:
        """The note text that the log signs, ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        if self.time is not None:
            lines.append(f"{TIME_EXTENSION_PREFIX}{self.time}")
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)


def _origin_problem(origin: str) -> str | None:
    if not origin:
        return "is empty"
    if origin != origin.strip():
        return "has leading or trailing white space"
    return _line_problem(origin)


def parse_checkpoint_body(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint note text (the signed body, *not* the whole signed note).

    Raises :class:`~attest_core.errors.DecodeError` with code
    ``checkpoint_not_utf8``, ``checkpoint_control_char``,
    ``checkpoint_no_final_newline``, ``checkpoint_too_few_lines``,
    ``checkpoint_bad_origin``, ``checkpoint_bad_size``,
    ``checkpoint_size_overflow``, ``checkpoint_bad_root_hash``,
    ``checkpoint_bad_time`` or ``checkpoint_empty_line``.
    """
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"the checkpoint is not valid UTF-8 (byte offset {exc.start})", code="checkpoint_not_utf8"
            ) from exc
    if not isinstance(text, str):
        raise TypeError(f"a checkpoint body is str or bytes, not {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DecodeError(
            "the checkpoint is not valid UTF-8 (lone surrogate)", code="checkpoint_not_utf8"
        ) from exc
    match = _CONTROL_EXCEPT_NEWLINE.search(text)
    if match is not None:
        raise DecodeError(
            f"the checkpoint contains the control character U+{ord(match.group()):04X} "
            f"at offset {match.start()}; only newline is allowed",
            code="checkpoint_control_char",
        )
    if not text.endswith("\n"):
        raise DecodeError("the checkpoint does not end in a newline", code="checkpoint_no_final_newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise DecodeError(
            f"a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}",
            code="checkpoint_too_few_lines",
        )
    origin, size_text, root_text, *rest = lines
    problem = _origin_problem(origin)
    if problem is not None:
        raise DecodeError(f"the origin {_echo(origin)} {problem}", code="checkpoint_bad_origin")
    size = _parse_uint63(size_text, "tree size", "checkpoint_bad_size", "checkpoint_size_overflow")
    root_hash = b64decode_canonical(root_text)
    if root_hash is None:
        raise DecodeError(
            f"the root hash {_echo(root_text)} is not canonical standard base64",
            code="checkpoint_bad_root_hash",
        )
    if len(root_hash) != HASH_SIZE:
        raise DecodeError(
            f"the root hash is {HASH_SIZE} bytes, got {len(root_hash)}", code="checkpoint_bad_root_hash"
        )
    time: int | None = None
    for index, line in enumerate(rest):
        if not line:
            raise DecodeError(f"extension line {index + 1} is empty", code="checkpoint_empty_line")
        if line.startswith(TIME_EXTENSION_PREFIX):
            if index != 0:
                raise DecodeError(
                    "the 'time' extension line must be the first extension line, and appear once",
                    code="checkpoint_bad_time",
                )
            time = _parse_uint63(
                line[len(TIME_EXTENSION_PREFIX) :], "time", "checkpoint_bad_time", "checkpoint_bad_time"
            )
    extensions = tuple(rest[1:] if time is not None else rest)
    return Checkpoint(origin, size, root_hash, time, extensions)


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


def cosignature_message(checkpoint: Checkpoint, time: int) -> bytes:
    """What a cosignature/v1 witness signs: header, ``time <t>`` line, checkpoint body."""
    _check_uint63(time, "cosignature time", "bad_cosignature")
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
            f"the checkpoint origin {_echo(checkpoint.origin)} is not the log key name {log_key.name!r}",
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
