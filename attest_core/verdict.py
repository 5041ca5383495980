"""What an evaluation finds: findings, per-device and per-asset results, the verdict.

The rules that produce them are :mod:`attest_core.evaluation`'s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from attest_core.claim import Claim
from attest_core.device import AssetKind
from attest_core.money import EXACT, round_down
from attest_core.reading import Reading


class EvidenceKind(enum.Enum):
    """How much of a device's log a bundle carries (bundle v2's ``evidence`` member)."""

    FULL = "full"
    """Every reading of the device from the one before the period to the one after it (a
    sequence range): a reading missing inside it is fatal (``readings_omitted``)."""
    BOUNDARY = "boundary"
    """The first and the last reading inside the period: enough for the energy figure; the
    checks that need every interval cannot run between them."""


class Severity(enum.Enum):
    FATAL = "fatal"
    """The claim cannot be backed while this stands."""
    WARNING = "warning"
    """Worth an auditor's attention; does not change the verdict."""
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    code: str
    message: str
    asset_id: str | None = None
    device_id: str | None = None
    seq: int | None = None
    log_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value, "code": self.code, "message": self.message}
        for key in ("asset_id", "device_id", "seq", "log_index"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class AttestedReading:
    """A reading whose signature, key and log inclusion are already verified."""

    log_index: int
    reading: Reading
    payload_hash: bytes
    """reading_hash(payload): what the next reading must carry as prev_hash."""


@dataclass(slots=True)
class DeviceResult:
    device_id: str
    readings_counted: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_time_ms: int | None = None
    last_time_ms: int | None = None
    energy_mwh: int = 0
    revenue_exact: Decimal = Decimal(0)
    missing_seqs: int = 0
    """Sequence numbers absent between the lowest and the highest one present (counted or not)."""
    evidence: EvidenceKind | None = None
    """What the device's readings are evaluated as; None when the evidence holds none of them."""
    start_proven: bool = False
    """The evidence shows the reading before the first one in the period (or reading 1)."""
    end_proven: bool = False
    """The evidence shows a reading after the last one in the period (or the revocation's last valid one)."""
    meter_signed_readings: int = 0
    """Counted readings carrying a valid meter-signed value (attest_core.metercheck)."""
    meter_signed_mwh: int = 0
    """Attested energy between consecutive counted readings carrying a valid meter-signed value (the
    unsigned readings between them aside)."""
    meter_signed_revenue_exact: Decimal = Decimal(0)
    """That energy priced span by span, each at the lowest price in force during it (exact)."""


@dataclass(slots=True)
class AssetResult:
    asset_id: str
    kind: AssetKind | None
    rated_power_w: int = 0
    devices: list[DeviceResult] = field(default_factory=list)
    energy_mwh: int = 0
    revenue_exact: Decimal = Decimal(0)
    series: list[tuple[int, int]] = field(default_factory=list)
    """(device time ms, energy attested so far in the period, mWh): for charts."""
    meter_signed_mwh: int = 0
    """Of ``energy_mwh``, what the asset's meters signed themselves (both ends of each interval)."""

    @property
    def meter_signed_share(self) -> Decimal | None:
        """``meter_signed_mwh / energy_mwh`` (None when no energy is attested)."""
        if self.energy_mwh <= 0:
            return None
        return Decimal(self.meter_signed_mwh) / Decimal(self.energy_mwh)

    @property
    def readings_counted(self) -> int:
        return sum(d.readings_counted for d in self.devices)

    @property
    def evidence(self) -> str:
        """``"full"`` when every device with readings has full evidence, ``"boundary"`` when one has
        boundary evidence, ``"none"`` when no reading counts."""
        if self.readings_counted == 0:
            return "none"
        kinds = {d.evidence for d in self.devices if d.evidence is not None}
        return "boundary" if EvidenceKind.BOUNDARY in kinds else "full"

    @property
    def complete(self) -> bool:
        """True if readings were counted and every device's evidence is full."""
        return self.evidence == "full"


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One check and how it ran on each kind of evidence: what every verdict shows."""

    code: str
    """The finding code the check raises (or, for pricing, a name of its own)."""
    description: str
    on_full: str
    """What the check covers on a device with full evidence."""
    on_boundary: str
    """What it covers on a device with boundary evidence (``"not run"`` if nothing)."""
    full_devices: int
    """Devices with full evidence it ran on."""
    boundary_devices: int
    """Devices with boundary evidence (it ran as :attr:`on_boundary` says)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.code,
            "description": self.description,
            "on_full": self.on_full,
            "on_boundary": self.on_boundary,
            "full_devices": self.full_devices,
            "boundary_devices": self.boundary_devices,
        }


@dataclass(slots=True)
class Evaluation:
    claim: Claim
    assets: list[AssetResult]
    findings: list[Finding]
    readings_seen: int
    declared: EvidenceKind | None = None
    """The evidence the bundle declares (v2); None for a v1 bundle, whose devices are each
    classified by what their readings show."""
    checks: list[CheckRun] = field(default_factory=list)
    """Which checks ran on which evidence."""

    @property
    def boundary_devices(self) -> list[str]:
        """Devices whose readings are evaluated as boundary evidence."""
        return [d.device_id for a in self.assets for d in a.devices if d.evidence is EvidenceKind.BOUNDARY]

    @property
    def energy_mwh(self) -> int:
        return sum(a.energy_mwh for a in self.assets)

    @property
    def revenue_exact(self) -> Decimal:
        total = Decimal(0)
        for asset in self.assets:
            total = EXACT.add(total, asset.revenue_exact)
        return total

    @property
    def revenue(self) -> Decimal:
        """Attested revenue, rounded down once to the currency's minor unit (a token's: its decimals)."""
        return round_down(self.revenue_exact, self.claim.currency)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.FATAL]

    @property
    def backed(self) -> bool:
        return not self.fatal
