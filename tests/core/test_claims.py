"""Money, tariffs and claims."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest_core.claim import Claim
from attest_core.codec import Reader, Writer
from attest_core.errors import ClaimError, DecodeError
from attest_core.money import (
    energy_value,
    format_kwh,
    minor_unit,
    parse_decimal,
    parse_kwh,
    round_down,
)
from attest_core.tariff import Segment, Tariff
from tests.support import DAY, HOUR, T0

TOU = Tariff("EUR", (Segment(0, "0.20"), Segment(420, "0.35"), Segment(1320, "0.25")))


@pytest.mark.parametrize("text", ["0", "0.35", "18308.50", "123456789012345678.123456789012", "10"])
def test_plain_decimals_parse(text: str) -> None:
    assert parse_decimal(text, "x") == Decimal(text)


NOT_PLAIN = ["", "-1", "+1", "1e3", "01", "1.", ".5", "1.2.3", " 1", "1,5", "NaN", "Infinity"]
TOO_LONG = ["1.0000000000000000001", "1" * 79]  # 19 fractional, 79 integer digits


@pytest.mark.parametrize("text", NOT_PLAIN + TOO_LONG)
def test_other_decimals_are_refused(text: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_decimal(text, "price")
    assert info.value.code == "bad_decimal"
    assert "price" in str(info.value)


def test_rounding_is_down_to_the_minor_unit() -> None:
    assert round_down(Decimal("18308.509"), "USD") == Decimal("18308.50")
    assert round_down(Decimal("99.999"), "JPY") == Decimal("99")
    assert round_down(Decimal("1.23456"), "KWD") == Decimal("1.234")
    assert minor_unit("EUR") == 2
    assert minor_unit("JPY") == 0
    assert minor_unit("BHD") == 3


def test_energy_value_is_exact() -> None:
    # 52,310 kWh at 0.35 USD/kWh = 18,308.50 USD, the README's example.
    assert energy_value(52_310 * 1_000_000, Decimal("0.35")) == Decimal("18308.50")
    # 1 mWh at 0.000000000001 per kWh: no rounding anywhere
    assert energy_value(1, Decimal("0.000000000001")) == Decimal("1E-18")
    huge = energy_value((1 << 63) - 1, Decimal("999999999999999999.999999999999"))
    assert huge > 0


def test_kwh_text() -> None:
    assert format_kwh(52_310_000_000) == "52310"
    assert format_kwh(1_500) == "0.0015"
    assert parse_kwh("52310") == 52_310_000_000
    assert parse_kwh("0.000001") == 1
    with pytest.raises(DecodeError):
        parse_kwh("0.0000001")


@given(st.integers(0, (1 << 63) - 1))
def test_kwh_text_round_trips(mwh: int) -> None:
    assert parse_kwh(format_kwh(mwh)) == mwh


def at(hour: float, day: int = 0) -> int:
    return T0 + day * DAY + int(hour * HOUR)


def test_time_of_use_min_price() -> None:
    assert TOU.min_price(at(1), at(2)) == Decimal("0.20")
    assert TOU.min_price(at(8), at(9)) == Decimal("0.35")
    assert TOU.min_price(at(6.5), at(7.5)) == Decimal("0.20")  # straddles 07:00
    assert TOU.min_price(at(21.5), at(22.5)) == Decimal("0.25")  # straddles 22:00
    assert TOU.min_price(at(23), at(1, day=1)) == Decimal("0.20")  # straddles midnight
    assert TOU.min_price(at(8), at(8, day=1)) == Decimal("0.20")  # a whole day
    assert TOU.min_price(at(9), at(8)) == Decimal("0.35")  # either order
    assert TOU.min_price(at(7), at(7)) == Decimal("0.35")  # an instant at 07:00
    assert Tariff.flat("USD", "0.35").min_price(at(1), at(30)) == Decimal("0.35")


@given(st.integers(T0, T0 + 30 * DAY), st.integers(0, 3 * DAY))
def test_min_price_matches_a_minute_by_minute_scan(t1: int, length: int) -> None:
    t2 = t1 + length
    if length >= DAY:
        expected = min(TOU.prices)
    else:
        expected = min(
            TOU.prices[max(i for i, s in enumerate(TOU.segments) if s.start_minute <= (m % 1440))]
            for m in range(t1 // 60_000, t2 // 60_000 + 1)
        )
    assert TOU.min_price(t1, t2) == expected


@pytest.mark.parametrize(
    ("segments", "words"),
    [
        ((), "1 to 48"),
        ((Segment(60, "0.1"),), "minute 0"),
        ((Segment(0, "0.1"), Segment(0, "0.2")), "strictly increasing"),
        ((Segment(0, "0.1"), Segment(1440, "0.2")), "outside"),
        ((Segment(0, "-0.1"),), "decimal"),
    ],
)
def test_bad_tariffs(segments: tuple[Segment, ...], words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        Tariff("EUR", segments)


def test_bad_currency() -> None:
    with pytest.raises(DecodeError) as info:
        Tariff.flat("usd", "0.3")
    assert info.value.code == "bad_currency"


def test_tariff_round_trip_and_description() -> None:
    w = Writer()
    TOU.encode_into(w)
    r = Reader(w.getvalue(), "tariff")
    assert Tariff.decode_from(r) == TOU
    r.finish()
    assert TOU.describe() == "time of use (UTC) EUR/kWh: 00:00 0.20, 07:00 0.35, 22:00 0.25"
    assert Tariff.flat("USD", "0.35").describe() == "0.35 USD/kWh"


def claim(**changes: object) -> Claim:
    fields: dict[str, object] = {
        "issuer": "issuer-1",
        "title": "October",
        "period_start_ms": T0,
        "period_end_ms": T0 + DAY,
        "assets": ("a", "b"),
        "tariff": TOU,
        "claimed_energy_mwh": 1,
        "claimed_amount": "0.01",
        "filed_at_ms": T0 + DAY,
    }
    fields.update(changes)
    return Claim(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"period_end_ms": T0}, "bad_period"),
        ({"assets": ()}, "bad_assets"),
        ({"assets": ("b", "a")}, "bad_assets"),
        ({"assets": ("a", "a")}, "bad_assets"),
        ({"title": "x" * 513}, "bad_title"),
        ({"title": "line\nbreak"}, "bad_title"),
    ],
)
def test_bad_claims(changes: dict[str, object], code: str) -> None:
    with pytest.raises(ClaimError) as info:
        claim(**changes)
    assert info.value.code == code


def test_claim_field_errors() -> None:
    with pytest.raises(DecodeError):
        claim(claimed_amount="1e3")
    with pytest.raises(DecodeError):
        claim(assets=("a b",))
    with pytest.raises(DecodeError):
        claim(issuer="")


def test_claim_round_trip() -> None:
    c = claim(title="Octobre — énergie ☀")
    w = Writer()
    c.encode_into(w)
    r = Reader(w.getvalue(), "claim")
    assert Claim.decode_from(r) == c
    assert c.currency == "EUR"
    assert c.claimed_amount_value == Decimal("0.01")
