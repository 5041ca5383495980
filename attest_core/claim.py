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

The tariff's currency is an ISO 4217 code or a token (attest_core.currency).  A
claimed amount of a token is an amount the token can hold: at most its decimals
of fraction and at most 2^256 - 1 base units.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal

from attest_core.codec import Reader, Writer, check_id, check_u63
from attest_core.currency import MAX_BASE_UNITS, Currency
from attest_core.errors import ClaimError, DecodeError
from attest_core.money import EXACT, parse_decimal
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
        amount = parse_decimal(self.claimed_amount, "claimed amount")
        if self.tariff.unit.token is not None:
            _check_token_amount(amount, self.claimed_amount, self.tariff.unit)
        check_time(self.filed_at_ms, "filed_at_ms")

    @property
    def claimed_amount_value(self) -> Decimal:
        return Decimal(self.claimed_amount)

    @property
    def currency(self) -> str:
        """The currency's text as encoded (an ISO code or a token spelling)."""
        return self.tariff.currency

    @property
    def unit(self) -> Currency:
        """The parsed currency: symbol, decimals, token."""
        return self.tariff.unit

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


def _check_token_amount(amount: Decimal, text: str, unit: Currency) -> None:
    """A claimed amount of a token is a whole number of its base units that fits a uint256.

    An ISO amount keeps its earlier rule (any plain decimal): claims logged before
    tokens must decode as they did.
    """
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # parse_decimal admits no NaN or infinity
    if -exponent > unit.decimals:
        raise DecodeError(
            f"claimed amount {text!r} has more than the {unit.decimals} decimals of {unit.describe()}",
            code="bad_amount",
        )
    if EXACT.scaleb(amount, unit.decimals) > MAX_BASE_UNITS:
        raise DecodeError(
            f"claimed amount {text!r} is more than 2^256-1 base units of {unit.describe()}", code="bad_amount"
        )
