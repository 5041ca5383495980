"""Currencies: an ISO 4217 code, or a token named by its chain and contract.

A tariff's currency is one text field (``text8`` in the claim's encoding) that
holds exactly one of two spellings, told apart by their first characters:

- an ISO 4217 code, three capital letters (``USD``): amounts are rounded to its
  minor unit;
- a token: ``eip155:<chain id>/erc20:<address>;decimals=<d>;symbol=<s>``.  The
  part before the first ``;`` is the token's CAIP-19 asset id, so any tool that
  speaks CAIP-19 can read it; the two parameters after it are bound in the same
  signed text, so neither can be changed without changing the claim's bytes.

A token is *identified* by its chain id and contract address only.  Symbols are
not unique (many contracts call themselves USDC), so the symbol is a label shown
beside the amount, never a way to find the token; it is signed with the rest so
that what a reader is shown is what the issuer stated.  ``decimals`` is the
token's own (its ERC-20 ``decimals()``): an amount is rounded down to it, and a
claimed amount is a whole number of the token's base units.

Each token has one spelling, so equal currencies give equal bytes:

- the chain id is a positive decimal integer without leading zeros, at most
  2^63 - 1 (the chain ids of EIP-155 and the chain registry are far smaller);
- the address is ``0x`` and 40 *lowercase* hex digits, not the zero address.  The
  mixed-case EIP-55 form is refused rather than accepted: checking its checksum
  takes Keccak-256, which neither the core nor the verifier's base install
  carries, and a mixed-case address accepted unchecked could be a mistyped one;
- decimals is 0 to 18 without leading zeros (18 is the most any common token
  uses, and what the decimal format is sized for);
- the symbol is 1 to 11 ASCII letters and digits (case kept: ``stETH``).

The grammars of the two kinds do not overlap, so every claim encoded before
tokens existed decodes exactly as it did; a verifier that predates tokens
refuses a token claim as a bad currency instead of misreading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from attest_core.codec import MAX_U63
from attest_core.errors import DecodeError

ISO_RE: Final = re.compile(r"[A-Z]{3}")
EIP155_PREFIX: Final = "eip155:"
TOKEN_RE: Final = re.compile(r"eip155:([^/;]*)/erc20:([^/;]*);decimals=([^;]*);symbol=([^;]*)")
"""The shape of a token spelling; each part is then checked on its own, for a precise error."""
CHAIN_ID_RE: Final = re.compile(r"[1-9][0-9]{0,18}")
ADDRESS_RE: Final = re.compile(r"0x[0-9a-f]{40}")
DECIMALS_RE: Final = re.compile(r"0|[1-9][0-9]?")
SYMBOL_RE: Final = re.compile(r"[A-Za-z0-9]{1,11}")

MAX_TOKEN_DECIMALS: Final = 18
MAX_CURRENCY_CHARS: Final = 106
"""The longest spelling: a 19-digit chain id, 2-digit decimals and an 11-character symbol."""
ZERO_ADDRESS: Final = "0x" + "0" * 40
MAX_BASE_UNITS: Final = (1 << 256) - 1
"""An ERC-20 balance is a uint256 of base units: no claimed amount of a token exceeds it."""

CURRENCY_PATTERN: Final = r"^([A-Z]{3}|eip155:[1-9][0-9]{0,18}/erc20:0x[0-9a-f]{40};decimals=(0|[1-9][0-9]?);symbol=[A-Za-z0-9]{1,11})$"
"""Both spellings as one regular expression, for schemas (the parser says precisely what is wrong)."""

# ISO 4217 currencies whose minor unit is not 2 decimal places.
_MINOR_UNITS: Final = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
    "CLF": 4, "UYW": 4,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Token:
    """An ERC-20 token on an EVM chain, with the decimals and symbol the issuer states for it."""

    chain_id: int
    address: str
    decimals: int
    symbol: str

    def __post_init__(self) -> None:
        if (
            not isinstance(self.chain_id, int)
            or isinstance(self.chain_id, bool)
            or not 1 <= self.chain_id <= MAX_U63
        ):
            raise DecodeError(
                f"token chain id {self.chain_id!r} is not an integer from 1 to 2^63-1", code="bad_token_chain"
            )
        _check_address(self.address)
        if (
            not isinstance(self.decimals, int)
            or isinstance(self.decimals, bool)
            or not 0 <= self.decimals <= MAX_TOKEN_DECIMALS
        ):
            raise DecodeError(
                f"token decimals {self.decimals!r} is not an integer from 0 to {MAX_TOKEN_DECIMALS}",
                code="bad_token_decimals",
            )
        _check_symbol(self.symbol)

    @property
    def asset_id(self) -> str:
        """The token's CAIP-19 asset id: its identity (``eip155:1/erc20:0xa0b8...``)."""
        return f"eip155:{self.chain_id}/erc20:{self.address}"

    @property
    def text(self) -> str:
        """The one spelling of this token as a currency (what the claim signs)."""
        return f"{self.asset_id};decimals={self.decimals};symbol={self.symbol}"


@dataclass(frozen=True, slots=True)
class Currency:
    """A parsed currency: what amounts in it are rounded to, and how to show it."""

    text: str
    """Exactly the text the claim carries."""
    symbol: str
    """What an amount is shown with: the ISO code or the token's symbol."""
    decimals: int
    """Decimal places amounts are rounded down to: the ISO minor unit or the token's decimals."""
    token: Token | None
    """The token, or None for an ISO 4217 currency."""

    def describe(self) -> str:
        """The currency for a reader: ``USD``, or the symbol with the token's identity beside it."""
        if self.token is None:
            return self.symbol
        return f"{self.symbol} ({self.token.asset_id}, {self.decimals} decimals)"


def _check_address(address: object) -> None:
    if not isinstance(address, str) or ADDRESS_RE.fullmatch(address) is None:
        hint = ""
        if isinstance(address, str) and re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
            hint = " (write it in lowercase: the mixed-case EIP-55 form is not accepted)"
        raise DecodeError(
            f"token address {address!r} is not 0x and 40 lowercase hex digits{hint}", code="bad_token_address"
        )
    if address == ZERO_ADDRESS:
        raise DecodeError(
            "token address is the zero address, which holds no contract", code="bad_token_address"
        )


def _check_symbol(symbol: object) -> None:
    if not isinstance(symbol, str) or SYMBOL_RE.fullmatch(symbol) is None:
        raise DecodeError(
            f"token symbol {symbol!r} is not 1 to 11 ASCII letters and digits", code="bad_token_symbol"
        )


def parse_token(text: str) -> Token:
    """The token a currency text names (``eip155:...``), every part checked; one spelling each."""
    match = TOKEN_RE.fullmatch(text)
    if match is None:
        raise DecodeError(
            f"currency {text!r} is not a token written eip155:<chain id>/erc20:<address>;decimals=<0-18>;"
            "symbol=<symbol> (in that order, nothing else)",
            code="bad_token",
        )
    chain, address, decimals, symbol = match.groups()
    if CHAIN_ID_RE.fullmatch(chain) is None or int(chain) > MAX_U63:
        raise DecodeError(
            f"token chain id {chain!r} is not a positive decimal integer up to 2^63-1 without leading zeros",
            code="bad_token_chain",
        )
    _check_address(address)
    if DECIMALS_RE.fullmatch(decimals) is None or int(decimals) > MAX_TOKEN_DECIMALS:
        raise DecodeError(
            f"token decimals {decimals!r} is not 0 to {MAX_TOKEN_DECIMALS} without leading zeros",
            code="bad_token_decimals",
        )
    return Token(int(chain), address, int(decimals), symbol)


def parse_currency(text: str) -> Currency:
    """An ISO 4217 code or a token spelling; anything else is ``bad_currency`` (or a ``bad_token*``)."""
    if isinstance(text, str) and ISO_RE.fullmatch(text) is not None:
        return Currency(text, text, _MINOR_UNITS.get(text, 2), None)
    if isinstance(text, str) and text.startswith(EIP155_PREFIX):
        token = parse_token(text)
        return Currency(text, token.symbol, token.decimals, token)
    raise DecodeError(
        f"currency {text!r} is neither a three-letter ISO 4217 code nor a token "
        "(eip155:<chain id>/erc20:<address>;decimals=<0-18>;symbol=<symbol>)",
        code="bad_currency",
    )
