"""Note keys: key names, key IDs and key strings (c2sp.org/signed-note).

The verifier key string is ``<name>+<8 hex key ID>+<base64(type || public key)>``;
the private key string of ``golang.org/x/mod/sumdb/note``,
``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || seed)>``, is how the gateway
stores its log key.  Signing and verifying notes with these keys is
:mod:`attest_core.note`'s.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Self

from attest_core.errors import KeyFormatError
from attest_core.keys import PUBLIC_KEY_SIZE, SEED_SIZE, Ed25519Signer, check_public_key
from attest_core.notetext import b64decode_canonical, b64encode, echo, utf8

if TYPE_CHECKING:
    from attest_core.note import NoteSignature

#: Signature type identifier byte of Ed25519 note signatures (c2sp.org/signed-note).
ED25519_KEY_TYPE = 0x01
#: Size in bytes of the key ID that starts every signature.
KEY_ID_SIZE = 4
#: The start of a ``golang.org/x/mod/sumdb/note`` private key string.
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"

# Names of the signature types a key string may carry, for error messages.
_KEY_TYPE_NAMES = {
    0x01: "an Ed25519 note key (type 0x01)",
    0x02: "an ECDSA witness key (type 0x02)",
    0x04: "an Ed25519 cosignature/v1 witness key (type 0x04)",
    0x05: "an RFC 6962 tree head key (type 0x05)",
    0x06: "an ML-DSA-44 cosignature key (type 0x06)",
}

_HEX_KEY_ID = re.compile(r"[0-9a-f]{8}")


def name_problem(name: str) -> str | None:
    if not name:
        return "is empty"
    for ch in name:
        if ch == "+":
            return "contains '+'"
        if ch.isspace():
            return f"contains the white space character U+{ord(ch):04X}"
        if ord(ch) < 0x20 or ch == "\x7f":
            return f"contains the control character U+{ord(ch):04X}"
    if utf8(name) is None:
        return "is not valid Unicode (lone surrogate)"
    return None


def check_key_name(name: str) -> str:
    """Return ``name`` if it is a valid note key name, else raise ``bad_key_name``.

    A key name is non-empty and holds no white space, no ``+`` and no control
    characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"a key name is a str, not {type(name).__name__}")
    problem = name_problem(name)
    if problem is not None:
        raise KeyFormatError(f"key name {echo(name)} {problem}", code="bad_key_name")
    return name


def key_id_for(name: str, key_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID: ``SHA-256(name || 0x0A || key_type || public_key)[:4]``."""
    check_key_name(name)
    if not 0 <= key_type <= 0xFF:
        raise ValueError(f"a signature type is one byte, got {key_type}")
    material = name.encode("utf-8") + b"\n" + bytes([key_type]) + public_key
    return hashlib.sha256(material).digest()[:KEY_ID_SIZE]


def key_string_parts(text: str, what: str) -> tuple[str, bytes, bytes]:
    """Split ``<name>+<hex id>+<base64>`` into (name, key id, decoded key material)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError(
            f"{what} must have the form <name>+<8 hex digits>+<base64>, "
            f"got {len(parts)} '+'-separated part(s)",
            code="bad_key_string",
        )
    name, hex_id, b64 = parts
    problem = name_problem(name)
    if problem is not None:
        raise KeyFormatError(f"{what}: the key name {echo(name)} {problem}", code="bad_key_name")
    if _HEX_KEY_ID.fullmatch(hex_id) is None:
        raise KeyFormatError(
            f"{what}: the key ID must be 8 lowercase hex digits, got {echo(hex_id)}", code="bad_key_string"
        )
    material = b64decode_canonical(b64)
    if material is None:
        raise KeyFormatError(f"{what}: the key is not canonical standard base64", code="bad_key_string")
    if not material:
        raise KeyFormatError(f"{what}: the key is empty", code="bad_key_string")
    return name, bytes.fromhex(hex_id), material


def check_key_type(what: str, got: int, want: int) -> None:
    if got != want:
        described = _KEY_TYPE_NAMES.get(got, f"a key of unknown type 0x{got:02x}")
        raise KeyFormatError(
            f"{what} is {described}, expected {_KEY_TYPE_NAMES.get(want, f'type 0x{want:02x}')}",
            code="bad_key_type",
        )


@dataclass(frozen=True, repr=False)
class NoteKey:
    """A named public key of one signature type, as used to verify note signatures.

    Do not use this class directly: use :class:`VerifierKey` (Ed25519 note
    signatures, type ``0x01``) or ``attest_core.checkpoint.WitnessKey``
    (cosignature/v1, type ``0x04``).  Two keys are equal when they are of the same
    class and have the same name and public key.
    """

    #: The signature type identifier byte of this kind of key.
    KEY_TYPE: ClassVar[int]
    #: What this kind of key is called in error messages.
    KIND: ClassVar[str] = "note key"

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if type(self) is NoteKey:
            raise TypeError("NoteKey is abstract: use VerifierKey or WitnessKey")
        check_key_name(self.name)
        if not isinstance(self.public_key, bytes):
            raise TypeError(f"a public key is bytes, not {type(self.public_key).__name__}")
        check_public_key(self.public_key)
        object.__setattr__(self, "key_id", key_id_for(self.name, self.KEY_TYPE, self.public_key))

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Self:
        """The key named ``name`` with the raw 32-byte Ed25519 ``public_key``."""
        return cls(name, public_key)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a key string ``<name>+<8 hex key ID>+<base64(type || key)>``.

        The key ID must be the one computed from the name, type and key, the type
        byte must be this class's type and the key must be 32 bytes.  Raises
        :class:`~attest_core.errors.KeyFormatError` (codes ``bad_key_string``,
        ``bad_key_name``, ``bad_key_type``, ``key_id_mismatch``).
        """
        if not isinstance(text, str):
            raise TypeError(f"a key string is a str, not {type(text).__name__}")
        what = f"{cls.KIND} string"
        if text.startswith(PRIVATE_KEY_PREFIX):
            raise KeyFormatError(
                f"{what}: this is a PRIVATE key string, expected a public one", code="bad_key_string"
            )
        name, key_id, material = key_string_parts(text, what)
        check_key_type(f"the {what}", material[0], cls.KEY_TYPE)
        public_key = material[1:]
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise KeyFormatError(
                f"{what}: an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}",
                code="bad_key_string",
            )
        key = cls(name, public_key)
        if key.key_id != key_id:
            raise KeyFormatError(
                f"{what}: the key ID {key_id.hex()} does not match the name and key "
                f"(computed {key.key_id.hex()})",
                code="key_id_mismatch",
            )
        return key

    def to_string(self) -> str:
        """The key string, ``<name>+<8 hex key ID>+<base64(type || key)>``."""
        material = bytes([self.KEY_TYPE]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{b64encode(material)}"

    def matches(self, signature: NoteSignature) -> bool:
        """True if ``signature`` claims to be by this key (same name and key ID)."""
        return signature.name == self.name and signature.key_id == self.key_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_string()!r})"


@dataclass(frozen=True, repr=False)
class VerifierKey(NoteKey):
    """The public key that verifies Ed25519 note signatures (signature type ``0x01``)."""

    KEY_TYPE: ClassVar[int] = ED25519_KEY_TYPE
    KIND: ClassVar[str] = "verifier key"


def encode_private_key(name: str, seed: bytes) -> str:
    """The ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`` string of an Ed25519 seed."""
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise KeyFormatError(f"an Ed25519 seed is {SEED_SIZE} bytes", code="bad_key")
    public_key = Ed25519Signer(seed).public_key
    key_id = key_id_for(name, ED25519_KEY_TYPE, public_key)
    material = bytes([ED25519_KEY_TYPE]) + seed
    return f"{PRIVATE_KEY_PREFIX}{name}+{key_id.hex()}+{b64encode(material)}"


def generate_private_key(name: str) -> str:
    """A fresh random Ed25519 key for ``name``, as a private key string."""
    check_key_name(name)
    return encode_private_key(name, Ed25519Signer.generate().seed)
