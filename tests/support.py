"""Builders shared by the tests: devices that sign real readings, and an in-memory log."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from attest_core.anchor import Anchor
from attest_core.bundle import Bundle, encode_bundle
from attest_core.chain import ChainState, next_reading
from attest_core.checkpoint import Checkpoint, sign_checkpoint
from attest_core.claim import Claim
from attest_core.device import AssetKind, EnrolmentStatement, Location, log_key_hash, sign_enrolment
from attest_core.entries import (
    IDENTITY_V2,
    ClaimEntry,
    EnrolmentEntry,
    Entry,
    ReadingEntry,
    RevocationEntry,
    RotationEntry,
    encode_entry,
)
from attest_core.keys import Ed25519Signer
from attest_core.merkle import consistency_proof, leaf_hash, multi_inclusion_proof, root_from_leaf_hashes
from attest_core.meterproof import MeterFormat, MeterKey, MeterRecord
from attest_core.note import NoteSigner, VerifierKey
from attest_core.reading import Envelope, Status, Trigger, reading_hash, sign_reading
from attest_core.tariff import Tariff
from attest_core.verdict import EvidenceKind

T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR
BERLIN = Location(52_520_000, 13_405_000)
LOG_ORIGIN = "test.example/log"
"""The origin of the tests' logs (MemoryLog's and the test gateway's), which devices enrol for."""


def seeded_signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(b"test seed " + name.encode()).digest())


LOG_KEY_SEED = seeded_signer("log key").seed
"""The seed of the tests' log key (MemoryLog's, and the test gateway's: tests.gateway.helpers)."""
LOG_KEY = VerifierKey.from_public_key(LOG_ORIGIN, seeded_signer("log key").public_key)
LOG_KEY_HASH = log_key_hash(LOG_KEY)
"""What an enrolment statement v2 for the tests' log names its key by."""


@dataclass
class TestDevice:
    device_id: str
    asset_id: str
    kind: AssetKind = AssetKind.CHARGER
    rated_power_w: int = 22_000
    location: Location | None = None
    log_origin: str | None = LOG_ORIGIN
    """The log the enrolment statement (v2) names; None makes a v1 statement, which names none."""
    log_key_hash: bytes = LOG_KEY_HASH
    """The hash of the log key a v2 statement names (another makes it a statement for another log
    of the same name)."""
    meter_key: MeterKey | None = None
    """The meter's own key (a certified charger's), carried in the statement's extension list."""
    signer: Ed25519Signer = field(init=False)
    statement: EnrolmentStatement = field(init=False)
    statement_bytes: bytes = field(init=False)
    pop: bytes = field(init=False)
    state: ChainState = field(init=False)

    __test__ = False  # not a pytest class

    def __post_init__(self) -> None:
        self.signer = seeded_signer(self.device_id)
        self.statement = EnrolmentStatement(
            self.device_id,
            self.signer.public_key,
            self.asset_id,
            self.kind,
            self.rated_power_w,
            self.location,
            T0 - DAY,
            self.log_origin,
            log_key_hash=None if self.log_origin is None else self.log_key_hash,
            extensions=() if self.meter_key is None else (self.meter_key.to_extension(),),
        )
        self.statement_bytes, self.pop = sign_enrolment(self.statement, self.signer)
        self.state = ChainState.genesis(self.statement.chain_anchor())

    def enrolment_entry(self, installer: str = "installer-1") -> EnrolmentEntry:
        return EnrolmentEntry(self.statement_bytes, self.pop, installer, T0 - DAY + 1000)

    def reading(
        self,
        time_ms: int,
        energy_mwh: int,
        *,
        power_mw: int | None = None,
        status: Status = Status.OK,
        trigger: Trigger = Trigger.PERIODIC,
        v1: bool = False,
        meter_record: MeterRecord | None = None,
    ) -> Envelope:
        """The device's next reading: payload v2, or with ``v1`` a v1 payload (no counters) as a
        v1 agent signs it; the counters go on as an agent upgraded from v1 derives them."""
        envelope, self.state = next_reading(
            self.state,
            self.signer,
            device_id=self.device_id,
            asset_id=self.asset_id,
            time_ms=time_ms,
            energy_mwh=energy_mwh,
            power_mw=power_mw,
            status=status,
            trigger=trigger,
            meter_record=meter_record,
        )
        if v1:
            envelope = sign_reading(dataclasses.replace(envelope.reading(), counters=None), self.signer)
            self.state = dataclasses.replace(self.state, prev_hash=reading_hash(envelope.payload))
        return envelope


class TestMeter:
    """A certified meter for tests: its own P-256 key, signing OCMF records as real meters do."""

    __test__ = False  # not a pytest class

    def __init__(self, seed: str = "meter-1") -> None:
        secret = int.from_bytes(hashlib.sha256(b"test meter\0" + seed.encode()).digest(), "big")
        self.private = ec.derive_private_key(secret % (2**255), ec.SECP256R1())
        der = self.private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        self.key = MeterKey("secp256r1", der)
        self.page = 0

    def record(
        self,
        values: list[tuple[int, str, int]],
        *,
        page: int | None = None,
        status: str = "G",
        pagination: str | None = None,
        pad: int = 0,
        register: str = "1-b:1.8.0",
    ) -> bytes:
        """A signed record of ``values`` (time ms, TX, register mWh), pagination ``T<page>`` (the
        next by default; ``pagination`` gives PG's text instead)."""
        if page is None:
            self.page += 1
            page = self.page
        rd = [
            {
                "TM": datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S,")
                + f"{t % 1000:03d}+0000 S",
                "TX": tx,
                "RV": f"@{Decimal(mwh) / 1_000_000}@",
                "RI": register,
                "RU": "kWh",
                "ST": status,
            }
            for t, tx, mwh in values
        ]
        doc: dict[str, Any] = {"FV": "1.0", "GI": "TEST METER", "PG": pagination or f"T{page}", "RD": rd}
        if pad:
            doc["GV"] = "x" * pad  # a long firmware version: a record near the 1,875-byte bound
        payload = json.dumps(doc, separators=(",", ":"))
        payload = payload.replace('"@', "").replace('@"', "")  # RV as a JSON number, exactly
        return self.sign_payload(payload.encode())

    def sign_payload(self, payload: bytes) -> bytes:
        """``OCMF|payload|signature``, signing exactly ``payload``."""
        signature = self.private.sign(payload, ec.ECDSA(hashes.SHA256())).hex()
        return b"OCMF|" + payload + f'|{{"SD":"{signature}"}}'.encode()

    def meter_record(self, values: list[tuple[int, str, int]], index: int = 0, **kwargs: Any) -> MeterRecord:
        return MeterRecord(MeterFormat.OCMF, index, self.record(values, **kwargs))


class MemoryLog:
    """A log held in memory: entries, checkpoints and bundles, as the gateway makes them."""

    def __init__(self, origin: str = LOG_ORIGIN) -> None:
        self.origin = origin
        self.note_signer = NoteSigner(origin, seeded_signer("log key"))
        self.entries: list[bytes] = []
        self.leaves: list[bytes] = []
        self.heads: dict[str, bytes] = {}
        """Asset -> leaf hash of its latest chained identity entry (what a claim names)."""

    @property
    def key(self) -> VerifierKey:
        return self.note_signer.verifier_key()

    def append(self, entry: Entry | bytes) -> int:
        data = entry if isinstance(entry, bytes) else encode_entry(entry)
        self.entries.append(data)
        self.leaves.append(leaf_hash(data))
        return len(self.entries) - 1

    def append_reading(self, envelope: Envelope) -> int:
        return self.append(ReadingEntry(envelope.encode()))

    def enrol(self, device: TestDevice, *, v1: bool = False) -> int:
        """Log the device's enrolment, chained to its asset's identity entries (v2) or not (v1)."""
        entry = device.enrolment_entry()
        if v1:  # an entry an earlier gateway logged: later ones name it all the same
            index = self.append(entry)
            self.heads[device.asset_id] = self.leaves[index]
            return index
        return self.append_identity(entry, device.asset_id)

    def append_identity(self, entry: EnrolmentEntry | RotationEntry | RevocationEntry, asset_id: str) -> int:
        """Log an identity entry as a v2 gateway does: naming the asset's previous one."""
        if isinstance(entry, RevocationEntry):
            chained: Entry = dataclasses.replace(entry, asset_link=self.heads.get(asset_id))
        else:
            chained = dataclasses.replace(entry, version=IDENTITY_V2, asset_link=self.heads.get(asset_id))
        index = self.append(chained)
        self.heads[asset_id] = self.leaves[index]
        return index

    def file_claim(self, claim: Claim, *, v1: bool = False) -> int:
        """Log ``claim`` as a v2 claim entry naming no earlier claim and its assets' latest chained
        identity entries (or as a v1 entry)."""
        if v1:
            return self.append(ClaimEntry(claim, claim.filed_at_ms + 1))
        heads = tuple(self.heads.get(a) for a in claim.assets)
        return self.append(ClaimEntry(claim, claim.filed_at_ms + 1, None, (None,) * len(claim.assets), heads))

    def checkpoint(self, size: int | None = None, time: int = 1_790_900_000) -> str:
        size = len(self.entries) if size is None else size
        cp = Checkpoint(self.origin, size, root_from_leaf_hashes(self.leaves[:size]), time)
        return sign_checkpoint(cp, self.note_signer)

    def bundle(
        self,
        claim_index: int,
        indices: list[int],
        size: int | None = None,
        evidence: EvidenceKind | None = None,
    ) -> Bundle:
        """A bundle of ``indices`` and the claim; ``evidence`` None makes a v1 bundle."""
        size = len(self.entries) if size is None else size
        wanted = sorted(set(indices) | {claim_index})
        proof = multi_inclusion_proof(wanted, size, self.leaves[:size])
        return Bundle(
            self.checkpoint(size),
            claim_index,
            tuple((i, self.entries[i]) for i in wanted),
            tuple(proof),
            evidence,
        )

    def anchor(self, anchored_size: int, bundle_size: int | None = None, **chain: Any) -> Anchor:
        """An anchor of the tree of ``anchored_size`` entries, proven consistent with the tree of
        ``bundle_size`` (default: all); ``chain`` overrides the chain's made-up values."""
        bundle_size = len(self.entries) if bundle_size is None else bundle_size
        values: dict[str, Any] = {
            "chain_id": 31337,
            "contract": "0x" + "c0" * 20,
            "operator": "0x" + "0e" * 20,
            "checkpoint": self.checkpoint(anchored_size),
            "tx_hash": "0x" + "ab" * 32,
            "block_number": 7,
            "block_hash": "0x" + "cd" * 32,
            "consistency": tuple(consistency_proof(anchored_size, bundle_size, self.leaves[:bundle_size])),
        }
        return Anchor(**(values | chain))

    def bundle_bytes(
        self, claim_index: int, indices: list[int], evidence: EvidenceKind | None = None
    ) -> bytes:
        return encode_bundle(self.bundle(claim_index, indices, evidence=evidence))


def flat_claim(
    assets: tuple[str, ...],
    *,
    start: int = T0,
    end: int = T0 + DAY,
    energy_mwh: int = 0,
    amount: str = "0",
    price: str = "0.35",
    currency: str = "USD",
) -> Claim:
    return Claim(
        "issuer-1",
        "test claim",
        start,
        end,
        tuple(sorted(assets)),
        Tariff.flat(currency, price),
        energy_mwh,
        amount,
        end + HOUR,
    )
