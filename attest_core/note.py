"""C2SP signed notes (https://c2sp.org/signed-note): parsing, opening, signing.

A signed note is a text ending in a newline, a blank line, and one or more
signature lines::

    <text, ending in "\\n">
    <blank line>
    — <key name> <base64(4-byte key ID || signature)>

This module implements Ed25519 note signatures (signature type ``0x01``); the
keys and their strings are :mod:`attest_core.notekey`'s (re-exported here), the
text rules shared with checkpoints :mod:`attest_core.notetext`'s.  Parsing, opening and
signing stay in this one module (about 400 lines): they share the signature-line
rules and are read together.

The API separates the three steps on purpose:

* :func:`parse_note` only checks the syntax and never says anything about
  authenticity;
* :func:`open_note` parses *and* verifies against a list of trusted
  :class:`VerifierKey` objects and returns a :class:`VerifiedNote` (code should
  only ever trust a ``VerifiedNote`` that came from it);
* :func:`sign_note` produces a note with one signature line per :class:`NoteSigner`.

Rules applied when opening (all from the specification):

* signatures whose (key name, key ID) pair matches no trusted key are ignored;
* a signature whose name *and* key ID match a trusted key must verify, otherwise
  the whole note is rejected (:class:`~attest_core.errors.SignatureError`);
* at least one trusted key must have signed
  (:class:`~attest_core.errors.VerificationError`, code ``no_known_signature``);
* at most :data:`MAX_SIGNATURES` signature lines are accepted (the specification
  requires accepting at least 16).

Base64 is the standard alphabet with padding and must be *canonical*: the text
must be exactly what re-encoding the decoded bytes gives (so unused padding bits
must be zero).  Everything is pure computation; no function here performs I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from attest_core.errors import (
    DecodeError,
    KeyFormatError,
    SignatureError,
    VerificationError,
)
from attest_core.keys import (
    SEED_SIZE,
    SIGNATURE_SIZE,
    Ed25519Signer,
    Signer,
    verify_signature,
)
from attest_core.notekey import (
    ED25519_KEY_TYPE,
    KEY_ID_SIZE,
    PRIVATE_KEY_PREFIX,
    NoteKey,
    VerifierKey,
    check_key_name,
    check_key_type,
    encode_private_key,
    generate_private_key,
    key_id_for,
    key_string_parts,
    name_problem,
)
from attest_core.notetext import b64decode_canonical, b64encode, check_lines, decode_text, echo, utf8

__all__ = [
    "ED25519_KEY_TYPE",
    "KEY_ID_SIZE",
    "MAX_SIGNATURES",
    "PRIVATE_KEY_PREFIX",
    "SIGNATURE_PREFIX",
    "Note",
    "NoteKey",
    "NoteSignature",
    "NoteSigner",
    "VerifiedNote",
    "VerifierKey",
    "add_signature_lines",
    "b64decode_canonical",
    "check_key_name",
    "check_trusted_keys",
    "encode_private_key",
    "generate_private_key",
    "key_id_for",
    "open_note",
    "parse_note",
    "sign_note",
]

#: The most signature lines a note may carry; more is rejected (``too_many_signatures``).
MAX_SIGNATURES = 100
#: The start of every signature line: an em dash (U+2014) and a space.
SIGNATURE_PREFIX = "\u2014 "


def _check_text(text: str) -> bytes:
    """Check a note text (the signed part) and return its UTF-8 encoding."""
    if not isinstance(text, str):
        raise TypeError(f"a note text is a str, not {type(text).__name__}")
    raw = utf8(text)
    if raw is None:
        raise DecodeError("the note text is not valid UTF-8 (lone surrogate)", code="note_not_utf8")
    if not text:
        raise DecodeError("the note text is empty", code="note_empty_text")
    check_lines(text, "the note text", "note")
    return raw


K = TypeVar("K", bound=NoteKey)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: the key name, 4-byte key ID and signature bytes.

    Parsing a signature line says nothing about whether it is valid.
    """

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != KEY_ID_SIZE:
            raise DecodeError(f"a key ID is {KEY_ID_SIZE} bytes", code="note_bad_signature_line")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise DecodeError("a signature is at least one byte", code="note_bad_signature_line")

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse ``— <name> <base64>``, with or without the final newline."""
        if not isinstance(line, str):
            raise TypeError(f"a signature line is a str, not {type(line).__name__}")
        body = line.removesuffix("\n")
        if not body.startswith(SIGNATURE_PREFIX):
            raise DecodeError(
                f"signature line {echo(body)} does not start with an em dash (U+2014) and a space",
                code="note_bad_signature_line",
            )
        fields = body[len(SIGNATURE_PREFIX) :].split(" ")
        if len(fields) != 2:
            raise DecodeError(
                f"signature line {echo(body)} is not '— <key name> <base64 signature>'",
                code="note_bad_signature_line",
            )
        name, b64 = fields
        problem = name_problem(name)
        if problem is not None:
            raise DecodeError(
                f"signature line {echo(body)}: the key name {problem}", code="note_bad_signature_line"
            )
        raw = b64decode_canonical(b64)
        if raw is None:
            raise DecodeError(
                f"signature line {echo(body)}: the signature is not canonical standard base64",
                code="note_bad_signature_line",
            )
        if len(raw) <= KEY_ID_SIZE:
            raise DecodeError(
                f"signature line {echo(body)}: {len(raw)} bytes is too short for a key ID and a signature",
                code="note_bad_signature_line",
            )
        return cls(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])

    def to_line(self) -> str:
        """The signature line, including its final newline."""
        return f"{SIGNATURE_PREFIX}{self.name} {b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, *unverified* signed note: its text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)
        if not isinstance(self.signatures, tuple):
            raise TypeError("Note.signatures is a tuple of NoteSignature")
        if not self.signatures:
            raise DecodeError("a signed note has at least one signature", code="note_no_signatures")
        if len(self.signatures) > MAX_SIGNATURES:
            raise DecodeError(
                f"the note has {len(self.signatures)} signatures, more than the limit of {MAX_SIGNATURES}",
                code="too_many_signatures",
            )
        for sig in self.signatures:
            if not isinstance(sig, NoteSignature):
                raise TypeError("Note.signatures is a tuple of NoteSignature")

    def to_string(self) -> str:
        """The signed note: text, blank line, signature lines."""
        return self.text + "\n" + "".join(sig.to_line() for sig in self.signatures)


@dataclass(frozen=True)
class VerifiedNote:
    """A note that :func:`open_note` verified.

    ``verified_keys`` are the trusted keys whose signatures verified (each once, in
    the order of the verifier list); ``signatures`` are all signature lines of the
    note as parsed, including those of unknown keys, which were *not* verified.
    """

    text: str
    verified_keys: tuple[VerifierKey, ...]
    signatures: tuple[NoteSignature, ...]

    @property
    def verified_names(self) -> tuple[str, ...]:
        """The names of the trusted keys that signed the note."""
        return tuple(key.name for key in self.verified_keys)


def parse_note(data: str | bytes) -> Note:
    """Parse a signed note *without verifying anything*.

    Raises :class:`~attest_core.errors.DecodeError` with code ``note_not_utf8``,
    ``note_control_char``, ``note_no_final_newline``, ``note_no_signatures``,
    ``too_many_signatures`` or ``note_bad_signature_line``.
    """
    text = decode_text(data, "the note", "a note", "note_not_utf8")
    if not text:
        raise DecodeError("the note is empty", code="note_no_signatures")
    check_lines(text, "the note", "note")
    split = text.rfind("\n\n")
    if split < 0:
        raise DecodeError(
            "the note has no blank line separating the text from the signatures", code="note_no_signatures"
        )
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise DecodeError("the note has no signature lines after its blank line", code="note_no_signatures")
    lines = block.split("\n")[:-1]  # block ends in "\n"
    if len(lines) > MAX_SIGNATURES:
        raise DecodeError(
            f"the note has {len(lines)} signature lines, more than the limit of {MAX_SIGNATURES}",
            code="too_many_signatures",
        )
    return Note(body, tuple(NoteSignature.parse_line(line) for line in lines))


def check_trusted_keys(keys: Sequence[K], cls: type[K], what: str) -> dict[tuple[str, bytes], K]:
    """Index trusted keys of class ``cls`` by (name, key ID).

    Equal duplicates are merged; two different keys with the same name and key ID
    raise :class:`~attest_core.errors.KeyFormatError` (code ``ambiguous_key``).  A
    single key, or an element of the wrong class, is a ``TypeError``.
    """
    if isinstance(keys, NoteKey | str | bytes):
        raise TypeError(f"{what} is a sequence of {cls.__name__}, not a single {type(keys).__name__}")
    index: dict[tuple[str, bytes], K] = {}
    for key in keys:
        if not isinstance(key, cls):
            raise TypeError(f"{what} must hold {cls.__name__} objects, got {type(key).__name__}")
        known = index.setdefault((key.name, key.key_id), key)
        if known != key:
            raise KeyFormatError(
                f"two different trusted keys share the name {key.name!r} and key ID {key.key_id.hex()}",
                code="ambiguous_key",
            )
    return index


def open_note(data: str | bytes, verifiers: Sequence[VerifierKey]) -> VerifiedNote:
    """Parse a signed note and verify it against the trusted ``verifiers``.

    Signatures of unknown keys are ignored.  Raises the errors of
    :func:`parse_note`; :class:`~attest_core.errors.SignatureError` (code
    ``bad_signature``) if a signature by a trusted key does not verify;
    :class:`~attest_core.errors.VerificationError` (code ``no_known_signature``) if
    no trusted key signed; :class:`~attest_core.errors.KeyFormatError` (code
    ``ambiguous_key``) if two different trusted keys share a name and key ID.
    """
    index = check_trusted_keys(verifiers, VerifierKey, "verifiers")
    note = parse_note(data)
    message = note.text.encode("utf-8")
    verified: dict[tuple[str, bytes], VerifierKey] = {}
    for sig in note.signatures:
        key = index.get((sig.name, sig.key_id))
        if key is None:
            continue
        if not verify_signature(key.public_key, message, sig.signature):
            raise SignatureError(f"the note signature by {key.name}+{key.key_id.hex()} does not verify")
        verified[(sig.name, sig.key_id)] = key
    if not verified:
        trusted = ", ".join(f"{k.name}+{k.key_id.hex()}" for k in index.values()) or "none"
        raise VerificationError(
            f"the note carries no signature by a trusted key (trusted: {trusted})", code="no_known_signature"
        )
    ordered = tuple(key for ident, key in index.items() if ident in verified)
    return VerifiedNote(note.text, ordered, note.signatures)


class NoteSigner:
    """Signs note texts with an Ed25519 :class:`~attest_core.keys.Signer` under a key name."""

    __slots__ = ("_key", "_signer")

    def __init__(self, name: str, signer: Signer) -> None:
        check_key_name(name)
        if not isinstance(signer, Signer):
            raise TypeError(f"signer must implement attest_core.keys.Signer, got {type(signer).__name__}")
        self._key = VerifierKey(name, signer.public_key)
        self._signer = signer

    @classmethod
    def from_private_key(cls, text: str) -> NoteSigner:
        """A signer from a ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`` string.

        Raises :class:`~attest_core.errors.KeyFormatError`; messages never include
        the secret part.
        """
        if not isinstance(text, str):
            raise TypeError(f"a private key string is a str, not {type(text).__name__}")
        what = "private key string"
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFormatError(f"a {what} starts with {PRIVATE_KEY_PREFIX!r}", code="bad_key_string")
        name, key_id, material = key_string_parts(text[len(PRIVATE_KEY_PREFIX) :], what)
        check_key_type(f"the {what}", material[0], ED25519_KEY_TYPE)
        seed = material[1:]
        if len(seed) != SEED_SIZE:
            raise KeyFormatError(
                f"{what}: an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}", code="bad_key_string"
            )
        signer = cls(name, Ed25519Signer(seed))
        if signer.key_id != key_id:
            raise KeyFormatError(
                f"{what}: the key ID {key_id.hex()} does not match the name and key", code="key_id_mismatch"
            )
        return signer

    @property
    def name(self) -> str:
        return self._key.name

    @property
    def key_id(self) -> bytes:
        return self._key.key_id

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def verifier_key(self) -> VerifierKey:
        """The public :class:`VerifierKey` that verifies this signer's signatures."""
        return self._key

    @property
    def signer(self) -> Signer:
        """The underlying Ed25519 signer (the gateway also signs receipts with the log key)."""
        return self._signer

    def sign(self, text: str) -> NoteSignature:
        """Sign a note text (which must end in a newline) and return the signature.

        The signature is checked before it is returned, so a faulty signer (for
        example a secure element returning garbage) raises
        :class:`~attest_core.errors.SignatureError` instead of producing a bad note.
        """
        message = _check_text(text)
        signature = self._signer.sign(message)
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise SignatureError(f"the signer for {self.name} returned a malformed signature")
        if not verify_signature(self.public_key, message, signature):
            raise SignatureError(f"the signer for {self.name} returned a signature that does not verify")
        return NoteSignature(self.name, self.key_id, signature)

    def __repr__(self) -> str:
        return f"NoteSigner({self._key.to_string()!r})"


def sign_note(text: str, *signers: NoteSigner) -> str:
    """Sign ``text`` with every signer and return the signed note.

    ``text`` must be non-empty, valid UTF-8, free of control characters other than
    newline, and end in a newline (codes ``note_empty_text``, ``note_not_utf8``,
    ``note_control_char``, ``note_no_final_newline``).
    """
    _check_text(text)
    if not signers:
        raise ValueError("sign_note needs at least one NoteSigner")
    if len(signers) > MAX_SIGNATURES:
        raise ValueError(f"a note carries at most {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, bytes]] = set()
    signatures = []
    for signer in signers:
        if not isinstance(signer, NoteSigner):
            raise TypeError(f"signers must be NoteSigner objects, got {type(signer).__name__}")
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise ValueError(f"the key {signer.name}+{signer.key_id.hex()} is given twice")
        seen.add(ident)
        signatures.append(signer.sign(text))
    return Note(text, tuple(signatures)).to_string()


def add_signature_lines(note: str | bytes, lines: Iterable[str]) -> str:
    """Append signature lines (e.g. witness cosignatures) to a signed note.

    The note and every line are parsed (not verified); a line identical to one
    already present is not added twice.  Lines may omit their final newline.
    """
    parsed = parse_note(note)
    if isinstance(lines, str):
        raise TypeError("lines is an iterable of signature lines, not a single str")
    signatures = list(parsed.signatures)
    for line in lines:
        sig = NoteSignature.parse_line(line)
        if sig not in signatures:
            signatures.append(sig)
    return Note(parsed.text, tuple(signatures)).to_string()
