"""The extension lists of v2 payloads and statements: one rule, one encoding."""

from __future__ import annotations

import pytest

from attest_core.codec import Reader, Writer
from attest_core.errors import DecodeError
from attest_core.extensions import Extension, check_extensions, read_extensions, write_extensions

KNOWN = frozenset({1, 2})  # a registry as a later protocol version will define one


@pytest.mark.parametrize(
    ("items", "code"),
    [
        ((Extension(2, b""), Extension(1, b"")), "bad_extension_order"),
        ((Extension(1, b"a"), Extension(1, b"b")), "bad_extension_order"),  # a type once
        ((Extension(3, b""),), "unknown_extension"),
        ((Extension(256, b""),), "out_of_range"),
        ((Extension(1, b"x" * 0x10000),), "too_large"),
    ],
)
def test_bad_lists_are_refused(items: tuple[Extension, ...], code: str) -> None:
    with pytest.raises(DecodeError) as info:
        check_extensions(items, KNOWN, "test")
    assert info.value.code == code


def test_a_list_round_trips() -> None:
    items = (Extension(1, b"meter record"), Extension(2, b""))
    check_extensions(items, KNOWN, "test")
    w = Writer()
    write_extensions(w, items)
    r = Reader(w.getvalue(), "test")
    assert read_extensions(r) == items
    r.finish()
