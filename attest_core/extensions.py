"""Extension lists of v2 signed structures: room for what comes next without a version 3.

A reading payload v2 and an enrolment statement v2 end (before anything fixed after them) with::

    u8      extension count    at most 255
    [u8 type, bytes16 value]   per extension, types strictly ascending (each once)

Each structure has its own registry of types (a reading's: type 1, the meter's own signed
record; an enrolment's: type 1, the meter's public key and curve; attest_core.meterproof).  A
type a verifier does not know could change a verdict, so it is refused, never skipped
(``unknown_extension``).  Defining a type extends v2; it needs no new version.  Types
are strictly ascending, so a list has one encoding (``bad_extension_order``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import NamedTuple

from attest_core.codec import Reader, Writer
from attest_core.errors import DecodeError

MAX_EXTENSIONS = 255
MAX_VALUE_BYTES = 0xFFFF


class Extension(NamedTuple):
    """One entry of an extension list: a type byte and a value whose meaning the type gives."""

    type: int
    value: bytes


def check_extensions(extensions: Iterable[Extension], known: frozenset[int], what: str) -> None:
    """Refuse a list that cannot be encoded, or that holds a type ``known`` does not name."""
    items = tuple(extensions)
    if len(items) > MAX_EXTENSIONS:
        raise DecodeError(f"{what}: at most {MAX_EXTENSIONS} extensions", code="too_large")
    for extension in items:
        if not isinstance(extension, Extension):
            raise DecodeError(f"{what}: {extension!r} is not an Extension", code="bad_extension")
        if not isinstance(extension.type, int) or not 0 <= extension.type <= 255:
            raise DecodeError(f"{what}: extension type {extension.type!r} is not a byte", code="out_of_range")
        if extension.type not in known:
            raise DecodeError(
                f"{what}: extension type {extension.type} is unknown",
                code="unknown_extension",
            )
        if not isinstance(extension.value, bytes) or len(extension.value) > MAX_VALUE_BYTES:
            raise DecodeError(
                f"{what}: an extension value is at most {MAX_VALUE_BYTES} bytes", code="too_large"
            )
    types = [extension.type for extension in items]
    if any(a >= b for a, b in itertools.pairwise(types)):
        raise DecodeError(
            f"{what}: extension types must be strictly ascending, got {types}", code="bad_extension_order"
        )


def write_extensions(w: Writer, extensions: Iterable[Extension]) -> None:
    items = tuple(extensions)
    w.u8(len(items))
    for extension in items:
        w.u8(extension.type).bytes16(extension.value)


def read_extensions(r: Reader) -> tuple[Extension, ...]:
    """The list as encoded; the caller checks it (:func:`check_extensions`) against its registry."""
    return read_extensions_counted(r, r.u8("extension count"))


def read_extensions_counted(r: Reader, count: int) -> tuple[Extension, ...]:
    """``count`` extensions (the count already read)."""
    return tuple(Extension(r.u8("extension type"), r.bytes16("extension value")) for _ in range(count))
