"""The ingest decision for one message, every refusal reason (pure: no database)."""

from __future__ import annotations

import pytest

from attest_core import domains
from attest_core.chain import ChainState
from attest_core.device import RotationStatement, sign_rotation
from attest_core.entries import RevocationEntry, RotationEntry
from attest_core.reading import MAX_ENVELOPE_SIZE, Envelope, device_key_id, reading_hash, sign_reading
from attest_core.registry import Registry
from gateway.ingest import Accepted, Message, check
from gateway.quarantine import Refusal
from tests.support import HOUR, T0, TestDevice, seeded_signer

NOW = T0 + 10 * HOUR
SKEW = 300_000


@pytest.fixture
def world() -> tuple[Registry, TestDevice]:
    registry = Registry()
    device = TestDevice("dev-1", "charger-1")
    registry.enrol(0, device.enrolment_entry())
    return registry, device


def topic(device_id: str = "dev-1") -> str:
    return f"attest/v1/{device_id}/readings"


def reason(outcome: Accepted | Refusal) -> str:
    return "accepted" if isinstance(outcome, Accepted) else outcome.reason


def test_a_good_reading_is_accepted(world: tuple[Registry, TestDevice]) -> None:
    registry, device = world
    envelope = device.reading(T0, 1000)
    outcome = check(Message(topic(), envelope.encode()), registry, NOW, SKEW)
    assert isinstance(outcome, Accepted)
    assert (outcome.device_id, outcome.seq, outcome.asset_id, outcome.energy_mwh) == (
        "dev-1",
        1,
        "charger-1",
        1000,
    )
    assert outcome.envelope == envelope.encode()


def test_refusals(world: tuple[Registry, TestDevice]) -> None:
    registry, device = world
    good = device.reading(T0, 1000).encode()
    cases: dict[str, Message] = {
        "too_large": Message(topic(), b"\x01" * (MAX_ENVELOPE_SIZE + 1)),
        "bad_topic": Message("attest/v1/dev-1/receipts", good),
        "truncated": Message(topic(), good[:-3]),
        "trailing_bytes": Message(topic(), good + b"\x00"),
        "bad_version": Message(topic(), b"\x07" + good[1:]),
        "topic_mismatch": Message(topic("dev-2"), good),
    }
    for expected, message in cases.items():
        outcome = check(message, registry, NOW, SKEW)
        assert reason(outcome) == expected, (expected, outcome)

    stranger = TestDevice("dev-9", "charger-9")
    assert (
        reason(check(Message(topic("dev-9"), stranger.reading(T0, 1).encode()), registry, NOW, SKEW))
        == "unknown_device"
    )

    liar = TestDevice("dev-1", "charger-2")  # same id, another asset (and key)
    liar.signer = device.signer
    liar.state = ChainState(1, b"\x00" * 32)
    assert reason(check(Message(topic(), liar.reading(T0, 1).encode()), registry, NOW, SKEW)) == "wrong_asset"

    other_key = seeded_signer("someone else")
    forged = sign_reading(device.reading(T0 + 1, 2).reading(), other_key)
    assert reason(check(Message(topic(), forged.encode()), registry, NOW, SKEW)) == "unknown_key_id"

    honest = device.reading(T0 + 2, 3)
    bad_sig = Envelope(honest.key_id, honest.payload, bytes(64))
    assert reason(check(Message(topic(), bad_sig.encode()), registry, NOW, SKEW)) == "bad_signature"

    future = device.reading(NOW + SKEW + 1, 4)
    outcome = check(Message(topic(), future.encode()), registry, NOW, SKEW)
    assert reason(outcome) == "future_time"
    assert isinstance(outcome, Refusal)
    assert "in the future" in outcome.detail
    just_inside = device.reading(NOW + SKEW, 5)
    assert reason(check(Message(topic(), just_inside.encode()), registry, NOW, SKEW)) == "accepted"


def test_rotated_and_revoked_devices(world: tuple[Registry, TestDevice]) -> None:
    registry, device = world
    first = device.reading(T0, 1)
    new = seeded_signer("dev-1 new key")
    data, old_sig, new_sig = sign_rotation(
        RotationStatement("dev-1", device.signer.public_key, new.public_key, 3, T0), device.signer, new
    )
    registry.rotate(1, RotationEntry(data, old_sig, new_sig, "installer-1", T0))
    second = device.reading(T0 + 1, 2)  # seq 2: still the old key
    old_signer, device.signer = device.signer, new
    third = device.reading(T0 + 2, 3)  # seq 3: the new key
    device.signer = old_signer
    stale = device.reading(T0 + 3, 4)  # seq 4 with the old key: refused
    for envelope, expected in [(first, "accepted"), (second, "accepted"), (third, "accepted"),
                               (stale, "key_not_valid_for_seq")]:  # fmt: skip
        assert reason(check(Message(topic(), envelope.encode()), registry, NOW, SKEW)) == expected
    registry.revoke(2, RevocationEntry("dev-1", 3, "stolen", "installer-1", T0))
    device.signer = new
    after = device.reading(T0 + 4, 5)
    assert reason(check(Message(topic(), after.encode()), registry, NOW, SKEW)) == "revoked_device"
    assert reason(check(Message(topic(), third.encode()), registry, NOW, SKEW)) == "accepted"


def test_a_reading_far_beyond_the_chain_is_turned_away_before_its_signature_is_checked(
    world: tuple[Registry, TestDevice],
) -> None:
    registry, device = world
    readings = [device.reading(T0 + i, i) for i in range(1, 12)]  # seq 1..11
    forged = sign_reading(readings[10].reading(), seeded_signer("not the device"))  # seq 11, bad signature
    next_seq = {"dev-1": 2}  # reading 1 is logged

    def decide(envelope: Envelope) -> str:
        return reason(check(Message(topic(), envelope.encode()), registry, NOW, SKEW, next_seq, max_ahead=9))

    assert decide(readings[9]) == "accepted"  # seq 10: 8 beyond the next one, within the limit
    assert decide(readings[10]) == "too_far_ahead"  # seq 11: 9 beyond
    assert decide(forged) == "too_far_ahead"  # refused before its signature is looked at
    outcome = check(Message(topic(), readings[10].encode()), registry, NOW, SKEW, next_seq, max_ahead=9)
    assert isinstance(outcome, Refusal)
    assert "reading 11 of device dev-1 is 9 beyond the next one its chain needs (2)" in outcome.detail
    assert decide(readings[0]) == "accepted"  # behind the chain: a duplicate, sorted out later
    assert (
        reason(check(Message(topic(), readings[10].encode()), registry, NOW, SKEW)) == "accepted"
    )  # no limit


def test_a_message_kept_only_in_part_is_too_large_even_if_its_first_bytes_are_a_good_reading(
    world: tuple[Registry, TestDevice],
) -> None:
    """The MQTT link keeps only the first bytes of a packet over its size limit and says how
    large it was: those bytes can be a whole good envelope, and the message is still refused."""
    registry, device = world
    good = device.reading(T0, 1000).encode()
    outcome = check(Message(topic(), good, size=5_000_000), registry, NOW, SKEW)
    assert isinstance(outcome, Refusal)
    assert outcome.reason == "too_large"
    assert outcome.detail == f"message of 5000000 bytes exceeds the {MAX_ENVELOPE_SIZE}-byte limit"


def test_v2_and_v1_payloads_are_accepted(world: tuple[Registry, TestDevice]) -> None:
    """A v2 gateway takes v2 readings and the v1 readings of a v1 agent (and of one upgraded since)."""
    registry, device = world
    v1 = device.reading(T0, 1000, v1=True)
    v2 = device.reading(T0 + HOUR, 2000)
    assert (v1.reading().version, v2.reading().version) == (1, 2)
    for seq, envelope in ((1, v1), (2, v2)):
        outcome = check(Message(topic(), envelope.encode()), registry, NOW, SKEW)
        assert isinstance(outcome, Accepted), outcome
        assert outcome.seq == seq
        assert outcome.payload_hash == reading_hash(envelope.payload)


def test_a_reading_with_an_unknown_extension_is_refused(world: tuple[Registry, TestDevice]) -> None:
    registry, device = world
    payload = device.reading(T0, 1000).payload
    # the extension count (0) sits just before prev_hash: make it one extension of type 7
    changed = payload[:-33] + b"\x01\x07\x00\x00" + payload[-32:]
    # signed by the device itself: the refusal is about the payload, not the signature
    signature = device.signer.sign(domains.READING_SIGNATURE + changed)
    forged = Envelope(device_key_id(device.signer.public_key), changed, signature)
    outcome = check(Message(topic(), forged.encode()), registry, NOW, SKEW)
    assert reason(outcome) == "unknown_extension"
