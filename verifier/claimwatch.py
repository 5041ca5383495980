"""``verifier monitor --claims``: read every entry of the log and check every claim.

A bundle shows its claim's chain of earlier claims, but not what came after it (a later
withdrawal or supersession) nor a claim whose links skip a live claim.  A monitor that reads
every entry sees those.  Each round, once the checkpoint is accepted, the watch reads the new
entries (``GET /v1/log/entries?start=&end=``, 1,000 at a time), folds their leaf hashes into
the Merkle frontier it keeps, and requires the frontier's root to be the checkpoint's: the
entries it judged are then provably the log's.  It replays every claim and withdrawal through
:class:`attest_core.claimchain.LiveClaims` (the gateway's rules) and raises an alert on a
double claim, a stale link or a claim voided by someone other than its issuer; it replays the
identity entries through :class:`attest_core.identitychain.IdentityHeads` and raises an alert
when an identity entry or a claim does not name its asset's latest identity entry.  Each alert
saves the entries, their inclusion proofs and the checkpoint as evidence anyone can re-check.
Withdrawals, supersessions and revocations that disown logged readings are logged, so a holder
following the log learns of them.

The watch's state (entries read, the frontier, the live claims, each device's asset and each
asset's latest identity entry) is ``claims-scan.json`` in the
state directory, written atomically after each scan: a crash re-reads at most one scan.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attest_core.checkpoint import SignedCheckpoint
from attest_core.claimchain import Alert, LiveClaims, LoggedClaim, LoggedWithdrawal
from attest_core.entries import (
    ClaimEntry,
    EnrolmentEntry,
    RevocationEntry,
    RotationEntry,
    WithdrawalEntry,
    decode_entry,
)
from attest_core.errors import AttestError
from attest_core.identitychain import IdentityHeads
from attest_core.merkle import CompactRange, frontier_nodes, leaf_hash
from verifier.errors import GatewayUnreachable
from verifier.state import write_atomically

STATE_FILE = "claims-scan.json"
RANGE = 1000
MAX_RANGE_BYTES = 8 * 1024 * 1024

Fetch = Callable[[str, int], bytes]
"""fetch(path, limit): the gateway's answer to GET path, at most limit bytes."""


@dataclass(frozen=True)
class ClaimAlert:
    alert: Alert
    files: dict[str, bytes]
    report: str


class ClaimWatch:
    def __init__(self, state_dir: Path, fetch: Fetch, info: Callable[[str], None]) -> None:
        self.path = state_dir / STATE_FILE
        self.fetch = fetch
        self.info = info
        self.frontier = CompactRange()
        self.live = LiveClaims()
        self.identity = IdentityHeads()
        self.entries: dict[int, bytes] = {}
        """Entry bytes of the live claims, by index (what the saved state keeps)."""
        if self.path.exists():
            self._load()

    @property
    def size(self) -> int:
        return self.frontier.size

    def _load(self) -> None:
        doc = json.loads(self.path.read_bytes())
        size = int(doc["size"])
        hashes = [base64.b64decode(h) for h in doc["frontier"]]
        self.frontier = CompactRange.from_nodes(size, dict(zip(frontier_nodes(size), hashes, strict=True)))
        for item in doc["live"]:
            data = base64.b64decode(item["entry"])
            entry = decode_entry(data)
            assert isinstance(entry, ClaimEntry)
            self.live.restore(LoggedClaim(int(item["index"]), leaf_hash(data), entry))
            self.entries[int(item["index"])] = data
        self.identity.asset_of = dict(doc.get("asset_of", {}))
        self.identity.heads = {
            asset: (int(index), base64.b64decode(leaf))
            for asset, (index, leaf) in doc.get("heads", {}).items()
        }

    def _save(self) -> None:
        live = {c.index for c in self.live.claims.values()}
        doc = {
            "size": self.frontier.size,
            "frontier": [base64.b64encode(h).decode() for h in self.frontier.hashes],
            "live": [{"index": i, "entry": base64.b64encode(self.entries[i]).decode()} for i in sorted(live)],
            "asset_of": self.identity.asset_of,
            "heads": {a: [i, base64.b64encode(h).decode()] for a, (i, h) in self.identity.heads.items()},
        }
        write_atomically(self.path, json.dumps(doc, separators=(",", ":")).encode())

    def _range(self, start: int, end: int) -> list[bytes]:
        raw = self.fetch(f"/v1/log/entries?start={start}&end={end}", MAX_RANGE_BYTES)
        try:
            items = json.loads(raw)["entries"]
            out = []
            for n, item in enumerate(items):
                if item["index"] != start + n:
                    raise ValueError(f"entry {start + n} expected, {item['index']} served")
                out.append(base64.b64decode(item["entry"], validate=True))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise GatewayUnreachable(
                f"GET /v1/log/entries?start={start}&end={end}: a bad answer ({exc})"
            ) from None
        if len(out) != end - start:
            raise GatewayUnreachable(
                f"GET /v1/log/entries?start={start}&end={end}: {len(out)} entries served, {end - start} expected"
            )
        return out

    def scan(self, signed: SignedCheckpoint) -> list[ClaimAlert]:
        """Read the entries up to the checkpoint's size and check them: an alert for each broken rule.

        Raises :class:`GatewayUnreachable` on network trouble or a malformed answer (nothing
        is saved then: the next round reads the same entries again).
        """
        size = signed.checkpoint.size
        if size <= self.size:
            return []
        frontier = self.frontier.copy()
        read: list[tuple[int, bytes]] = []
        for start in range(self.size, size, RANGE):
            end = min(start + RANGE, size)
            for n, data in enumerate(self._range(start, end)):
                frontier.append(leaf_hash(data))
                read.append((start + n, data))
        if frontier.root() != signed.checkpoint.root_hash:
            alert = Alert(
                "entries_mismatch",
                f"the entries the log served for indices {self.size}..{size - 1} are not the ones its "
                f"checkpoint of size {size} commits to (root {frontier.root().hex()} computed, "
                f"{signed.checkpoint.root_hash.hex()} signed)",
                self.size,
            )
            return [ClaimAlert(alert, {"checkpoint.txt": signed.note_text.encode()}, alert.message)]
        found: list[ClaimAlert] = []
        live = self.live
        for index, data in read:
            try:
                entry = decode_entry(data)
            except AttestError:
                continue  # a malformed entry is no claim; the bundle verifier refuses it where it matters
            alerts: list[Alert] = []
            if isinstance(entry, EnrolmentEntry | RotationEntry | RevocationEntry):
                alerts = self.identity.add(index, leaf_hash(data), entry)
            if isinstance(entry, ClaimEntry):
                logged = LoggedClaim(index, leaf_hash(data), entry)
                voided = None if entry.supersedes is None else live.claims.get(entry.supersedes)
                alerts = live.add_claim(logged) + self.identity.check_claim(index, entry)
                if logged.leaf_hash in live.claims:
                    self.entries[index] = data
                if voided is not None and voided.leaf_hash not in live.claims:
                    self.info(f"claim at entry {voided.index} superseded by the claim at entry {index}")
            if isinstance(entry, RevocationEntry) and entry.readings_disowned:
                # Not a rule broken (an operator may disown, with a reason), but every claim on
                # those readings loses them: a holder following the log is told.
                self.info(
                    f"device {entry.device_id} revoked at entry {index} by {entry.revoked_by}, disowning "
                    f"{entry.readings_disowned} logged reading(s) above {entry.last_valid_seq}: {entry.reason!r}"
                )
            if isinstance(entry, WithdrawalEntry):
                target = live.claims.get(entry.claim)
                alerts = live.add_withdrawal(LoggedWithdrawal(index, entry))
                if target is not None and target.leaf_hash not in live.claims:
                    self.info(f"claim at entry {target.index} withdrawn at entry {index}: {entry.reason!r}")
            found.extend(self._evidence(alert, signed, data, index) for alert in alerts)
        self.frontier = frontier
        self.entries = {
            c.index: self.entries[c.index] for c in live.claims.values() if c.index in self.entries
        }
        self._save()
        return found

    def _evidence(self, alert: Alert, signed: SignedCheckpoint, data: bytes, index: int) -> ClaimAlert:
        size = signed.checkpoint.size
        files = {"checkpoint.txt": signed.note_text.encode(), f"entry-{index}.bin": data}
        files[f"inclusion-{index}.json"] = self.fetch(
            f"/v1/log/proof/inclusion?index={index}&size={size}", 65536
        )
        lines = [
            f"entry {index}: python -m verifier inclusion --log-key KEY --checkpoint checkpoint.txt "
            f"--entry entry-{index}.bin --index {index} --proof inclusion-{index}.json"
        ]
        if alert.other is not None:
            other = self.entries.get(alert.other)
            if other is None:
                other = self.fetch(f"/v1/log/entries/{alert.other}", 1024 * 1024)
            files[f"entry-{alert.other}.bin"] = other
            files[f"inclusion-{alert.other}.json"] = self.fetch(
                f"/v1/log/proof/inclusion?index={alert.other}&size={size}", 65536
            )
            lines.append(
                f"entry {alert.other}: python -m verifier inclusion --log-key KEY --checkpoint checkpoint.txt "
                f"--entry entry-{alert.other}.bin --index {alert.other} --proof inclusion-{alert.other}.json"
            )
        report = "\n".join(
            [
                alert.message,
                "",
                "Both entries are in the log the checkpoint signs; each is re-checked with:",
                *lines,
                "",
            ]
        )
        return ClaimAlert(alert, files, report)
