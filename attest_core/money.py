"""Money: decimal amounts as canonical text, currencies and the rounding rule.

Prices and amounts travel as decimal strings (``"0.35"``, ``"18308.50"``) and are
computed with :class:`decimal.Decimal` in a context wide enough that no
intermediate result is ever rounded.  Only a final revenue figure is rounded,
and always *down* (toward zero) to the currency's minor unit, so the attested
revenue never exceeds what the readings support.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import Final

from attest_core.errors import DecodeError

DECIMAL_RE: Final = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?")
CURRENCY_RE: Final = re.compile(r"[A-Z]{3}")

EXACT: Final = decimal.Context(
    prec=80, rounding=decimal.ROUND_DOWN, traps=[decimal.Inexact, decimal.Overflow]
)
"""Arithmetic context for revenue: 80 digits hold any product of the protocol's numbers exactly.

It traps ``Inexact``, so an intermediate result that would need rounding is an error, not a silent loss."""
_ROUNDING: Final = decimal.Context(prec=80, rounding=decimal.ROUND_DOWN)

MWH_PER_KWH: Final = 1_000_000

# ISO 4217 currencies whose minor unit is not 2 decimal places.
_MINOR_UNITS: Final = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip


def parse_decimal(text: str, what: str) -> Decimal:
    """A non-negative decimal written plainly: digits, optionally a point and 1-12 digits."""
    if not isinstance(text, str) or DECIMAL_RE.fullmatch(text) is None:
        raise DecodeError(
            f"{what} {text!r} is not a plain non-negative decimal (e.g. 0.35 or 18308.50: "
            "up to 18 integer and 12 fractional digits, no sign, exponent or leading zeros)",
            code="bad_decimal",
        )
    return Decimal(text)


def check_currency(code: str) -> str:
    if not isinstance(code, str) or CURRENCY_RE.fullmatch(code) is None:
        raise DecodeError(f"currency {code!r} is not a three-letter ISO 4217 code", code="bad_currency")
    return code


def minor_unit(currency: str) -> int:
    """Decimal places of the currency's minor unit (ISO 4217; 2 unless listed)."""
    return _MINOR_UNITS.get(currency, 2)


def round_down(amount: Decimal, currency: str) -> Decimal:
    """Round ``amount`` toward zero to the currency's minor unit."""
    quantum = Decimal(1).scaleb(-minor_unit(currency))
    return amount.quantize(quantum, rounding=decimal.ROUND_DOWN, context=_ROUNDING)


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
    mwh = value * MWH_PER_KWH
    if mwh != mwh.to_integral_value():
        raise DecodeError(
            f"{what} {text!r} has more than 6 decimals of a kWh (finer than 1 mWh)", code="bad_decimal"
        )
    return int(mwh)
