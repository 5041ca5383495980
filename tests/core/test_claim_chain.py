"""No double counting: claim entries v2, withdrawals, the offline chain check and the monitor's replay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attest_core.claim import Claim
from attest_core.claimchain import (
    Alert,
    LiveClaims,
    LoggedClaim,
    LoggedWithdrawal,
    check_claim_chain,
    needed_indices,
)
from attest_core.entries import ClaimEntry, WithdrawalEntry, decode_entry, encode_entry
from attest_core.errors import DecodeError
from attest_core.merkle import leaf_hash
from attest_core.tariff import Tariff
from tests.support import DAY, T0

FILED = T0 + 40 * DAY  # after every period these tests claim


def claim(assets: tuple[str, ...] = ("a",), start: int = 0, days: int = 1, issuer: str = "iss") -> Claim:
    return Claim(
        issuer,
        "t",
        T0 + start * DAY,
        T0 + (start + days) * DAY,
        assets,
        Tariff.flat("EUR", "0.3"),
        1,
        "0.01",
        T0 + 40 * DAY,
    )


class Log:
    """A toy log that files claims the way the gateway does (links from a LiveClaims replay)."""

    def __init__(self) -> None:
        self.live = LiveClaims()
        self.claims: list[LoggedClaim] = []
        self.withdrawals: list[LoggedWithdrawal] = []
        self.size = 0

    def file(self, c: Claim, supersedes: LoggedClaim | None = None) -> LoggedClaim:
        draft = ClaimEntry(
            c,
            FILED + self.size,
            None if supersedes is None else supersedes.leaf_hash,
            (None,) * len(c.assets),
        )
        entry = ClaimEntry(c, FILED + self.size, draft.supersedes, self.live.expected_links(draft))
        logged = LoggedClaim(self.size, leaf_hash(encode_entry(entry)), entry)
        assert self.live.add_claim(logged) == []
        self.claims.append(logged)
        self.size += 1
        return logged

    def withdraw(self, target: LoggedClaim) -> None:
        w = LoggedWithdrawal(
            self.size, WithdrawalEntry(target.entry.claim.issuer, target.leaf_hash, "typo", T0)
        )
        assert self.live.add_withdrawal(w) == []
        self.withdrawals.append(w)
        self.size += 1

    def check(self, subject: LoggedClaim, leave_out: LoggedClaim | None = None) -> list[str]:
        claims = [c for c in self.claims if c is not leave_out]
        return [f.code for f in check_claim_chain(subject, claims, self.withdrawals)]


def test_claim_entry_v2_and_withdrawal_round_trip() -> None:
    link = bytes(range(32))
    for entry in (
        ClaimEntry(claim(("a", "b")), T0, link, (None, link)),
        ClaimEntry(claim(), T0),
        WithdrawalEntry("iss", link, "filed twice", T0),
    ):
        data = encode_entry(entry)
        assert decode_entry(data) == entry
        assert data[0] == (1 if isinstance(entry, ClaimEntry) and entry.previous is None else 2)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: ClaimEntry(claim(("a", "b")), T0, None, (None,)), "bad_claim_links"),
        (lambda: ClaimEntry(claim(), T0, b"\x01" * 32, None), "bad_claim_links"),
        (lambda: ClaimEntry(claim(), T0, None, (bytes(32),)), "bad_claim_links"),
        (lambda: WithdrawalEntry("iss", b"short", "", T0), "bad_claim_links"),
    ],
)
def test_bad_links_are_refused(make: object, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        make()  # type: ignore[operator]
    assert info.value.code == code


def test_a_withdrawal_is_not_decoded_as_version_1() -> None:
    data = bytearray(encode_entry(WithdrawalEntry("iss", b"\x01" * 32, "", T0)))
    data[0] = 1
    with pytest.raises(DecodeError) as info:
        decode_entry(bytes(data))
    assert info.value.code == "bad_version"


def test_a_chain_without_overlap_is_clean() -> None:
    log = Log()
    log.file(claim(("a",), 0))
    log.file(claim(("b",), 0))
    third = log.file(claim(("a", "b"), 1))
    assert log.check(third) == []


def test_an_overlapping_live_claim_on_the_chain_is_double_counting() -> None:
    log = Log()
    first = log.file(claim(("a",), 0, days=3))
    log.file(claim(("a",), 5))
    # What a gateway that skipped its refusal would log: correct links, overlapping period.
    draft = ClaimEntry(claim(("a",), 1), FILED, None, (None,))
    entry = ClaimEntry(draft.claim, FILED, None, log.live.expected_links(draft))
    double = LoggedClaim(log.size, leaf_hash(encode_entry(entry)), entry)
    findings = check_claim_chain(double, [*log.claims, double], [])
    assert [(f.code, f.log_index) for f in findings] == [("double_claimed", first.index)]
    assert [a.code for a in replay([*log.claims, double])] == ["double_claimed"]


def replay(claims: list[LoggedClaim]) -> list[Alert]:
    live = LiveClaims()
    alerts: list[Alert] = []
    for c in claims:
        alerts += live.add_claim(c)
    return alerts


def test_leaving_a_claim_of_the_chain_out_is_caught() -> None:
    log = Log()
    first = log.file(claim(("a",), 0))
    log.file(claim(("a",), 1))
    third = log.file(claim(("a",), 2))
    assert log.check(third, leave_out=first) == ["claims_omitted"]


def test_withdrawn_and_superseded_claims_no_longer_count() -> None:
    log = Log()
    wrong = log.file(claim(("a",), 0, days=2))
    later = log.file(claim(("a",), 5))
    log.withdraw(wrong)
    again = log.file(claim(("a",), 0, days=2))
    assert log.check(again) == []
    fixed = log.file(claim(("a",), 0, days=3), supersedes=again)
    assert log.check(fixed) == []
    # The superseded claim is void from then on: its own bundle says so.
    assert log.check(again) == ["claim_void"]
    assert log.check(later) == []


def test_a_link_to_an_entry_of_another_asset_breaks_the_chain() -> None:
    log = Log()
    other = log.file(claim(("b",), 0))
    entry = ClaimEntry(claim(("a",), 3), FILED, None, (other.leaf_hash,))
    bad = LoggedClaim(log.size, leaf_hash(encode_entry(entry)), entry)
    assert [f.code for f in check_claim_chain(bad, [*log.claims, bad], [])] == ["claim_chain_broken"]
    assert [a.code for a in replay([*log.claims, bad])] == ["stale_link"]


def test_a_v1_claim_ends_the_chain_with_a_warning() -> None:
    log = Log()
    entry = ClaimEntry(claim(("a",), 0), 0)
    old = LoggedClaim(0, leaf_hash(encode_entry(entry)), entry)
    log.live.add_claim(old)
    log.claims.append(old)
    log.size = 1
    new = log.file(claim(("a",), 1))
    assert log.check(new) == ["claim_chain_v1"]
    assert log.check(old) == ["claim_chain_v1"]


def test_only_the_issuer_can_void_its_claim() -> None:
    live = LiveClaims()
    entry = ClaimEntry(claim(("a",), 0, issuer="one"), FILED, None, (None,))
    first = LoggedClaim(0, leaf_hash(encode_entry(entry)), entry)
    live.add_claim(first)
    foreign = LoggedWithdrawal(1, WithdrawalEntry("two", first.leaf_hash, "", T0))
    assert [a.code for a in live.add_withdrawal(foreign)] == ["foreign_claim"]
    assert check_claim_chain(first, [first], [foreign]) == []


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.sampled_from("abc"), min_size=1), st.integers(0, 6), st.integers(1, 3), st.booleans()
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_chain_check_agrees_with_the_monitor(plan: list[tuple[set[str], int, int, bool]]) -> None:
    """Claims filed with correct links, some double: the bundle check of each claim finds a
    double claim exactly when the monitor's replay alerted on it as it was logged."""
    live = LiveClaims()
    logged: list[LoggedClaim] = []
    withdrawals: list[LoggedWithdrawal] = []
    alerted: set[int] = set()
    for i, (assets, start, days, withdraw_first) in enumerate(plan):
        index = len(logged) + len(withdrawals)
        if withdraw_first and logged and logged[-1].leaf_hash in live.claims:
            w = LoggedWithdrawal(index, WithdrawalEntry("iss", logged[-1].leaf_hash, "", T0))
            assert live.add_withdrawal(w) == []
            withdrawals.append(w)
            index += 1
        c = claim(tuple(sorted(assets)), start, days)
        draft = ClaimEntry(c, FILED + i, None, (None,) * len(c.assets))
        entry = ClaimEntry(c, FILED + i, None, live.expected_links(draft))
        lc = LoggedClaim(index, leaf_hash(encode_entry(entry)), entry)
        if any(a.code == "double_claimed" for a in live.add_claim(lc)):
            alerted.add(lc.index)
        logged.append(lc)
    for lc in logged:
        before = [c for c in logged if c.index <= lc.index]
        prior_withdrawals = [w for w in withdrawals if w.index < lc.index]
        codes = {f.code for f in check_claim_chain(lc, before, prior_withdrawals)}
        assert ("double_claimed" in codes) == (lc.index in alerted)


def test_a_bundle_needs_the_chain_and_what_voids_it_only() -> None:
    log = Log()
    other = log.file(claim(("b",), 0))
    first = log.file(claim(("a",), 0))
    fixed = log.file(claim(("a",), 0), supersedes=first)
    second = log.file(claim(("a",), 1))
    log.withdraw(second)
    third = log.file(claim(("a", "c"), 2))
    needed = needed_indices(third, log.claims, log.withdrawals)
    # the chain of asset a from the third claim: fixed (the latest live when it was filed); the
    # withdrawn second claim is no longer named; first is reached through nothing
    assert needed == {third.index, fixed.index}
    needed = needed_indices(fixed, log.claims, log.withdrawals)
    assert needed == {fixed.index}
    assert needed_indices(second, log.claims, log.withdrawals) == {
        second.index,
        fixed.index,
        log.withdrawals[0].index,
    }
    assert other.index not in needed_indices(first, log.claims, log.withdrawals)
    assert needed_indices(first, log.claims, log.withdrawals) == {first.index, fixed.index}


def test_a_claim_logged_before_its_period_ended_is_not_backed() -> None:
    early = ClaimEntry(claim(("a",), 0, days=2), T0 + DAY, None, (None,))
    logged = LoggedClaim(0, leaf_hash(encode_entry(early)), early)
    assert [f.code for f in check_claim_chain(logged, [logged], [])] == ["period_not_ended"]
    v1 = ClaimEntry(claim(("a",), 0, days=2), T0 + DAY)  # v1 claims were not held to it
    assert "period_not_ended" not in [
        f.code for f in check_claim_chain(LoggedClaim(0, b"\x01" * 32, v1), [], [])
    ]
