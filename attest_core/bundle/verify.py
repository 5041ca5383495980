"""Checking a bundle: checkpoint, proof, every entry and signature, then the claim.

What checks the readings' signatures is a parameter (:data:`CheckSignatures`):
the core says which signatures must verify and in which order a failure counts,
the caller decides where the checks run (here, or in threads or worker processes,
as :mod:`verifier.bundle` does).  The outcome, including which error is raised,
does not depend on that choice.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypedDict

from attest_core import domains
from attest_core.anchor import AnchoredTree, check_anchor
from attest_core.bundle.parse import BUNDLE_FORMAT, Bundle, fail, parse_bundle
from attest_core.chains import chain_findings
from attest_core.checkpoint import SignedCheckpoint, WitnessKey, open_checkpoint
from attest_core.claim import Claim
from attest_core.claimchain import LoggedClaim, LoggedWithdrawal, needed_indices
from attest_core.device import log_key_hash
from attest_core.entries import (
    ENTRY_VERSION,
    ClaimEntry,
    EnrolmentEntry,
    Entry,
    RevocationEntry,
    RotationEntry,
    SignedReading,
    WithdrawalEntry,
    decode_log_entry,
)
from attest_core.errors import AttestError, BundleError, DecodeError, SignatureError
from attest_core.evaluation import AttestedReading, Evaluation, evaluate
from attest_core.keys import failed_signatures
from attest_core.merkle import leaf_hash, verify_multi_inclusion
from attest_core.note import VerifierKey
from attest_core.registry import Registry, RegistryError
from attest_core.verdict import Finding, Severity

Progress = Callable[[str, int, int], None]
"""progress(stage, done, total): called now and then during long verifications."""


class VerifyOptions(TypedDict, total=False):
    """The options of :func:`verify_bundle` besides the bundle, the log key and the signature checker."""

    witnesses: Sequence[WitnessKey]
    min_witnesses: int
    progress: Progress | None
    require_full: bool
    require_meter_signed: bool
    require_anchor: bool


SignatureBatch = list[tuple[bytes, bytes]]
"""``(signature ‖ signed message, public key)`` pairs, as :func:`attest_core.keys.failed_signatures` takes them."""

CheckSignatures = Callable[[Iterator[SignatureBatch], int], Iterator[list[int]]]
"""check(batches, count): for each batch, in order, the positions whose signature fails.

Like ``map(failed_signatures, batches)`` (which is :func:`check_here`); ``count``
is at most the number of batches, for sizing a pool.  It must take the batches
lazily: producing one runs the replay of the entries before it.
"""

SIGNATURE_BATCH = 2_000
"""Reading signatures checked together: one task when the checks run elsewhere."""

_sha256 = hashlib.sha256


def check_here(batches: Iterator[SignatureBatch], count: int) -> Iterator[list[int]]:
    """Check each batch in this thread, one after the other."""
    return map(failed_signatures, batches)


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """The outcome of checking a bundle whose evidence is valid."""

    checkpoint: SignedCheckpoint
    claim_index: int
    claim: Claim
    evaluation: Evaluation
    entries: int
    readings_verified: int
    format: str = BUNDLE_FORMAT
    """The bundle's format (v1 bundles are still verified)."""
    anchor: AnchoredTree | None = None
    """The bundle's anchor, checked offline (v3); whether the chain holds it is the caller's to check."""

    @property
    def backed(self) -> bool:
        return self.evaluation.backed


def _entry_error(index: int, exc: SignatureError | RegistryError) -> AttestError:
    """An error of an identity or reading entry, saying which entry it is."""
    if isinstance(exc, SignatureError):
        return SignatureError(f"log entry {index}: {exc}", code=exc.code)
    return BundleError(f"log entry {index}: {exc}", code=exc.code)


def verify_bundle(
    data: bytes | str | Bundle,
    log_key: VerifierKey,
    *,
    witnesses: Sequence[WitnessKey] = (),
    min_witnesses: int = 0,
    progress: Progress | None = None,
    check_signatures: CheckSignatures = check_here,
    require_full: bool = False,
    require_meter_signed: bool = False,
    require_anchor: bool = False,
) -> VerifiedBundle:
    """Check a bundle against the auditor's log key and evaluate its claim.

    Raises an :class:`AttestError` if the evidence is invalid (bad signature or
    proof, tampered or malformed bundle, wrong key).  Returns a
    :class:`VerifiedBundle` otherwise; whether the claim is backed is
    ``result.backed``.  The readings' signatures are checked in batches of
    :data:`SIGNATURE_BATCH` by ``check_signatures``.  ``require_full``: boundary evidence
    (declared, or a v1 bundle's device that does not show full evidence) is fatal
    (``evidence_insufficient``), so the claim is not backed.  ``require_meter_signed``: a charger
    asset's energy not all meter-signed is fatal (``meter_signed_insufficient``).

    A v3 bundle's anchor is checked offline (:func:`attest_core.anchor.check_anchor`): an anchor
    that fails raises.  ``require_anchor``: a bundle without an anchor (``anchor_missing``), or
    one of whose entries lies outside the anchored tree (``claim_not_anchored``), is fatal.
    Whether the chain holds the anchor is not checked here (no I/O in the core).
    """
    bundle = data if isinstance(data, Bundle) else parse_bundle(data)

    # 1. The checkpoint: signed by the auditor's log key (and witnesses, if required).
    signed = open_checkpoint(bundle.checkpoint, log_key, witnesses=witnesses, min_witnesses=min_witnesses)
    size = signed.checkpoint.size

    # 2. Every entry is in that tree.
    leaves: dict[int, bytes] = {}
    for index, raw in bundle.entries:
        if index >= size:
            fail(f"entry {index} is beyond the checkpoint's tree size {size}", "index_beyond_checkpoint")
        leaves[index] = leaf_hash(raw)
    verify_multi_inclusion(size, leaves, bundle.proof, signed.checkpoint.root_hash)
    if progress is not None:
        progress("proof", len(leaves), len(leaves))
    anchored = None if bundle.anchor is None else check_anchor(bundle.anchor, log_key, signed)

    # 3. Decode every entry (each once); find the claim.
    decoded: list[tuple[int, Entry | SignedReading]] = []
    claim_entry: ClaimEntry | None = None
    other_claims: list[LoggedClaim] = []
    withdrawals: list[LoggedWithdrawal] = []
    total_readings = 0
    for index, raw in bundle.entries:
        try:
            entry = decode_log_entry(raw)
        except DecodeError as exc:
            raise BundleError(f"log entry {index} is malformed: {exc}", code=exc.code) from exc
        if isinstance(entry, SignedReading):
            total_readings += 1
        elif isinstance(entry, ClaimEntry):
            if index == bundle.claim_index:
                claim_entry = entry
            else:
                other_claims.append(LoggedClaim(index, leaves[index], entry))
        elif isinstance(entry, WithdrawalEntry):
            withdrawals.append(LoggedWithdrawal(index, entry))
        decoded.append((index, entry))
    if claim_entry is None:
        fail(f"claim_index {bundle.claim_index} does not name a claim entry of the bundle", "no_claim")
    if bundle.evidence is None and claim_entry.version != ENTRY_VERSION:
        # The format member is not signed: relabelled v1, a trimmed full v2 bundle would have
        # each gapped device read as boundary evidence.  A v2 gateway writes v2 bundles only.
        fail(
            f"the bundle declares the format {bundle.format!r}, but its claim entry is version "
            f"{claim_entry.version}, which only a v2 gateway writes, and it writes "
            f"{BUNDLE_FORMAT!r} bundles: the format was changed",
            "format_mismatch",
        )
    claim = claim_entry.claim
    # Other claims and withdrawals: only those of the claim's chain (no double counting).
    subject = LoggedClaim(bundle.claim_index, leaves[bundle.claim_index], claim_entry)
    needed = needed_indices(subject, other_claims, withdrawals)
    extra = ({c.index for c in other_claims} | {w.index for w in withdrawals}) - needed
    if extra:
        fail(
            f"entry {min(extra)} is a claim or withdrawal that the chain of earlier claims of the claim "
            "does not need: a bundle proves one claim",
            "unrelated_entry",
        )

    # 4. Replay identities in log order and check every reading's signature.  The
    # signatures are checked in batches, so a failure is known a little after the
    # reading was replayed: the first error in log order wins.
    replay = _Replay(decoded, set(claim.assets), signed.checkpoint.origin, log_key_hash(log_key))
    batches = -(-total_readings // SIGNATURE_BATCH)
    done = 0
    for failed in check_signatures(replay.batches(), batches):
        where = replay.where.popleft()
        if failed:
            raise SignatureError(
                f"log entry {where[failed[0]]}: the reading's signature does not verify under the device key"
            )
        done += len(where)
        if progress is not None:
            progress("readings", done, total_readings)
    if not replay.finished or replay.where:
        # A checker that skips batches would leave readings unchecked: never a verdict then.
        raise RuntimeError("check_signatures did not check every batch of signatures")
    if replay.failure is not None:
        raise replay.failure
    readings = replay.readings
    if progress is not None:
        progress("readings", len(readings), total_readings)

    # 5. What the readings attest.
    evaluation = evaluate(
        claim,
        replay.registry.devices,
        readings,
        bundle.evidence,
        require_full=require_full,
        require_meter_signed=require_meter_signed,
    )
    devices = replay.registry.devices
    if require_anchor:
        evaluation.findings.extend(_anchor_findings(anchored, bundle))
    evaluation.findings.extend(
        chain_findings(
            subject,
            ((i, leaves[i], e) for i, e in decoded if not isinstance(e, SignedReading)),
            lambda device_id: devices[device_id].asset_id if device_id in devices else None,
        )
    )
    return VerifiedBundle(
        checkpoint=signed,
        claim_index=bundle.claim_index,
        claim=claim,
        evaluation=evaluation,
        entries=len(bundle.entries),
        readings_verified=len(readings),
        format=bundle.format,
        anchor=anchored,
    )


def _anchor_findings(anchored: AnchoredTree | None, bundle: Bundle) -> list[Finding]:
    """What ``require_anchor`` finds: the claim and every entry it needs inside the anchored tree."""
    if anchored is None:
        return [
            Finding(
                Severity.FATAL,
                "anchor_missing",
                "an anchored log is required, and the bundle carries no anchor (ask the gateway for "
                "?anchored=1 once the log is anchored)",
            )
        ]
    outside = [index for index, _ in bundle.entries if not anchored.covers(index)]
    if not outside:
        return []
    return [
        Finding(
            Severity.FATAL,
            "claim_not_anchored",
            f"an anchored log is required, and {len(outside)} of the bundle's entries (from log index "
            f"{outside[0]}) lie outside the anchored tree of {anchored.size} entries",
            log_index=outside[0],
        )
    ]


class _Replay:
    """The identity entries replayed in log order, the readings collected and their
    signature checks handed out in batches."""

    def __init__(
        self,
        decoded: list[tuple[int, Entry | SignedReading]],
        claimed_assets: set[str],
        origin: str,
        key_hash: bytes,
    ) -> None:
        self._decoded = decoded
        self._claimed_assets = claimed_assets
        # An enrolment for another log's origin (wrong_log_origin), or for another log of the same
        # name (wrong_log_key: the auditor's log key is the one that counts), was replayed here.
        self.registry = Registry(origin, key_hash)
        self.readings: list[AttestedReading] = []
        self.where: deque[list[int]] = deque()
        """The log index of each signature of each batch handed out and not yet settled."""
        self.failure: AttestError | None = None
        """The error that stopped the replay: it counts unless an earlier signature fails."""
        self.finished = False
        """True once every entry was replayed (or the replay stopped at :attr:`failure`)."""
        self._batch: SignatureBatch = []
        self._where: list[int] = []

    def batches(self) -> Iterator[SignatureBatch]:
        """The signature checks in batches, replaying the entries as they are taken."""
        try:
            yield from self._replay()
        except AttestError as exc:
            self.failure = exc
        if self._batch:
            self.where.append(self._where)
            yield self._batch
        self.finished = True

    def _replay(self) -> Iterator[SignatureBatch]:
        """Replay every entry; each full batch is yielded, the last partial one stays in ``_batch``."""
        registry = self.registry
        devices = registry.devices
        key_for_reading = registry.key_for_reading
        add_reading = self.readings.append
        signature_prefix = domains.READING_SIGNATURE
        hash_prefix = domains.READING_HASH
        for index, entry in self._decoded:
            if isinstance(entry, SignedReading):
                key_id, payload, signature, reading = entry
                if reading.device_id not in devices:
                    fail(
                        f"entry {index}: reading {reading.seq} of device {reading.device_id}, whose "
                        "enrolment is not in the bundle before it",
                        "unknown_device",
                    )
                try:
                    public_key = key_for_reading(key_id, reading)
                except (SignatureError, RegistryError) as exc:
                    raise _entry_error(index, exc) from exc
                # Over the exact payload bytes received, as the device signed them.
                self._batch.append((signature + signature_prefix + payload, public_key))
                self._where.append(index)
                # reading_hash(payload): the link the next reading must carry.
                add_reading(AttestedReading(index, reading, _sha256(hash_prefix + payload).digest()))
                if len(self._batch) >= SIGNATURE_BATCH:
                    self.where.append(self._where)
                    yield self._batch
                    self._batch, self._where = [], []
                continue
            try:
                if isinstance(entry, EnrolmentEntry):
                    record = registry.enrol(index, entry)
                    if record.asset_id not in self._claimed_assets:
                        fail(
                            f"entry {index} enrols device {record.device_id} for asset {record.asset_id}, "
                            "which the claim does not name",
                            "unrelated_entry",
                        )
                elif isinstance(entry, RotationEntry):
                    registry.rotate(index, entry)
                elif isinstance(entry, RevocationEntry):
                    registry.revoke(index, entry)
            except (SignatureError, RegistryError) as exc:
                raise _entry_error(index, exc) from exc
