"""Delivery receipts and the MQTT topic layout."""

from __future__ import annotations

import pytest

from attest_core import domains
from attest_core.errors import DecodeError, SignatureError
from attest_core.receipt import Receipt, open_receipt
from attest_core.topics import device_of_readings_topic, readings_topic, receipts_topic, status_topic
from tests.support import T0, seeded_signer

LOG = seeded_signer("log key")
RECEIPT = Receipt("dev-1", 42, 1000, 1001, b"\x05" * 32, T0)


def test_receipt_round_trip() -> None:
    assert open_receipt(RECEIPT.sign(LOG), LOG.public_key) == RECEIPT


def test_receipt_forgeries_are_refused() -> None:
    data = RECEIPT.sign(LOG)
    with pytest.raises(SignatureError):
        open_receipt(data, seeded_signer("other").public_key)
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x20
        with pytest.raises((SignatureError, DecodeError)):
            open_receipt(bytes(tampered), LOG.public_key)
    # a log signature over the body without the domain prefix is not a receipt
    forged = RECEIPT.body() + LOG.sign(RECEIPT.body())
    with pytest.raises(SignatureError):
        open_receipt(forged, LOG.public_key)
    assert b"\x00" in domains.RECEIPT_SIGNATURE  # never a valid note text


def test_receipt_validation() -> None:
    with pytest.raises(DecodeError):
        Receipt("dev-1", 1, 5, 5, b"\x00" * 32, T0)
    with pytest.raises(DecodeError):
        Receipt("dev-1", 0, 1, 5, b"\x00" * 32, T0)
    with pytest.raises(DecodeError):
        open_receipt(b"short", LOG.public_key)
    with pytest.raises(DecodeError):
        open_receipt(b"\x02" + RECEIPT.sign(LOG)[1:], LOG.public_key)


def test_topics() -> None:
    assert readings_topic("dev-1") == "attest/v1/dev-1/readings"
    assert receipts_topic("dev-1") == "attest/v1/dev-1/receipts"
    assert status_topic("dev-1") == "attest/v1/dev-1/status"
    assert device_of_readings_topic("attest/v1/dev-1/readings") == "dev-1"
    for topic in ["attest/v1/dev-1/receipts", "attest/v2/dev-1/readings", "attest/v1/a/b/readings",
                  "attest/v1//readings", "attest/v1/bad device/readings", "x"]:  # fmt: skip
        assert device_of_readings_topic(topic) is None
