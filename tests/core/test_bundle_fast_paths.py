"""The verifier's fast paths give the results of the plain ones: decoding and base64.

Checking reading signatures in batches, here or elsewhere, is tested in
tests/verifier/test_bundle_jobs.py."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.bundle.parse import _canonical_b64, decode_b64
from attest_core.entries import ReadingEntry, SignedReading, decode_entry, decode_log_entry, encode_entry
from attest_core.errors import AttestError
from tests.core.test_bundle import KWH, Fleet
from tests.support import T0, TestDevice


def _outcome(fn: Any, *args: Any) -> tuple[Any, ...]:
    try:
        return ("ok", fn(*args))
    except AttestError as exc:
        return (type(exc).__name__, exc.code, str(exc))


# --- decoding once -----------------------------------------------------------------------------


def _reading_entry() -> bytes:
    device = TestDevice("dev-a", "charger-a")
    return encode_entry(ReadingEntry(device.reading(T0, 5 * KWH, power_mw=1_500_000).encode()))


def _as_entry(result: Any) -> Any:
    """What decode_entry would have returned for a decode_log_entry result."""
    if isinstance(result, SignedReading):
        return (result.key_id, result.payload, result.signature, result.reading)
    return result


def _entry_outcome(data: bytes) -> tuple[Any, ...]:
    outcome = _outcome(decode_entry, data)
    if outcome[0] == "ok" and isinstance(outcome[1], ReadingEntry):
        envelope = outcome[1].envelope
        return ("ok", (envelope.key_id, envelope.payload, envelope.signature, outcome[1].reading))
    return outcome


def test_a_reading_entry_is_taken_apart_in_one_go() -> None:
    data = _reading_entry()
    parts = decode_log_entry(data)
    assert isinstance(parts, SignedReading)
    entry = decode_entry(data)
    assert isinstance(entry, ReadingEntry)
    assert parts == (entry.envelope.key_id, entry.envelope.payload, entry.envelope.signature, entry.reading)
    # other bytes-like objects take the plain path to the same result
    assert decode_log_entry(bytearray(data)) == parts  # type: ignore[arg-type]
    assert decode_log_entry(memoryview(data)) == parts  # type: ignore[arg-type]


def test_other_entries_decode_as_before() -> None:
    fleet = Fleet(hours=1)
    for data in fleet.log.entries:
        if data[1] != 2:
            assert decode_log_entry(data) == decode_entry(data)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_fast_and_plain_entry_decoders_agree_on_changed_bytes(data: st.DataObject) -> None:
    raw = bytearray(_reading_entry())
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["set", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if action == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 80))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        if not raw:
            break
    mutated = bytes(raw)
    fast = _outcome(decode_log_entry, mutated)
    if fast[0] == "ok":
        fast = ("ok", _as_entry(fast[1]))
    assert fast == _entry_outcome(mutated)


@given(st.binary(max_size=200))
def test_fast_and_plain_entry_decoders_agree_on_random_bytes(data: bytes) -> None:
    fast = _outcome(decode_log_entry, data)
    if fast[0] == "ok":
        fast = ("ok", _as_entry(fast[1]))
    assert fast == _entry_outcome(data)


@given(st.binary(max_size=40), st.data())
def test_fast_base64_accepts_only_what_decode_b64_accepts(raw: bytes, data: st.DataObject) -> None:
    text = base64.b64encode(raw).decode()
    assert _canonical_b64(text) == raw == decode_b64(text, "x")
    if text:
        pos = data.draw(st.integers(0, len(text) - 1))
        char = data.draw(st.sampled_from("AQgw+/=\n -_é0"))
        for variant in (text[:pos] + char + text[pos + 1 :], text[:pos] + text[pos + 1 :], text + "="):
            fast = _canonical_b64(variant)
            plain = _outcome(decode_b64, variant, "x")
            assert fast is None or plain == ("ok", fast), (variant, plain)
