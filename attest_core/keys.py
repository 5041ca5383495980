"""Ed25519 keys: the signer interface and signature verification.

Key access goes through :class:`Signer`, so a secure element (ATECC608, TPM,
PKCS#11) can replace a file key without touching the code that signs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import nacl.bindings
import nacl.exceptions
import nacl.signing

from attest_core.errors import KeyFormatError

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64


@runtime_checkable
class Signer(Protocol):
    """Anything that holds an Ed25519 private key and can sign with it."""

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


class Ed25519Signer:
    """A :class:`Signer` backed by a 32-byte seed held in memory."""

    __slots__ = ("_key", "_public")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise KeyFormatError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature


def check_public_key(key: bytes) -> bytes:
    """Return ``key`` if it is 32 bytes that decode as an Ed25519 public key."""
    if len(key) != PUBLIC_KEY_SIZE:
        raise KeyFormatError(f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(key)}")
    try:
        nacl.signing.VerifyKey(key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise KeyFormatError(f"not an Ed25519 public key: {exc}") from exc
    return key


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``message``.

    Never raises for bad input: a wrong-length key or signature is simply invalid.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


def failed_signatures(items: Sequence[tuple[bytes, bytes]]) -> list[int]:
    """The positions of the ``(signature ‖ message, public key)`` pairs whose signature does not verify.

    Each item holds the 64-byte signature followed by the exact message bytes, as
    libsodium takes them: the check of :func:`verify_signature`, for many signatures at
    once, here or in a worker process (the function is picklable by reference).
    """
    check = nacl.bindings.crypto_sign_open
    failed: list[int] = []
    for position, (signed, public_key) in enumerate(items):
        if len(public_key) != PUBLIC_KEY_SIZE or len(signed) < SIGNATURE_SIZE:
            failed.append(position)
            continue
        try:
            check(signed, public_key)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
            failed.append(position)
    return failed


def fingerprint(public_key: bytes) -> str:
    """A short human-comparable fingerprint: SHA-256 of the key, first 16 hex digits in groups."""
    digest = hashlib.sha256(public_key).hexdigest()[:16]
    return ":".join(digest[i : i + 4] for i in range(0, 16, 4))
