"""No omission of what the evaluation depends on: each asset's identity entries form a chain.

A claim's evaluation depends on every enrolment, key rotation and revocation of its assets'
devices: leave out a device and its faults vanish; leave out a revocation and disowned readings
count.  A v2 identity entry names (``asset_link``) the leaf hash of the previous identity entry
of a device of the same asset, and a v2 claim entry names, per asset, the latest one when it
was filed.  From the claim back, :func:`check_identity_chain` requires every entry of the chain
in the bundle:

* ``identity_omitted`` (fatal): an entry the chain names is not in the bundle;
* ``identity_chain_broken`` (fatal): a link names an entry that is not an identity entry of a
  device of that asset, or one logged after the entry naming it;
* ``identity_chain_v1`` (warning): the chain reaches a v1 identity entry, which names none
  before it: entries before it are not checked.

Identity entries logged after the claim (a later revocation) are not on its chain: a monitor
reading every entry sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from attest_core.claimchain import Alert
from attest_core.entries import IDENTITY_V2, ClaimEntry, EnrolmentEntry, RevocationEntry, RotationEntry
from attest_core.verdict import Finding, Severity


@dataclass(frozen=True, slots=True)
class LoggedIdentity:
    index: int
    asset_id: str
    chained: bool
    """A v2 entry: ``link`` is meaningful (None: the first of its asset)."""
    link: bytes | None


def check_identity_chain(
    claim_index: int,
    heads: Mapping[str, bytes | None] | None,
    identity: Mapping[bytes, LoggedIdentity],
) -> list[Finding]:
    """Findings about the identity chains of a claim at ``claim_index`` whose entry names, per
    asset, the latest identity entry ``heads`` (None: a v1 claim entry, which names none), from
    the bundle's identity entries by leaf hash."""
    if heads is None:
        return []  # a v1 claim: attest_core.claimchain already warns that it names nothing
    findings: list[Finding] = []
    for asset, head in heads.items():
        link, named_by = head, claim_index
        while link is not None:
            entry = identity.get(link)
            if entry is None:
                findings.append(
                    Finding(
                        Severity.FATAL,
                        "identity_omitted",
                        f"the entry {named_by} names an earlier identity entry of asset {asset} (leaf hash "
                        f"{link.hex()}) that the bundle leaves out: a device, key rotation or revocation "
                        "the evaluation depends on is missing",
                        asset_id=asset,
                        log_index=named_by,
                    )
                )
                break
            if entry.asset_id != asset or entry.index >= named_by:
                findings.append(
                    Finding(
                        Severity.FATAL,
                        "identity_chain_broken",
                        f"the entry {named_by} names the entry {entry.index} as the identity entry before it "
                        f"on asset {asset}, which "
                        + (
                            "concerns another asset" if entry.asset_id != asset else "is not logged before it"
                        ),
                        asset_id=asset,
                        log_index=named_by,
                    )
                )
                break
            if not entry.chained:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "identity_chain_v1",
                        f"the identity entries of asset {asset} are chained back to the v1 entry {entry.index}, "
                        "which names none before it: entries before it are not checked for omission",
                        asset_id=asset,
                        log_index=entry.index,
                    )
                )
                break
            link, named_by = entry.link, entry.index
    return findings


def logged_identities(
    items: Iterable[tuple[int, bytes, object]], asset_of: Callable[[str], str | None]
) -> dict[bytes, LoggedIdentity]:
    """The identity entries among ``(index, leaf hash, decoded entry)`` by leaf hash, each with
    the asset of its device (``asset_of(device_id)``, from the replayed registry)."""
    out: dict[bytes, LoggedIdentity] = {}
    for index, leaf, entry in items:
        if isinstance(entry, EnrolmentEntry | RotationEntry):
            device_id = entry.statement.device_id
        elif isinstance(entry, RevocationEntry):
            device_id = entry.device_id
        else:
            continue
        asset = asset_of(device_id)
        if asset is not None:
            out[leaf] = LoggedIdentity(index, asset, entry.version == IDENTITY_V2, entry.asset_link)
    return out


def claim_heads(entry: ClaimEntry) -> dict[str, bytes | None] | None:
    """Asset -> the identity entry a v2 claim entry names for it; None for a v1 claim entry."""
    if entry.identity is None:
        return None
    return dict(zip(entry.claim.assets, entry.identity, strict=True))


class IdentityHeads:
    """Each asset's latest identity entry, replayed entry by entry in log order (what a monitor
    keeps): a v2 identity entry must name it (``asset_link``), and so must a v2 claim for each of
    its assets (``identity``).  A link that skips an entry would let a bundle leave that entry
    out unseen: each is an alert (``stale_identity_link``)."""

    def __init__(self) -> None:
        self.asset_of: dict[str, str] = {}
        """Device id -> the asset it is enrolled for."""
        self.heads: dict[str, tuple[int, bytes]] = {}
        """Asset -> (index, leaf hash) of its latest identity entry."""

    def add(
        self, index: int, leaf: bytes, entry: EnrolmentEntry | RotationEntry | RevocationEntry
    ) -> list[Alert]:
        if isinstance(entry, EnrolmentEntry):
            statement = entry.statement
            self.asset_of[statement.device_id] = statement.asset_id
            asset: str | None = statement.asset_id
        elif isinstance(entry, RotationEntry):
            asset = self.asset_of.get(entry.statement.device_id)
        else:
            asset = self.asset_of.get(entry.device_id)
        if asset is None:
            return []  # a device never enrolled: the registry's replay refuses the entry itself
        alerts: list[Alert] = []
        head = self.heads.get(asset)
        if entry.version == IDENTITY_V2 and entry.asset_link != (None if head is None else head[1]):
            alerts.append(
                Alert(
                    "stale_identity_link",
                    f"the identity entry {index} of asset {asset} does not name the asset's latest one "
                    f"({'none' if head is None else f'entry {head[0]}'}): a bundle could leave entries out unseen",
                    index,
                    None if head is None else head[0],
                )
            )
        self.heads[asset] = (index, leaf)
        return alerts

    def check_claim(self, index: int, entry: ClaimEntry) -> list[Alert]:
        if entry.identity is None:
            return []
        alerts: list[Alert] = []
        for asset, named in zip(entry.claim.assets, entry.identity, strict=True):
            head = self.heads.get(asset)
            if named != (None if head is None else head[1]):
                alerts.append(
                    Alert(
                        "stale_identity_link",
                        f"the claim at entry {index} does not name the latest identity entry of asset {asset} "
                        f"({'none' if head is None else f'entry {head[0]}'}): its bundle could leave it out unseen",
                        index,
                        None if head is None else head[0],
                    )
                )
        return alerts
