"""What a claim's chains show, from the entries of its evidence: the one place both the
verifier (a bundle) and the gateway (its verdict) get those findings from.

A v2 claim entry names, per asset, the latest live claim (attest_core.claimchain) and the
latest identity entry (attest_core.identitychain); each chain runs back through the entries
the evidence holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from attest_core.claimchain import LoggedClaim, LoggedWithdrawal, check_claim_chain
from attest_core.entries import ClaimEntry, WithdrawalEntry
from attest_core.identitychain import check_identity_chain, claim_heads, logged_identities
from attest_core.verdict import Finding


def chain_findings(
    subject: LoggedClaim,
    entries: Iterable[tuple[int, bytes, object]],
    asset_of: Callable[[str], str | None],
) -> list[Finding]:
    """The findings about ``subject``'s chains from the evidence's other entries, given as
    ``(index, leaf hash, decoded entry)`` (readings may be left out: they are not on a chain);
    ``asset_of(device_id)`` is the asset each device is enrolled for (the replayed registry)."""
    items = list(entries)
    claims = [
        LoggedClaim(i, leaf, e) for i, leaf, e in items if isinstance(e, ClaimEntry) and i != subject.index
    ]
    withdrawals = [LoggedWithdrawal(i, e) for i, _, e in items if isinstance(e, WithdrawalEntry)]
    identity = logged_identities(items, asset_of)
    return [
        *check_claim_chain(subject, claims, withdrawals),
        *check_identity_chain(subject.index, claim_heads(subject.entry), identity),
    ]
