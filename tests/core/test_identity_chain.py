"""Each asset's identity entries form a chain the claim names: leaving one out of a bundle (a
device of the asset, a rotation, a revocation) is caught offline."""

from __future__ import annotations

import dataclasses

import pytest

from attest_core.bundle import verify_bundle
from attest_core.device import RotationStatement, sign_rotation
from attest_core.entries import (
    IDENTITY_V2,
    ClaimEntry,
    EnrolmentEntry,
    RevocationEntry,
    RevokerRole,
    RotationEntry,
    decode_entry,
    encode_entry,
)
from attest_core.errors import DecodeError
from attest_core.identitychain import IdentityHeads, LoggedIdentity, check_identity_chain
from attest_core.verdict import EvidenceKind
from tests.support import DAY, HOUR, T0, MemoryLog, TestDevice, flat_claim, seeded_signer

MINUTE = 60_000


def codes(result: object) -> list[str]:
    return [f.code for f in result.evaluation.findings if f.severity.value != "info"]  # type: ignore[attr-defined]


def build(v1_first: bool = False) -> tuple[MemoryLog, dict[str, list[int]], int]:
    """Asset a: two devices, the second's key rotated and then revoked; asset b: one device."""
    log = MemoryLog()
    one, two, other = TestDevice("dev-a1", "a"), TestDevice("dev-a2", "a"), TestDevice("dev-b", "b")
    at: dict[str, list[int]] = {"dev-a1": [], "dev-a2": [], "dev-b": []}
    at["dev-a1"].append(log.enrol(one, v1=v1_first))
    at["dev-a2"].append(log.enrol(two))
    at["dev-b"].append(log.enrol(other))
    for n in range(3):
        for d, start in ((one, T0), (two, T0 + 2 * HOUR), (other, T0)):  # dev-a2 after dev-a1
            at[d.device_id].append(log.append_reading(d.reading(start + n * 10 * MINUTE, n * 1000)))
    for d in (one, other):  # a reading after the period proves each device's end edge
        at[d.device_id].append(log.append_reading(d.reading(T0 + DAY, 3000)))
    new = seeded_signer("dev-a2 new")
    data, old_sig, new_sig = sign_rotation(
        RotationStatement("dev-a2", two.signer.public_key, new.public_key, 4, T0), two.signer, new
    )
    at["dev-a2"].append(log.append_identity(RotationEntry(data, old_sig, new_sig, "installer-1", T0), "a"))
    two.signer = new
    at["dev-a2"].append(log.append_reading(two.reading(T0 + 2 * HOUR + 30 * MINUTE, 3000)))
    revocation = RevocationEntry(
        "dev-a2", 4, "retired", "installer-1", T0 + 3 * HOUR, 0, RevokerRole.INSTALLER
    )
    at["dev-a2"].append(log.append_identity(revocation, "a"))
    claim = log.file_claim(flat_claim(("a", "b")))
    return log, at, claim


def bundle_without(log: MemoryLog, at: dict[str, list[int]], claim: int, *left_out: int) -> bytes:
    indices = [i for items in at.values() for i in items if i not in left_out]
    return log.bundle_bytes(claim, indices, EvidenceKind.FULL)


def test_identity_entries_are_chained_per_asset_and_named_by_the_claim() -> None:
    log, at, claim = build()
    entries = [decode_entry(log.entries[i]) for i in (at["dev-a1"][0], at["dev-a2"][0], at["dev-b"][0])]
    assert all(isinstance(e, EnrolmentEntry) and e.version == IDENTITY_V2 for e in entries)
    a1, a2, b = entries
    assert isinstance(a1, EnrolmentEntry)
    assert isinstance(a2, EnrolmentEntry)
    assert isinstance(b, EnrolmentEntry)
    assert a1.asset_link is None  # the first of asset a
    assert b.asset_link is None
    assert a2.asset_link == log.leaves[at["dev-a1"][0]]
    result = verify_bundle(bundle_without(log, at, claim), log.key)
    assert result.backed, result.evaluation.findings
    assert "identity_omitted" not in codes(result)


@pytest.mark.parametrize("what", ["other device", "rotation", "revocation"])
def test_leaving_out_an_entry_the_evaluation_depends_on_is_caught(what: str) -> None:
    log, at, claim = build()
    if what == "other device":  # its enrolment and all its readings: a clean-looking bundle
        result = verify_bundle(bundle_without(log, at, claim, *at["dev-a2"]), log.key)
    elif what == "rotation":  # and the reading the new key signed
        result = verify_bundle(bundle_without(log, at, claim, at["dev-a2"][-3], at["dev-a2"][-2]), log.key)
    else:
        result = verify_bundle(bundle_without(log, at, claim, at["dev-a2"][-1]), log.key)
    assert not result.backed
    assert "identity_omitted" in [f.code for f in result.evaluation.fatal]


def test_a_chain_reaching_a_v1_entry_ends_there_with_a_warning() -> None:
    log, at, claim = build(v1_first=True)
    result = verify_bundle(bundle_without(log, at, claim), log.key)
    assert result.backed, result.evaluation.findings
    assert "identity_chain_v1" in codes(result)
    # the v1 entry itself is named by the v2 entry after it: leaving it out is seen
    result = verify_bundle(bundle_without(log, at, claim, *at["dev-a1"]), log.key)
    assert "identity_omitted" in codes(result)


def test_a_link_to_another_assets_entry_or_a_later_one_breaks_the_chain() -> None:
    """Defensive: hash links cannot name a later entry, and a bundle cannot hold another asset's
    identity entry (unrelated_entry), but the rule says what each would mean."""
    other = LoggedIdentity(3, "b", True, None)
    later = LoggedIdentity(9, "a", True, None)
    for entry in (other, later):
        found = check_identity_chain(5, {"a": b"\x01" * 32}, {b"\x01" * 32: entry})
        assert [f.code for f in found] == ["identity_chain_broken"]
    assert check_identity_chain(5, None, {}) == []  # a v1 claim names nothing


def test_asset_links_are_strict() -> None:
    entry = TestDevice("dev-a", "a").enrolment_entry()
    with pytest.raises(DecodeError):
        dataclasses.replace(entry, asset_link=b"\x01" * 32)  # a link in a v1 entry
    with pytest.raises(DecodeError):
        dataclasses.replace(entry, version=IDENTITY_V2, asset_link=bytes(32))
    chained = dataclasses.replace(entry, version=IDENTITY_V2, asset_link=b"\x07" * 32)
    assert decode_entry(encode_entry(chained)) == chained


def test_a_monitor_replaying_the_log_alerts_on_a_link_that_skips_an_entry() -> None:
    log, at, _ = build()
    heads = IdentityHeads()
    for index, data in enumerate(log.entries):
        entry = decode_entry(data)
        if isinstance(entry, EnrolmentEntry | RotationEntry | RevocationEntry):
            assert heads.add(index, log.leaves[index], entry) == []
        elif isinstance(entry, ClaimEntry):
            assert heads.check_claim(index, entry) == []
    # an enrolment on asset a naming the first enrolment, skipping four entries after it
    late = TestDevice("dev-a3", "a")
    skipping = dataclasses.replace(
        late.enrolment_entry(), version=IDENTITY_V2, asset_link=log.leaves[at["dev-a1"][0]]
    )
    alerts = heads.add(len(log.entries), b"\x09" * 32, skipping)
    assert [(a.code, a.other) for a in alerts] == [("stale_identity_link", at["dev-a2"][-1])]
    # a claim naming an old head of asset b
    stale = ClaimEntry(flat_claim(("b",)), T0 + 2 * HOUR, None, (None,), (None,))
    assert [a.code for a in heads.check_claim(99, stale)] == ["stale_identity_link"]
