"""Cash-flow claims: what an issuer asserts about its assets over a period.

Claim v1 (the body of a claim log entry)::

    text8   issuer             identifier of the issuer that filed it
    text16  title              free text, at most 512 bytes of UTF-8, no control characters
    u64     period_start_ms    inclusive (Unix ms, UTC)
    u64     period_end_ms      exclusive
    u16     asset count        1..65535
    text8*  asset ids          strictly ascending (sorted, no duplicates)
    tariff                     see attest_core.tariff
    u64     claimed_energy_mwh
    text8   claimed_amount     decimal string in the tariff's currency
    u64     filed_at_ms
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.errors import ClaimError, DecodeError
from attest_core.money import parse_decimal
from attest_core.reading import check_time
from attest_core.tariff import Tariff

MAX_TITLE_BYTES = 512
MAX_ASSETS = 65_535


@dataclass(frozen=True, slots=True)
class Claim:
    issuer: str
    title: str
    period_start_ms: int
    period_end_ms: int
    assets: tuple[str, ...]
    tariff: Tariff
    claimed_energy_mwh: int
    claimed_amount: str
    filed_at_ms: int

    def __post_init__(self) -> None:
        check_id(self.issuer, "issuer")
        if not isinstance(self.title, str) or len(self.title.encode("utf-8")) > MAX_TITLE_BYTES:
            raise ClaimError(f"a claim title is at most {MAX_TITLE_BYTES} bytes of UTF-8", code="bad_title")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.title):
            raise ClaimError("a claim title must not contain control characters", code="bad_title")
        check_time(self.period_start_ms, "period_start_ms")
        check_time(self.period_end_ms, "period_end_ms")
        if self.period_end_ms <= self.period_start_ms:
            raise ClaimError("the claim period must end after it starts", code="bad_period")
        if not 1 <= len(self.assets) <= MAX_ASSETS:
            raise ClaimError(
                f"a claim names 1 to {MAX_ASSETS} assets, got {len(self.assets)}", code="bad_assets"
            )
        for asset in self.assets:
            check_id(asset, "asset id")
        if any(a >= b for a, b in itertools.pairwise(self.assets)):
            raise ClaimError("claim assets must be sorted and unique", code="bad_assets")
        check_u63(self.claimed_energy_mwh, "claimed_energy_mwh")
        parse_decimal(self.claimed_amount, "claimed amount")
        check_time(self.filed_at_ms, "filed_at_ms")

    @property
    def claimed_amount_value(self) -> Decimal:
        return Decimal(self.claimed_amount)

    @property
    def currency(self) -> str:
        return self.tariff.currency

    def encode_into(self, w: Writer) -> None:
        w.text8(self.issuer).text16(self.title).u64(self.period_start_ms).u64(self.period_end_ms)
        w.u16(len(self.assets))
        for asset in self.assets:
            w.text8(asset)
        self.tariff.encode_into(w)
        w.u64(self.claimed_energy_mwh).text8(self.claimed_amount).u64(self.filed_at_ms)

    @classmethod
    def decode_from(cls, r: Reader) -> Claim:
        issuer = r.ident("issuer")
        title = r.text16("title")
        start = r.u63("period_start_ms")
        end = r.u63("period_end_ms")
        count = r.u16("asset count")
        assets = tuple(r.ident("asset id") for _ in range(count))
        tariff = Tariff.decode_from(r)
        energy = r.u63("claimed_energy_mwh")
        amount = r.text8("claimed_amount")
        filed = r.u63("filed_at_ms")
        try:
            return cls(issuer, title, start, end, assets, tariff, energy, amount, filed)
        except ClaimError as exc:
            raise DecodeError(f"{r.what}: {exc}", code=exc.code) from exc
