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
    """Sequence numbers absent between the first and last counted reading."""


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

    @property
    def readings_counted(self) -> int:
        return sum(d.readings_counted for d in self.devices)

    @property
    def complete(self) -> bool:
        """True if readings were counted and each one's predecessor in the period is present (full evidence)."""
        return self.readings_counted > 0 and all(d.missing_seqs == 0 for d in self.devices)


@dataclass(slots=True)
class Evaluation:
    claim: Claim
    assets: list[AssetResult]
    findings: list[Finding]
    readings_seen: int

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
        """Attested revenue, rounded down to the currency's minor unit."""
        return round_down(self.revenue_exact, self.claim.currency)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.FATAL]

    @property
    def backed(self) -> bool:
        return not self.fatal
