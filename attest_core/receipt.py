"""Delivery receipts: how a device learns that its readings are safely in the log.

Once a device's readings are covered by a signed checkpoint, the gateway
publishes a receipt on the device's receipts topic.  A receipt is cumulative:
every reading of the device with a sequence number up to ``seq`` is in the log
(reading ``seq`` at ``log_index``) and covered by the checkpoint of
``tree_size`` leaves with ``root_hash``.  The device deletes those readings
from its outbox only after verifying the receipt's signature with the log key,
so a forged message on the broker cannot make it drop a reading.

Receipt v1::

    u8      version = 1
    text8   device_id
    u64     seq
    u64     log_index
    u64     tree_size          > log_index
    32      root_hash
    u64     time_ms            when the gateway issued it
    64      signature          Ed25519 by the log key over RECEIPT_SIGNATURE || the bytes above
"""

from __future__ import annotations

from dataclasses import dataclass

from attest_core import domains
from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.errors import DecodeError, SignatureError
from attest_core.keys import SIGNATURE_SIZE, Signer, verify_signature
from attest_core.reading import HASH_SIZE, check_time

RECEIPT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Receipt:
    device_id: str
    seq: int
    log_index: int
    tree_size: int
    root_hash: bytes
    time_ms: int

    def __post_init__(self) -> None:
        check_id(self.device_id, "device_id")
        check_u63(self.seq, "seq")
        check_u63(self.log_index, "log_index")
        check_u63(self.tree_size, "tree_size")
        if self.seq < 1:
            raise DecodeError("a receipt's seq starts at 1", code="out_of_range")
        if self.log_index >= self.tree_size:
            raise DecodeError(
                f"log index {self.log_index} is not inside a tree of {self.tree_size}", code="out_of_range"
            )
        if len(self.root_hash) != HASH_SIZE:
            raise DecodeError("a receipt's root hash is 32 bytes", code="bad_hash")
        check_time(self.time_ms, "time_ms")

    def body(self) -> bytes:
        return (
            Writer()
            .u8(RECEIPT_VERSION)
            .text8(self.device_id)
            .u64(self.seq)
            .u64(self.log_index)
            .u64(self.tree_size)
            .raw(self.root_hash)
            .u64(self.time_ms)
            .getvalue()
        )

    def sign(self, log_signer: Signer) -> bytes:
        """The receipt as published: body followed by the log key's signature."""
        body = self.body()
        return body + log_signer.sign(domains.RECEIPT_SIGNATURE + body)


def open_receipt(data: bytes, log_public_key: bytes) -> Receipt:
    """Decode a published receipt and check the log key's signature on it."""
    if len(data) <= SIGNATURE_SIZE:
        raise DecodeError(f"a receipt of {len(data)} bytes is too short", code="truncated")
    body, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    r = Reader(body, "receipt")
    version = r.u8("version")
    if version != RECEIPT_VERSION:
        raise DecodeError(f"receipt version {version} is not supported", code="bad_version")
    receipt = Receipt(
        r.ident("device_id"), r.u63("seq"), r.u63("log_index"), r.u63("tree_size"),
        r.raw(HASH_SIZE, "root_hash"), r.u63("time_ms"),
    )  # fmt: skip
    r.finish()
    if not verify_signature(log_public_key, domains.RECEIPT_SIGNATURE + body, signature):
        raise SignatureError("the receipt is not signed by the log key", code="bad_receipt_signature")
    return receipt
