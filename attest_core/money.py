"""Money: decimal amounts as canonical text and the rounding rule.

Prices and amounts travel as decimal strings (``"0.35"``, ``"18308.50"``) and are
computed with :class:`decimal.Decimal` in a context wide enough that no
intermediate result is ever rounded.  Only a final revenue figure is rounded,
and always *down* (toward zero) to the currency's minor unit or the token's
decimals (:mod:`attest_core.currency`), so the attested revenue never exceeds
what the readings support.

The decimal format is sized for tokens: up to 18 fractional digits (the finest
unit of an 18-decimal token) and up to 78 integer digits (every uint256, the
largest balance an ERC-20 contract holds, written as whole units of a
0-decimal token).  Every decimal written in the narrower format of earlier
versions (18 integer and 12 fractional digits) is written the same way in this
one.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import Final

from attest_core.currency import parse_currency
from attest_core.errors import DecodeError

MAX_INTEGER_DIGITS: Final = 78
MAX_FRACTION_DIGITS: Final = 18
DECIMAL_RE: Final = re.compile(
    rf"(0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?"
)
MAX_DECIMAL_CHARS: Final = MAX_INTEGER_DIGITS + 1 + MAX_FRACTION_DIGITS
"""The longest decimal text: 97 characters, well inside a ``text8`` field."""

EXACT: Final = decimal.Context(
    prec=160, rounding=decimal.ROUND_DOWN, traps=[decimal.Inexact, decimal.Overflow]
)
"""Arithmetic context for revenue: 160 digits hold any sum of products of the protocol's numbers exactly.

A price has at most 96 significant digits and an energy at most 19, so a product has
at most 115 and a sum of up to 10^45 of them fits.  It traps ``Inexact``, so an
intermediate result that would need rounding is an error, not a silent loss."""
_ROUNDING: Final = decimal.Context(prec=160, rounding=decimal.ROUND_DOWN)

MWH_PER_KWH: Final = 1_000_000


def parse_decimal(text: str, what: str) -> Decimal:
    """A non-negative decimal written plainly: digits, optionally a point and 1-12 digits."""
    if not isinstance(text, str) or DECIMAL_RE.fullmatch(text) is None:
        raise DecodeError(
            f"{what} {text!r} is not a plain non-negative decimal (e.g. 0.35 or 18308.50: "
            f"up to {MAX_INTEGER_DIGITS} integer and {MAX_FRACTION_DIGITS} fractional digits, no sign, "
            "exponent or leading zeros)",
            code="bad_decimal",
        )
    return Decimal(text)


def minor_unit(currency: str) -> int:
    """Decimal places amounts in ``currency`` are rounded to: the ISO 4217 minor unit (2 unless
    listed) or the token's decimals."""
    return parse_currency(currency).decimals


def round_down(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` toward zero to the currency's minor unit (a token's: its decimals)."""
    quantum = Decimal(1).scaleb(-minor_unit(currency))
    return amount.quantize(quantum, rounding=decimal.ROUND_DOWN, context=_ROUNDING)


def format_amount(amount: Decimal | str, currency: str) -> str:
    """An amount with its currency for a reader: ``18308.50 USD``, ``12.345678 USDC``."""
    text = amount if isinstance(amount, str) else format(amount, "f")
    return f"{text} {parse_currency(currency).symbol}"


def energy_value(energy_mwh: int, price_per_kwh: Decimal) -> Decimal:
    """The exact value of ``energy_mwh`` milliwatt-hours at ``price_per_kwh``."""
    return EXACT.divide(EXACT.multiply(Decimal(energy_mwh), price_per_kwh), Decimal(MWH_PER_KWH))


def format_kwh(energy_mwh: int) -> str:
    """Milliwatt-hours as an exact kWh decimal string (``52310000000`` -> ``"52310"``)."""
    whole, frac = divmod(energy_mwh, MWH_PER_KWH)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:06d}".rstrip("0")


def parse_kwh(text: str, what: str = "energy") -> int:
    """An exact kWh decimal string (at most 6 decimals) as milliwatt-hours."""
    value = parse_decimal(text, what)
    # Exact: in the default context (28 digits) a long fraction would be rounded away unseen.
    mwh = _ROUNDING.multiply(value, Decimal(MWH_PER_KWH))
    if mwh != mwh.to_integral_value():
        raise DecodeError(
            f"{what} {text!r} has more than 6 decimals of a kWh (finer than 1 mWh)", code="bad_decimal"
        )
    return int(mwh)
