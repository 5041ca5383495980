"""The claim routes' request and answer models, and how a request becomes a protocol claim and a claim an answer."""

from __future__ import annotations

import itertools
import re
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from attest_core.claim import MAX_ASSETS, MAX_TITLE_BYTES, Claim
from attest_core.currency import CURRENCY_PATTERN, MAX_CURRENCY_CHARS
from attest_core.errors import AttestError
from attest_core.money import DECIMAL_RE, MAX_DECIMAL_CHARS, format_kwh, parse_kwh
from attest_core.tariff import MAX_SEGMENTS, Segment, Tariff
from gateway import claims as claim_store
from gateway.routes.common import ID_PATTERN, ApiError, Strict, b64, check_text
from gateway.routes.paging import Page
from gateway.routes.times import iso, parse_time

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
DECIMAL_PATTERN = "^" + DECIMAL_RE.pattern + "$"
RFC3339_EXAMPLE = "2026-10-01T00:00:00Z"
USDC_ON_ETHEREUM = "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC"


class SegmentIn(Strict):
    start: str = Field(
        max_length=5,
        description="when this price starts each day, HH:MM in UTC; the first segment starts at 00:00",
        json_schema_extra={"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
        examples=["00:00"],
    )
    price_per_kwh: str = Field(
        max_length=MAX_DECIMAL_CHARS, json_schema_extra={"pattern": DECIMAL_PATTERN}, examples=["0.35"]
    )


class TariffIn(Strict):
    currency: str = Field(
        max_length=MAX_CURRENCY_CHARS,
        description="an ISO 4217 code, or a token: its CAIP-19 asset id (eip155:<chain id>/erc20:<lowercase "
        "address>) then ;decimals=<0-18>;symbol=<1-11 letters and digits>. The token is identified by "
        "chain id and address; its decimals and symbol are signed with the claim",
        json_schema_extra={"pattern": CURRENCY_PATTERN},
        examples=["USD", USDC_ON_ETHEREUM],
    )
    price_per_kwh: str | None = Field(
        default=None,
        max_length=MAX_DECIMAL_CHARS,
        description="a flat price per kWh (decimal string); give this or segments",
        json_schema_extra={"pattern": DECIMAL_PATTERN},
        examples=["0.35"],
    )
    segments: list[SegmentIn] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SEGMENTS,
        description="a time-of-use schedule (UTC), each segment holding until the next starts",
    )


class ClaimRequest(Strict):
    title: str = Field(max_length=MAX_TITLE_BYTES, description="free text, at most 512 bytes of UTF-8")
    assets: list[Annotated[str, Field(max_length=64, json_schema_extra={"pattern": ID_PATTERN})]] = Field(
        min_length=1,
        max_length=MAX_ASSETS,
        description="the asset ids the claim covers (any order, each once)",
    )
    period_start: str = Field(
        max_length=64, description="RFC 3339 with an explicit offset; inclusive", examples=[RFC3339_EXAMPLE]
    )
    period_end: str = Field(
        max_length=64,
        description="RFC 3339 with an explicit offset; exclusive",
        examples=["2026-11-01T00:00:00Z"],
    )
    tariff: TariffIn
    claimed_energy_kwh: str = Field(
        max_length=MAX_DECIMAL_CHARS,
        description="exact decimal, at most 6 decimals (1 mWh)",
        json_schema_extra={"pattern": DECIMAL_PATTERN},
        examples=["52310"],
    )
    claimed_amount: str = Field(
        max_length=MAX_DECIMAL_CHARS,
        description="exact decimal, in the tariff's currency (in a token: at most its decimals of fraction)",
        json_schema_extra={"pattern": DECIMAL_PATTERN},
        examples=["18308.50"],
    )


class SegmentOut(BaseModel):
    start: str
    price_per_kwh: str


class TokenOut(BaseModel):
    asset: str = Field(description="the token's CAIP-19 asset id: its identity")
    chain_id: int
    address: str = Field(description="the contract address, lowercase")
    decimals: int = Field(description="amounts are rounded down to this many decimals")
    symbol: str = Field(description="shown beside amounts; not unique, so not an identity")


class TariffOut(BaseModel):
    currency: str = Field(description="as the claim carries it: an ISO 4217 code or a token's spelling")
    token: TokenOut | None = Field(
        default=None, description="the currency's token, taken apart; null for an ISO 4217 currency"
    )
    price_per_kwh: str | None = Field(description="the flat price; null for a time-of-use tariff")
    segments: list[SegmentOut]


class FindingOut(BaseModel):
    severity: Literal["fatal", "warning", "info"]
    code: str
    message: str
    asset_id: str | None
    device_id: str | None
    seq: int | None
    log_index: int | None


class DeviceVerdict(BaseModel):
    device_id: str
    readings_counted: int
    first_seq: int | None
    last_seq: int | None
    evidence: Literal["full", "boundary"] | None = Field(
        description="what the device's readings were evaluated as; null when it has none in the evidence"
    )
    start_proven: bool = Field(
        description="the evidence holds the reading before its first one in the period (or reading 1)"
    )
    end_proven: bool = Field(
        description="the evidence holds a reading after its last one in the period (false: none logged yet)"
    )
    missing_seqs: int = Field(description="readings missing between its lowest and highest sequence number")
    energy_mwh: int
    energy_kwh: str
    meter_signed_readings: int = Field(
        description="counted readings carrying a valid meter-signed (OCMF) value (attest_core.metercheck)"
    )
    meter_signed_mwh: int = Field(
        description="energy between consecutive counted readings that both carry a valid meter-signed value"
    )


class AssetVerdict(BaseModel):
    asset_id: str
    kind: Literal["charger", "solar"] | None
    readings_counted: int
    complete: bool = Field(description="readings counted, and every device's evidence is full")
    evidence: Literal["full", "boundary", "none"]
    energy_mwh: int
    energy_kwh: str
    meter_signed_mwh: int = Field(description="of energy_mwh, what the asset's meters signed themselves")
    meter_signed_kwh: str
    revenue: str
    devices: list[DeviceVerdict]


class CheckOut(BaseModel):
    check: str = Field(
        description="the finding code the check raises (tariff_pricing: how intervals are priced)"
    )
    description: str
    on_full: str = Field(description="what it covers on full evidence")
    on_boundary: str = Field(description="what it covers on boundary evidence ('not run' if nothing)")
    full_devices: int = Field(description="devices with full evidence it ran on")
    boundary_devices: int = Field(description="devices with boundary evidence")


class Verdict(BaseModel):
    backed: bool = Field(description="no fatal finding, and the attested energy and revenue cover the claim")
    checkpoint_size: int = Field(description="the evidence is the log as of the checkpoint of this tree size")
    energy_mwh: int
    energy_kwh: str
    revenue: str = Field(
        description="attested revenue, rounded down to the currency's minor unit (a token's: its decimals)"
    )
    revenue_exact: str
    currency: str
    readings_evaluated: int
    evidence: Literal["full"] = Field(
        description="the server evaluates full evidence: every reading from the one before the period to the one "
        "after it, per device"
    )
    checks: list[CheckOut] = Field(description="which checks ran on which evidence")
    assets: list[AssetVerdict]
    findings: list[FindingOut]


class ClaimOut(BaseModel):
    id: int
    issuer: str
    title: str
    assets: list[str]
    period_start: str
    period_end: str
    period_start_ms: int
    period_end_ms: int
    tariff: TariffOut
    claimed_energy_kwh: str
    claimed_energy_mwh: int
    claimed_amount: str
    currency: str
    filed_at: str
    log_index: int | None = Field(description="the claim entry's log index; null until the sequencer logs it")
    status: Literal["pending", "logged", "checkpointed"] = Field(
        description="pending: not logged yet; logged: not yet inside a checkpoint; checkpointed: bundles available"
    )
    entry: str = Field(description="base64 of the claim's log entry bytes")
    void: str | None = Field(
        default=None,
        description="null while the claim is live; else why it backs nothing: withdrawn, or superseded by claim N",
    )
    verdict: Verdict | None = Field(
        default=None, description="the server's verdict on full evidence (checkpointed claims, GET only)"
    )


class WithdrawalRequest(Strict):
    reason: str = Field(
        min_length=1,
        max_length=1000,
        description="why the claim is withdrawn: logged, public",
        examples=["filed twice"],
    )


class ClaimPage(Page):
    items: list[ClaimOut]


BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["format", "evidence", "checkpoint", "claim_index", "entries", "proof"],
    "properties": {
        "format": {"type": "string", "enum": ["iot-attest-evidence/v2"]},
        "evidence": {"type": "string", "enum": ["full", "boundary"]},
        "checkpoint": {"type": "string"},
        "claim_index": {"type": "integer", "minimum": 0},
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "entry"],
                "properties": {"index": {"type": "integer"}, "entry": {"type": "string"}},
            },
        },
        "proof": {"type": "array", "items": {"type": "string"}},
    },
}


def build_claim(body: ClaimRequest, issuer: str) -> Claim:
    """The protocol claim of a request, every value checked (400 with the core's code otherwise)."""
    title = check_text(body.title, "title")
    for asset in body.assets:
        check_text(asset, "asset id")
    assets = sorted(body.assets)
    repeated = sorted({a for a, b in itertools.pairwise(assets) if a == b})
    if repeated:
        raise ApiError(400, "bad_assets", f"assets: {', '.join(repeated[:5])} named more than once")
    start = parse_time(body.period_start, "period_start", allow_ms=False)
    end = parse_time(body.period_end, "period_end", allow_ms=False)
    tariff = body.tariff
    if (tariff.price_per_kwh is None) == (tariff.segments is None):
        raise ApiError(
            400, "bad_tariff", "tariff: give either price_per_kwh (flat) or segments (time of use)"
        )
    try:
        if tariff.segments is None:
            assert tariff.price_per_kwh is not None
            plan = Tariff.flat(tariff.currency, tariff.price_per_kwh)
        else:
            segments = []
            for n, seg in enumerate(tariff.segments):
                match = _HHMM.fullmatch(seg.start)
                if match is None:
                    raise ApiError(
                        400, "bad_tariff", f"tariff.segments.{n}.start {seg.start!r} is not HH:MM (UTC)"
                    )
                segments.append(Segment(int(match.group(1)) * 60 + int(match.group(2)), seg.price_per_kwh))
            plan = Tariff(tariff.currency, tuple(segments))
        energy = parse_kwh(body.claimed_energy_kwh, "claimed_energy_kwh")
        return Claim(
            issuer,
            title,
            start,
            end,
            tuple(assets),
            plan,
            energy,
            body.claimed_amount,
            int(time.time() * 1000),
        )
    except AttestError as exc:
        raise ApiError(400, exc.code, str(exc)) from exc


def tariff_out(tariff: Tariff) -> TariffOut:
    token = tariff.unit.token
    return TariffOut(
        currency=tariff.currency,
        token=None
        if token is None
        else TokenOut(
            asset=token.asset_id,
            chain_id=token.chain_id,
            address=token.address,
            decimals=token.decimals,
            symbol=token.symbol,
        ),
        price_per_kwh=tariff.segments[0].price_per_kwh if tariff.is_flat else None,
        segments=[
            SegmentOut(
                start=f"{s.start_minute // 60:02d}:{s.start_minute % 60:02d}", price_per_kwh=s.price_per_kwh
            )
            for s in tariff.segments
        ],
    )


def claim_out(stored: claim_store.StoredClaim, size: int | None, verdict: Verdict | None = None) -> ClaimOut:
    c = stored.claim
    if stored.log_index is None:
        status: Literal["pending", "logged", "checkpointed"] = "pending"
    elif size is None or stored.log_index >= size:
        status = "logged"
    else:
        status = "checkpointed"
    return ClaimOut(
        id=stored.id,
        issuer=c.issuer,
        title=c.title,
        assets=list(c.assets),
        period_start=iso(c.period_start_ms),
        period_end=iso(c.period_end_ms),
        period_start_ms=c.period_start_ms,
        period_end_ms=c.period_end_ms,
        tariff=tariff_out(c.tariff),
        claimed_energy_kwh=format_kwh(c.claimed_energy_mwh),
        claimed_energy_mwh=c.claimed_energy_mwh,
        claimed_amount=c.claimed_amount,
        currency=c.currency,
        filed_at=iso(c.filed_at_ms),
        log_index=stored.log_index,
        status=status,
        entry=b64(stored.entry),
        void=stored.voided_by,
        verdict=verdict,
    )
