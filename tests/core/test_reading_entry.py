"""The gateway's hot-path forms of a reading entry are the entry encoding itself.

``reading_entry_bytes`` (what the gateway logs and serves) and ``PREV_HASH_IN_ENVELOPE`` (how the
sequencer links chains) are shortcuts around the full encoder and decoder: they must give the very
same bytes for every envelope a log can hold.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.entries import (
    PREV_HASH_IN_ENVELOPE,
    ReadingEntry,
    decode_entry,
    encode_entry,
    reading_entry_bytes,
)
from attest_core.reading import MAX_ENVELOPE_SIZE, Status, decode_envelope, decode_payload
from tests.support import T0, TestDevice


@settings(max_examples=60, deadline=None)
@given(
    readings=st.integers(1, 4),
    energy=st.integers(0, 2**63 - 1),
    power=st.none() | st.integers(-(2**63), 2**63 - 1),
    status=st.sampled_from([Status.OK, Status.POWER_UP | Status.SIMULATED, Status.TAMPER]),
    ids=st.tuples(st.integers(1, 64), st.integers(1, 64)),
)
def test_the_fast_reading_entry_is_the_encoded_entry(
    readings: int, energy: int, power: int | None, status: Status, ids: tuple[int, int]
) -> None:
    device = TestDevice("d" * ids[0], "a" * ids[1])
    for n in range(readings):
        envelope = device.reading(T0 + n, energy, power_mw=power, status=status).encode()
        data = reading_entry_bytes(envelope)
        assert data == encode_entry(ReadingEntry(envelope))
        entry = decode_entry(data)
        assert isinstance(entry, ReadingEntry)
        assert entry.envelope_bytes == envelope
        prev_hash = decode_payload(decode_envelope(envelope).payload).prev_hash
        assert envelope[PREV_HASH_IN_ENVELOPE] == prev_hash


@given(st.binary(max_size=MAX_ENVELOPE_SIZE))
def test_the_fast_reading_entry_frames_any_bytes_as_the_encoder_does(envelope: bytes) -> None:
    assert reading_entry_bytes(envelope) == encode_entry(ReadingEntry(envelope))
