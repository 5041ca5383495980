"""Every domain-separation string of the protocol, in one place.

Each signature and each hash outside the Merkle tree is computed over one of
these prefixes followed by the exact bytes concerned.  Each prefix ends in a
NUL byte, so no prefix is a prefix of another and no message of one kind can be
read as a message of another kind.  (Merkle tree hashes use RFC 6962's own
0x00 / 0x01 prefixes; checkpoints and cosignatures use the C2SP formats.)
"""

from __future__ import annotations

import hashlib

READING_SIGNATURE = b"iot-attest/v1 reading\x00"
"""A device signs this prefix followed by the exact reading payload bytes."""

ENROLMENT_SIGNATURE = b"iot-attest/v1 enrolment\x00"
"""A device proves possession of its key by signing its enrolment statement."""

ROTATION_AUTHORIZE_SIGNATURE = b"iot-attest/v1 key-rotation authorize\x00"
"""The old device key authorizes a key rotation statement."""

ROTATION_ACCEPT_SIGNATURE = b"iot-attest/v1 key-rotation accept\x00"
"""The new device key proves possession by signing the same rotation statement."""

READING_HASH = b"iot-attest/v1 reading-hash\x00"
"""Chain link: the hash of a reading payload, carried by the next reading."""

ENROLMENT_HASH = b"iot-attest/v1 enrolment-hash\x00"
"""Chain anchor: the hash of the enrolment statement, carried by reading 1."""

DEVICE_KEY_ID = b"iot-attest/v1 device-key-id\x00"
"""The 8-byte key id in a reading envelope is a hash of the public key under this prefix."""


RECEIPT_SIGNATURE = b"iot-attest/v1 receipt\x00"
"""The gateway signs delivery receipts with the log key under this prefix.

The prefix holds a NUL byte, which a C2SP note text never contains, so a
receipt signature can never be mistaken for a checkpoint signature."""

ANCHOR_NOTE_HASH = b"iot-attest/v1 anchor-note\x00"
"""An anchor on chain records the hash of the anchored checkpoint's signed note under this prefix.

The note is hashed as the exact UTF-8 bytes the gateway signed and served (text, blank line and
every signature line), so the anchor binds the log's signature too, not only the tree head."""


def tagged_hash(domain: bytes, data: bytes) -> bytes:
    """SHA-256 of ``domain`` followed by ``data``."""
    return hashlib.sha256(domain + data).digest()
