"""Tariffs: what a kWh is worth, flat or by time of day (UTC).

A tariff is a currency (an ISO 4217 code or a token: :mod:`attest_core.currency`)
and a daily schedule of 1-48 segments.  Each segment
starts at a minute of the UTC day (the first at minute 0) and holds until the
next one starts; its price is per kWh.  A flat tariff is one segment.

Pricing rule for an interval between two readings: the energy measured over
[t1, t2] is priced at the *lowest* price in force at any moment of [t1, t2].
This never values energy above what the schedule allows, whichever moment of
the interval the energy actually flowed in.  Under a flat tariff it is simply
the flat price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from attest_core.codec import Reader, Writer
from attest_core.currency import Currency, parse_currency
from attest_core.errors import DecodeError
from attest_core.money import parse_decimal

MINUTES_PER_DAY = 1440
MS_PER_MINUTE = 60_000
MAX_SEGMENTS = 48


@dataclass(frozen=True, slots=True)
class Segment:
    start_minute: int
    """Minute of the UTC day (0-1439) at which this price starts."""
    price_per_kwh: str
    """Decimal string, e.g. "0.35"."""


@dataclass(frozen=True, slots=True)
class Tariff:
    currency: str
    """The currency's one spelling, as encoded: ``USD`` or ``eip155:1/erc20:0x...;decimals=6;symbol=USDC``."""
    segments: tuple[Segment, ...]
    _prices: tuple[Decimal, ...] = field(init=False, repr=False, compare=False)
    _unit: Currency = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_unit", parse_currency(self.currency))
        if not 1 <= len(self.segments) <= MAX_SEGMENTS:
            raise DecodeError(
                f"a tariff has 1 to {MAX_SEGMENTS} segments, got {len(self.segments)}", code="bad_tariff"
            )
        previous = -1
        for seg in self.segments:
            if not isinstance(seg.start_minute, int) or not 0 <= seg.start_minute < MINUTES_PER_DAY:
                raise DecodeError(
                    f"segment start minute {seg.start_minute!r} is outside 0..1439", code="bad_tariff"
                )
            if seg.start_minute <= previous:
                raise DecodeError(
                    "tariff segments must start at strictly increasing minutes", code="bad_tariff"
                )
            previous = seg.start_minute
            parse_decimal(seg.price_per_kwh, "price per kWh")
        if self.segments[0].start_minute != 0:
            raise DecodeError(
                "the first tariff segment must start at minute 0 (00:00 UTC)", code="bad_tariff"
            )
        object.__setattr__(self, "_prices", tuple(Decimal(s.price_per_kwh) for s in self.segments))

    @classmethod
    def flat(cls, currency: str, price_per_kwh: str) -> Tariff:
        return cls(currency, (Segment(0, price_per_kwh),))

    @property
    def is_flat(self) -> bool:
        return len(self.segments) == 1

    @property
    def prices(self) -> tuple[Decimal, ...]:
        return self._prices

    @property
    def unit(self) -> Currency:
        """The parsed currency: its symbol, its decimals, and the token if it is one."""
        return self._unit

    def _segment_at(self, minute_of_day: int) -> int:
        index = 0
        for i, seg in enumerate(self.segments):
            if seg.start_minute <= minute_of_day:
                index = i
        return index

    def min_price(self, t1_ms: int, t2_ms: int) -> Decimal:
        """The lowest price in force at any moment of [t1_ms, t2_ms] (Unix ms, UTC)."""
        prices = self.prices
        if len(prices) == 1:
            return prices[0]
        if t2_ms < t1_ms:
            t1_ms, t2_ms = t2_ms, t1_ms
        first, last = t1_ms // MS_PER_MINUTE, t2_ms // MS_PER_MINUTE
        if last - first >= MINUTES_PER_DAY:
            return min(prices)
        index = self._segment_at(first % MINUTES_PER_DAY)
        best = prices[index]
        # Walk the segment boundaries crossed between the two minutes.
        minute = first
        while True:
            nxt = index + 1
            day_start = minute - minute % MINUTES_PER_DAY
            boundary = day_start + (self.segments[nxt].start_minute if nxt < len(prices) else MINUTES_PER_DAY)
            if boundary > last:
                return best
            minute = boundary
            index = nxt % len(prices)
            best = min(best, prices[index])

    def encode_into(self, w: Writer) -> None:
        w.text8(self.currency).u8(len(self.segments))
        for seg in self.segments:
            w.u16(seg.start_minute).text8(seg.price_per_kwh)

    @classmethod
    def decode_from(cls, r: Reader) -> Tariff:
        currency = r.text8("currency")
        count = r.u8("tariff segment count")
        segments = tuple(
            Segment(r.u16("segment start minute"), r.text8("segment price")) for _ in range(count)
        )
        return cls(currency, segments)

    def describe(self) -> str:
        """The schedule for a reader, prices with the currency's symbol (a token's identity is shown
        once beside the claim: :meth:`Currency.describe`)."""
        symbol = self._unit.symbol
        if self.is_flat:
            return f"{self.segments[0].price_per_kwh} {symbol}/kWh"
        parts = [
            f"{s.start_minute // 60:02d}:{s.start_minute % 60:02d} {s.price_per_kwh}" for s in self.segments
        ]
        return f"time of use (UTC) {symbol}/kWh: " + ", ".join(parts)
