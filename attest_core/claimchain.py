"""No double counting: the same energy backs at most one live claim.

The gateway refuses a claim whose period overlaps a live claim on any of its assets.  So that
a token holder need not trust that refusal, each v2 claim entry names, per asset, the latest
live claim on it when it was filed (by leaf hash: known at filing, unlike the log index), and
an issuer's claim that replaces an earlier one of its own names that one (``supersedes``).
Per asset the links form a chain back to the first claim on it.  A bundle carries the chain
of its claim, and every withdrawal or supersession of a claim on it that the log holds, and
:func:`check_claim_chain` finds, offline:

* ``claims_omitted`` (fatal): a claim the chain names is not in the bundle;
* ``claim_chain_broken`` (fatal): a link names an entry that does not claim that asset, or
  one logged after the claim naming it;
* ``double_claimed`` (fatal): an earlier claim on the chain, live when this one was filed
  and not superseded by it, claims an overlapping period of the same asset;
* ``claim_void`` (fatal): this claim was withdrawn or superseded (the entry doing so is in
  the bundle);
* ``claim_chain_v1`` (warning): the chain reaches a v1 claim entry, which names no
  predecessor: claims before it are not checked;
* ``period_not_ended`` (fatal): the claim was logged before its period ended (a v2 gateway
  refuses to file one): devices enrolled and identity entries logged later in the period would
  not be on its chains.

What a bundle alone cannot show (a later withdrawal or supersession the bundle leaves out, a
claim whose link skips a live claim) is found by a monitor reading every entry
(:class:`LiveClaims`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from attest_core.entries import ClaimEntry, WithdrawalEntry
from attest_core.verdict import Finding, Severity


@dataclass(frozen=True, slots=True)
class LoggedClaim:
    index: int
    leaf_hash: bytes
    entry: ClaimEntry


@dataclass(frozen=True, slots=True)
class LoggedWithdrawal:
    index: int
    entry: WithdrawalEntry


def filed_after_period(entry: ClaimEntry) -> bool:
    """Whether a claim entry was logged once its period had ended (v2: a claim may not be filed
    earlier; a v1 entry is not held to it)."""
    return entry.previous is None or entry.logged_at_ms >= entry.claim.period_end_ms


def periods_overlap(a: ClaimEntry, b: ClaimEntry) -> bool:
    """Whether two claims' periods ``[start, end)`` share a moment."""
    return a.claim.period_start_ms < b.claim.period_end_ms and b.claim.period_start_ms < a.claim.period_end_ms


def _voided_at(
    target: LoggedClaim, claims: Iterable[LoggedClaim], withdrawals: Iterable[LoggedWithdrawal]
) -> tuple[int, str] | None:
    """(index, how) of the first entry that made ``target`` void, by the claim's own issuer."""
    issuer = target.entry.claim.issuer
    events = [
        (c.index, f"superseded by the claim at entry {c.index}")
        for c in claims
        if c.entry.supersedes == target.leaf_hash
        and c.entry.claim.issuer == issuer
        and c.index > target.index
    ] + [
        (w.index, f"withdrawn at entry {w.index} ({w.entry.reason or 'no reason given'})")
        for w in withdrawals
        if w.entry.claim == target.leaf_hash and w.entry.issuer == issuer and w.index > target.index
    ]
    return min(events) if events else None


def check_claim_chain(
    subject: LoggedClaim, claims: Iterable[LoggedClaim], withdrawals: Iterable[LoggedWithdrawal]
) -> list[Finding]:
    """The findings about ``subject``'s claim chain, from the claim and withdrawal entries a
    bundle carries (``claims`` may include ``subject``)."""
    claims = list(claims)
    withdrawals = list(withdrawals)
    by_hash = {c.leaf_hash: c for c in claims}
    findings: list[Finding] = []
    if not filed_after_period(subject.entry):
        findings.append(
            Finding(
                Severity.FATAL,
                "period_not_ended",
                f"the claim was logged at {subject.entry.logged_at_ms} (Unix ms), before its period ended at "
                f"{subject.entry.claim.period_end_ms}: what its assets' devices did later in the period is "
                "not bound to it",
                log_index=subject.index,
            )
        )
    void = _voided_at(subject, claims, withdrawals)
    if void is not None:
        findings.append(
            Finding(
                Severity.FATAL, "claim_void", f"the claim is {void[1]}: it backs nothing", log_index=void[0]
            )
        )
    if subject.entry.previous is None:
        findings.append(
            Finding(
                Severity.WARNING,
                "claim_chain_v1",
                "the claim is a v1 entry, which names no earlier claim: whether the same energy "
                "is claimed twice cannot be checked from the bundle",
                log_index=subject.index,
            )
        )
        return findings
    reported: set[tuple[int, str]] = set()
    v1_reported: set[int] = set()
    for asset, first_link in zip(subject.entry.claim.assets, subject.entry.previous, strict=True):
        link, named_by = first_link, subject
        while link is not None:
            earlier = by_hash.get(link)
            if earlier is None:
                findings.append(
                    Finding(
                        Severity.FATAL,
                        "claims_omitted",
                        f"the claim at entry {named_by.index} names an earlier claim on asset {asset} "
                        f"(leaf hash {link.hex()}) that the bundle leaves out",
                        asset_id=asset,
                        log_index=named_by.index,
                    )
                )
                break
            if asset not in earlier.entry.claim.assets or earlier.index >= named_by.index:
                findings.append(
                    Finding(
                        Severity.FATAL,
                        "claim_chain_broken",
                        f"the claim at entry {named_by.index} names the entry {earlier.index} as the "
                        f"claim before it on asset {asset}, which "
                        + (
                            "does not claim that asset"
                            if asset not in earlier.entry.claim.assets
                            else "is not logged before it"
                        ),
                        asset_id=asset,
                        log_index=named_by.index,
                    )
                )
                break
            voided = _voided_at(earlier, claims, withdrawals)
            live = voided is None or voided[0] > subject.index
            if (
                live
                and earlier.leaf_hash != subject.entry.supersedes
                and periods_overlap(earlier.entry, subject.entry)
                and (earlier.index, asset) not in reported
            ):
                reported.add((earlier.index, asset))
                findings.append(
                    Finding(
                        Severity.FATAL,
                        "double_claimed",
                        f"asset {asset} is already claimed for an overlapping period by the live claim at "
                        f"entry {earlier.index} ({earlier.entry.claim.issuer}: "
                        f"{earlier.entry.claim.title!r})",
                        asset_id=asset,
                        log_index=earlier.index,
                    )
                )
            if earlier.entry.previous is None:
                if earlier.index in v1_reported:
                    break
                v1_reported.add(earlier.index)
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "claim_chain_v1",
                        f"the chain of claims on asset {asset} reaches the v1 claim at entry "
                        f"{earlier.index}, which names no earlier claim: claims before it are not checked",
                        asset_id=asset,
                        log_index=earlier.index,
                    )
                )
                break
            link = earlier.entry.links().get(asset)
            named_by = earlier
    return findings


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a claim or withdrawal entry does that the rules forbid, seen by reading the log."""

    code: str
    message: str
    index: int
    """The entry that breaks the rule."""
    other: int | None = None
    """The earlier entry it conflicts with, if any."""


class LiveClaims:
    """The live claims of a log, replayed entry by entry in log order (what a monitor keeps).

    The rules are the gateway's: a claim may not overlap a live claim on any of its assets
    (its own superseded one aside); its links name, per asset, the latest live claim; it
    supersedes, and a withdrawal withdraws, only a live claim of the same issuer.  Every rule a
    claim or withdrawal breaks gives an :class:`Alert`; the entry still takes effect as far as
    it can, so one bad entry does not hide the next.
    """

    def __init__(self) -> None:
        self.claims: dict[bytes, LoggedClaim] = {}
        """Live claims by leaf hash."""
        self._by_asset: dict[str, list[bytes]] = {}
        """Asset -> leaf hashes of its live claims, in log order."""

    def overlapping(self, entry: ClaimEntry) -> list[tuple[str, LoggedClaim]]:
        """(asset, live claim) pairs that ``entry`` would double count, in log order."""
        found: list[tuple[str, LoggedClaim]] = []
        for asset in entry.claim.assets:
            for digest in self._by_asset.get(asset, ()):
                live = self.claims[digest]
                if digest != entry.supersedes and periods_overlap(live.entry, entry):
                    found.append((asset, live))
        return found

    def expected_links(self, entry: ClaimEntry) -> tuple[bytes | None, ...]:
        """What a claim filed now must name as the previous live claim on each of its assets."""
        return tuple(self._latest_except(asset, entry.supersedes) for asset in entry.claim.assets)

    def _latest_except(self, asset: str, excluded: bytes | None) -> bytes | None:
        for digest in reversed(self._by_asset.get(asset, ())):
            if digest != excluded:
                return digest
        return None

    def add_claim(self, claim: LoggedClaim) -> list[Alert]:
        entry = claim.entry
        alerts = [
            Alert(
                "double_claimed",
                f"the claim at entry {claim.index} claims asset {asset} for a period the live claim at "
                f"entry {live.index} already claims",
                claim.index,
                live.index,
            )
            for asset, live in self.overlapping(entry)
        ]
        if entry.supersedes is not None:
            alerts += self._void(entry.supersedes, entry.claim.issuer, claim.index, "supersedes")
        if entry.previous is not None and entry.previous != self.expected_links(entry):
            alerts.append(
                Alert(
                    "stale_link",
                    f"the claim at entry {claim.index} does not name the latest live claim on each of "
                    "its assets: an offline check of its bundle would miss earlier claims",
                    claim.index,
                )
            )
        self.claims[claim.leaf_hash] = claim
        for asset in entry.claim.assets:
            self._by_asset.setdefault(asset, []).append(claim.leaf_hash)
        return alerts

    def restore(self, claim: LoggedClaim) -> None:
        """Take back a claim known to be live (a monitor's saved state), checking nothing."""
        self.claims[claim.leaf_hash] = claim
        for asset in claim.entry.claim.assets:
            self._by_asset.setdefault(asset, []).append(claim.leaf_hash)

    def add_withdrawal(self, withdrawal: LoggedWithdrawal) -> list[Alert]:
        entry = withdrawal.entry
        return self._void(entry.claim, entry.issuer, withdrawal.index, "withdraws")

    def _void(self, digest: bytes, issuer: str, index: int, verb: str) -> list[Alert]:
        target = self.claims.get(digest)
        if target is None:
            return [Alert("not_live", f"the entry {index} {verb} a claim that is not live", index)]
        if target.entry.claim.issuer != issuer:
            return [
                Alert(
                    "foreign_claim",
                    f"the entry {index} by {issuer} {verb} the claim at entry {target.index} of "
                    f"{target.entry.claim.issuer}",
                    index,
                    target.index,
                )
            ]
        del self.claims[digest]
        for asset in target.entry.claim.assets:
            self._by_asset[asset].remove(digest)
        return []


def needed_indices(
    subject: LoggedClaim, claims: Iterable[LoggedClaim], withdrawals: Iterable[LoggedWithdrawal]
) -> set[int]:
    """The indices, among ``claims`` and ``withdrawals``, that a bundle of ``subject`` needs: the
    claims its links reach, and the entries voiding one of those or ``subject`` itself.  A bundle
    holding any other claim or withdrawal holds an entry its claim does not need."""
    claims = list(claims)
    by_hash = {c.leaf_hash: c for c in claims}
    chain: dict[bytes, LoggedClaim] = {}
    todo = list(subject.entry.links().items())
    seen: set[tuple[str, bytes]] = set()
    while todo:
        step = todo.pop()
        earlier = by_hash.get(step[1])
        if step in seen or earlier is None:
            continue
        seen.add(step)
        asset, link = step
        chain[link] = earlier
        before = earlier.entry.links().get(asset)
        if before is not None:
            todo.append((asset, before))
    members = {*chain, subject.leaf_hash}
    needed = {c.index for c in chain.values()} | {subject.index}
    needed |= {c.index for c in claims if c.entry.supersedes in members}
    needed |= {w.index for w in withdrawals if w.entry.claim in members}
    return needed
