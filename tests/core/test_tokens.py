"""Claims in tokens: the currency's token spelling, its strict parsing, amounts rounded to the
token's decimals, and old ISO 4217 claims decoding exactly as before."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attest_core.bundle import verify_bundle
from attest_core.claim import Claim
from attest_core.codec import MAX_U63, Reader, Writer
from attest_core.currency import (
    CURRENCY_PATTERN,
    MAX_CURRENCY_CHARS,
    Token,
    parse_currency,
)
from attest_core.errors import DecodeError, VerificationError
from attest_core.money import energy_value, format_amount, minor_unit, parse_kwh, round_down
from attest_core.tariff import Segment, Tariff
from attest_core.verdict import EvidenceKind
from tests.core.test_bundle import KWH, Fleet
from tests.support import DAY, T0, flat_claim

USDC = "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC"
ADDRESS = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
WETH = f"eip155:31337/erc20:{ADDRESS};decimals=18;symbol=WETH"

tokens = st.builds(
    Token,
    st.integers(1, MAX_U63),
    st.from_regex(r"\A0x[0-9a-f]{40}\Z").filter(lambda a: a != "0x" + "0" * 40),
    st.integers(0, 18),
    st.from_regex(r"\A[A-Za-z0-9]{1,11}\Z"),
)


def claim_in(currency: str, amount: str = "0", price: str = "0.35") -> Claim:
    return Claim(
        "issuer-1", "October", T0, T0 + DAY, ("a",), Tariff.flat(currency, price), 0, amount, T0 + DAY
    )


def encoded(claim: Claim) -> bytes:
    w = Writer()
    claim.encode_into(w)
    return w.getvalue()


def decoded(data: bytes) -> Claim:
    r = Reader(data, "claim")
    claim = Claim.decode_from(r)
    r.finish()
    return claim


def test_a_token_is_its_caip19_asset_id_with_decimals_and_symbol() -> None:
    unit = parse_currency(USDC)
    assert unit.token == Token(1, "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", 6, "USDC")
    assert unit.token.asset_id == "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    assert unit.token.text == USDC
    assert (unit.symbol, unit.decimals) == ("USDC", 6)
    assert unit.describe() == "USDC (eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48, 6 decimals)"
    assert format_amount(Decimal("12.345678"), USDC) == "12.345678 USDC"
    assert minor_unit(USDC) == 6
    iso = parse_currency("JPY")
    assert (iso.token, iso.symbol, iso.decimals, iso.describe()) == (None, "JPY", 0, "JPY")
    assert Tariff.flat(USDC, "0.35").describe() == "0.35 USDC/kWh"


@given(tokens)
def test_every_token_spelling_round_trips_through_a_claim(token: Token) -> None:
    assert parse_currency(token.text).token == token
    assert len(token.text) <= MAX_CURRENCY_CHARS
    claim = claim_in(token.text)
    again = decoded(encoded(claim))
    assert again == claim
    assert again.unit.token == token


def test_the_longest_spelling() -> None:
    longest = Token(MAX_U63, ADDRESS, 18, "A" * 11).text
    assert len(longest) == MAX_CURRENCY_CHARS
    assert re.fullmatch(CURRENCY_PATTERN, longest)
    assert re.fullmatch(CURRENCY_PATTERN, "USD")
    assert not re.fullmatch(CURRENCY_PATTERN, longest.replace("0x5f", "0x5F"))


# Encoded by the code before tokens existed (commit cff3170): a time-of-use EUR claim, and a JPY
# claim at the old format's longest price.
OLD_EUR = bytes.fromhex(
    "086973737565722d3100074f63746f626572000001a0f4c2c400000001a0f9e920000002016101620345555203000004302e"
    "323001a404302e3335052804302e32350000000c2deb41800831383330382e3530000001a0f9e92000"
)
OLD_JPY = bytes.fromhex(
    "086973737565722d3100074f6374204a5059000001a0f4c2c400000001a0f9e9200000010161034a50590100001f31323334"
    "35363738393031323334353637382e31323334353637383930313200000000000000010130000001a0f9e92000"
)


def test_iso_claims_encoded_before_tokens_decode_and_encode_byte_for_byte() -> None:
    eur = decoded(OLD_EUR)
    assert eur.tariff == Tariff("EUR", (Segment(0, "0.20"), Segment(420, "0.35"), Segment(1320, "0.25")))
    assert (eur.claimed_amount, eur.unit.token, eur.unit.decimals) == ("18308.50", None, 2)
    assert encoded(eur) == OLD_EUR
    jpy = decoded(OLD_JPY)
    assert jpy.tariff.segments[0].price_per_kwh == "123456789012345678.123456789012"
    assert encoded(jpy) == OLD_JPY
    # and built anew, an ISO claim is the same bytes as before
    assert encoded(
        Claim("issuer-1", "Oct JPY", T0, T0 + DAY, ("a",), Tariff.flat("JPY", jpy.tariff.segments[0].price_per_kwh),
              1, "0", T0 + DAY)
    ) == OLD_JPY  # fmt: skip


@pytest.mark.parametrize(("currency", "code"), [
    ("usd", "bad_currency"),
    ("US", "bad_currency"),
    ("USDC", "bad_currency"),
    ("", "bad_currency"),
    ("erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "bad_currency"),
    ("EIP155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_currency"),
    # the shape: namespace, parameters, their order, nothing more
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "bad_token"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6", "bad_token"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;symbol=USDC;decimals=6", "bad_token"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC;", "bad_token"),
    ("eip155:1/erc721:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token"),
    ("eip155:1/slip44:60;decimals=18;symbol=ETH", "bad_token"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC ", "bad_token_symbol"),
    # chain id: positive decimal, no leading zeros, at most 2^63-1
    ("eip155:0/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_chain"),
    ("eip155:01/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_chain"),
    ("eip155:-1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_chain"),
    ("eip155:0x1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_chain"),
    ("eip155:/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_chain"),
    (f"eip155:{MAX_U63 + 1}/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC",
     "bad_token_chain"),
    # address: 0x and 40 lowercase hex digits, not the zero address; EIP-55 mixed case refused
    ("eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48;decimals=6;symbol=USDC", "bad_token_address"),
    ("eip155:1/erc20:0XA0B86991C6218B36C1D19D4A2E9EB0CE3606EB48;decimals=6;symbol=USDC", "bad_token_address"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb4;decimals=6;symbol=USDC", "bad_token_address"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb480;decimals=6;symbol=USDC", "bad_token_address"),
    ("eip155:1/erc20:a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDC", "bad_token_address"),
    ("eip155:1/erc20:0x0000000000000000000000000000000000000000;decimals=6;symbol=USDC", "bad_token_address"),
    # decimals: 0 to 18, no leading zeros
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=19;symbol=USDC", "bad_token_decimals"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=06;symbol=USDC", "bad_token_decimals"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=;symbol=USDC", "bad_token_decimals"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=-1;symbol=USDC", "bad_token_decimals"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=100;symbol=USDC", "bad_token_decimals"),
    # symbol: 1 to 11 ASCII letters and digits
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=", "bad_token_symbol"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDCUSDCUSDC",
     "bad_token_symbol"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USD.C", "bad_token_symbol"),
    ("eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48;decimals=6;symbol=USDС", "bad_token_symbol"),
])  # fmt: skip
def test_every_bad_currency_has_its_code(currency: str, code: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_currency(currency)
    assert info.value.code == code, info.value
    with pytest.raises(DecodeError) as info:
        Tariff.flat(currency, "0.35")
    assert info.value.code == code
    # and in a claim's bytes: the same code from the decoder
    good = encoded(claim_in("USD"))
    w = Writer()
    w.text8(currency)
    data = good.replace(b"\x03USD", w.getvalue())
    with pytest.raises(DecodeError) as info:
        decoded(data)
    assert info.value.code == code


def test_a_mixed_case_address_is_told_to_be_written_in_lowercase() -> None:
    with pytest.raises(DecodeError, match="lowercase: the mixed-case EIP-55 form"):
        parse_currency("eip155:1/erc20:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48;decimals=6;symbol=USDC")


@pytest.mark.parametrize(("fields", "code"), [
    ((0, ADDRESS, 6, "X"), "bad_token_chain"),
    ((True, ADDRESS, 6, "X"), "bad_token_chain"),
    ((MAX_U63 + 1, ADDRESS, 6, "X"), "bad_token_chain"),
    ((1, ADDRESS.upper(), 6, "X"), "bad_token_address"),
    ((1, ADDRESS, 19, "X"), "bad_token_decimals"),
    ((1, ADDRESS, -1, "X"), "bad_token_decimals"),
    ((1, ADDRESS, 6, ""), "bad_token_symbol"),
])  # fmt: skip
def test_a_token_built_directly_is_checked_too(fields: tuple[object, ...], code: str) -> None:
    with pytest.raises(DecodeError) as info:
        Token(*fields)  # type: ignore[arg-type]
    assert info.value.code == code


@pytest.mark.parametrize(("currency", "amount", "ok"), [
    (USDC, "12.345678", True),
    (USDC, "12.3456789", False),  # finer than the token's 6 decimals
    (USDC, "12.3456780", False),  # one spelling: no digits beyond the token's decimals
    (USDC, "12", True),
    (WETH, "0.000000000000000001", True),  # one wei
    (WETH, "115792089237316195423570985008687907853269984665640564039457.584007913129639935", True),  # 2^256-1 wei
    (WETH, "115792089237316195423570985008687907853269984665640564039457.584007913129639936", False),
    (WETH.replace("decimals=18", "decimals=0"), "1.5", False),
    (WETH.replace("decimals=18", "decimals=0"), str(1 << 256), False),
    (WETH.replace("decimals=18", "decimals=0"), str((1 << 256) - 1), True),
    ("USD", "12.3456789", True),  # ISO amounts keep the rule they always had
])  # fmt: skip
def test_a_claimed_amount_of_a_token_is_a_whole_number_of_base_units(
    currency: str, amount: str, ok: bool
) -> None:
    if ok:
        claim = claim_in(currency, amount)
        assert decoded(encoded(claim)) == claim
        return
    with pytest.raises(DecodeError) as info:
        claim_in(currency, amount)
    assert info.value.code == "bad_amount"


def test_an_amount_is_rounded_down_to_the_tokens_decimals() -> None:
    assert round_down(Decimal("12.3456789"), USDC) == Decimal("12.345678")
    assert round_down(Decimal("0.0000000000000000019"), WETH) == Decimal("0.000000000000000001")
    assert format(round_down(Decimal(0), WETH), "f") == "0.000000000000000000"
    zero_dp = WETH.replace("decimals=18", "decimals=0")
    assert round_down(Decimal("99.99"), zero_dp) == Decimal(99)
    # 1 mWh at an 18-decimal price: 24 decimals exact, then 18
    exact = energy_value(1, Decimal("0.350000000000000001"))
    assert exact == Decimal("3.50000000000000001E-7")
    assert format(round_down(exact, WETH), "f") == "0.000000350000000000"


def test_the_exact_context_holds_the_largest_numbers() -> None:
    biggest_price = Decimal("9" * 78 + "." + "9" * 18)
    value = energy_value(MAX_U63, biggest_price)
    assert Fraction(value) == Fraction(MAX_U63) * Fraction(biggest_price) / 1_000_000  # nothing lost
    assert round_down(value, WETH) <= value


def test_a_kwh_text_with_a_long_fraction_is_refused_not_rounded() -> None:
    # 31 significant digits: the default 28-digit context would have dropped the last one unseen
    with pytest.raises(DecodeError, match="more than 6 decimals"):
        parse_kwh("1234567890123.000000000000000001")
    assert parse_kwh("1234567890123.000001") == 1_234_567_890_123_000_001


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet()


PRICE = "0.123456789012345678"  # per kWh, 18 decimals


def test_revenue_in_a_token_is_rounded_down_once_from_the_exact_sum(fleet: Fleet) -> None:
    # 220 kWh: charger-a 92, charger-b 92, solar 36
    claim = flat_claim(("charger-a", "charger-b", "solar-s"), energy_mwh=220 * KWH, amount="27.160493",
                       price=PRICE, currency=USDC)  # fmt: skip
    result = verify_bundle(
        fleet.log.bundle_bytes(fleet.log.file_claim(claim), fleet.full(), EvidenceKind.FULL), fleet.log.key
    )
    ev = result.evaluation
    assert ev.revenue_exact == Decimal("27.160493582716049160")
    assert format(ev.revenue, "f") == "27.160493"
    # rounding each asset first would have lost a unit: 11.358024 + 11.358024 + 4.444444 = 27.160492
    assert sum(round_down(a.revenue_exact, USDC) for a in ev.assets) == Decimal("27.160492")
    assert result.backed, ev.findings


def test_an_18_decimal_overclaim_by_one_wei_is_not_backed(fleet: Fleet) -> None:
    exact = Decimal(220) * Decimal(PRICE)  # 27.160493582716049160 WETH
    for amount, backed in (("27.160493582716049160", True), ("27.160493582716049161", False)):
        claim = flat_claim(("charger-a", "charger-b", "solar-s"), energy_mwh=220 * KWH, amount=amount,
                           price=PRICE, currency=WETH)  # fmt: skip
        index = fleet.log.file_claim(claim)
        result = verify_bundle(fleet.log.bundle_bytes(index, fleet.full(), EvidenceKind.FULL), fleet.log.key)
        assert result.evaluation.revenue == exact
        assert result.backed is backed
        if not backed:
            (finding,) = [f for f in result.evaluation.findings if f.code == "revenue_overclaimed"]
            assert "27.160493582716049161 WETH" in finding.message
            assert "27.160493582716049160 WETH at 0.123456789012345678 WETH/kWh" in finding.message


@given(tokens, st.sampled_from(["decimals", "symbol"]), st.data())
def test_a_changed_decimals_or_symbol_changes_the_signed_bytes(
    token: Token, part: str, data: st.DataObject
) -> None:
    if part == "decimals":
        other = Token(token.chain_id, token.address, data.draw(st.integers(0, 18).filter(lambda d: d != token.decimals)),
                      token.symbol)  # fmt: skip
    else:
        symbol = data.draw(st.from_regex(r"\A[A-Za-z0-9]{1,11}\Z").filter(lambda s: s != token.symbol))
        other = Token(token.chain_id, token.address, token.decimals, symbol)
    a, b = encoded(claim_in(token.text)), encoded(claim_in(other.text))
    assert a != b
    assert decoded(a).unit.token == token
    assert decoded(b).unit.token == other


@pytest.mark.parametrize(("old", "new"), [(b"decimals=18", b"decimals=17"), (b"symbol=WETH", b"symbol=USDT")])
def test_a_logged_tokens_decimals_or_symbol_cannot_be_changed(fleet: Fleet, old: bytes, new: bytes) -> None:
    claim = flat_claim(("charger-a", "charger-b", "solar-s"), energy_mwh=KWH, amount="0.1", price="0.1",
                       currency=WETH)  # fmt: skip
    index = fleet.log.file_claim(claim)
    raw = fleet.log.bundle_bytes(index, fleet.full(), EvidenceKind.FULL)
    assert verify_bundle(raw, fleet.log.key).claim.unit.token == parse_currency(WETH).token
    doc = json.loads(raw)
    (item,) = [i for i in doc["entries"] if old in base64.b64decode(i["entry"])]
    item["entry"] = base64.b64encode(base64.b64decode(item["entry"]).replace(old, new)).decode()
    with pytest.raises(VerificationError):
        verify_bundle(json.dumps(doc).encode(), fleet.log.key)
