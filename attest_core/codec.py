"""Primitives of the protocol's deterministic binary encoding.

All integers are unsigned big-endian unless named otherwise.  Variable-length
fields carry a length prefix (``u8`` for short identifiers, ``u16`` for longer
text and nested records).  A decoder consumes every byte: trailing bytes are an
error.  Every value has exactly one encoding, so equal values give equal bytes.

Identifiers (device ids, asset ids, user names) are ASCII, 1-64 characters from
``[A-Za-z0-9._-]`` starting with a letter or digit: safe inside an MQTT topic
level and a Mosquitto ACL pattern.
"""

from __future__ import annotations

import re
import struct
from typing import Final

from attest_core.errors import DecodeError

MAX_U63: Final = (1 << 63) - 1
"""The largest value of a ``u64`` field: values must also fit a signed 64-bit column."""

ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")


def check_id(value: str, what: str) -> str:
    """Return ``value`` if it is a valid identifier, else raise :class:`DecodeError`."""
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise DecodeError(
            f"{what} {value!r} is not an identifier: 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit",
            code="bad_identifier",
        )
    return value


def check_u63(value: int, what: str) -> int:
    """Return ``value`` if it is an int in [0, 2**63 - 1]."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_U63:
        raise DecodeError(f"{what} must be an integer from 0 to 2^63-1, got {value!r}", code="out_of_range")
    return value


class Writer:
    """Builds an encoding field by field."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, value: int) -> Writer:
        self._buf.append(value)
        return self

    def u16(self, value: int) -> Writer:
        self._buf += _U16.pack(value)
        return self

    def i32(self, value: int) -> Writer:
        self._buf += _I32.pack(value)
        return self

    def u64(self, value: int) -> Writer:
        self._buf += _U64.pack(value)
        return self

    def i64(self, value: int) -> Writer:
        self._buf += _I64.pack(value)
        return self

    def raw(self, data: bytes) -> Writer:
        self._buf += data
        return self

    def bytes16(self, data: bytes) -> Writer:
        if len(data) > 0xFFFF:
            raise DecodeError(f"field of {len(data)} bytes exceeds 65535", code="too_large")
        self._buf += _U16.pack(len(data))
        self._buf += data
        return self

    def text8(self, text: str) -> Writer:
        data = text.encode("utf-8")
        if len(data) > 0xFF:
            raise DecodeError(f"text of {len(data)} bytes exceeds 255", code="too_large")
        self._buf.append(len(data))
        self._buf += data
        return self

    def text16(self, text: str) -> Writer:
        return self.bytes16(text.encode("utf-8"))

    def getvalue(self) -> bytes:
        return bytes(self._buf)


class Reader:
    """Reads an encoding field by field; every failure names the object, field and offset."""

    __slots__ = ("_data", "_pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"{what}: expected bytes, got {type(data).__name__}", code="not_bytes")
        self._data = bytes(data)
        self._pos = 0
        self.what = what

    @property
    def offset(self) -> int:
        return self._pos

    def _take(self, n: int, field: str) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise DecodeError(
                f"{self.what} is truncated: {field} needs {n} bytes at offset {self._pos}, "
                f"only {len(self._data) - self._pos} left",
                code="truncated",
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self, field: str) -> int:
        return self._take(1, field)[0]

    def u16(self, field: str) -> int:
        value: int = _U16.unpack(self._take(2, field))[0]
        return value

    def u32(self, field: str) -> int:
        value: int = _U32.unpack(self._take(4, field))[0]
        return value

    def i32(self, field: str) -> int:
        value: int = _I32.unpack(self._take(4, field))[0]
        return value

    def u63(self, field: str) -> int:
        """A u64 field whose value must fit in 63 bits."""
        value: int = _U64.unpack(self._take(8, field))[0]
        if value > MAX_U63:
            raise DecodeError(f"{self.what}: {field} {value} exceeds 2^63-1", code="out_of_range")
        return value

    def i64(self, field: str) -> int:
        value: int = _I64.unpack(self._take(8, field))[0]
        return value

    def raw(self, n: int, field: str) -> bytes:
        return self._take(n, field)

    def bytes16(self, field: str) -> bytes:
        return self._take(self.u16(field + " length"), field)

    def _text(self, data: bytes, field: str) -> str:
        try:
            return data.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{self.what}: {field} is not valid UTF-8", code="bad_text") from exc

    def text8(self, field: str) -> str:
        return self._text(self._take(self.u8(field + " length"), field), field)

    def text16(self, field: str) -> str:
        return self._text(self.bytes16(field), field)

    def ident(self, field: str) -> str:
        value = self.text8(field)
        try:
            return check_id(value, f"{self.what}: {field}")
        except DecodeError as exc:
            raise DecodeError(str(exc), code="bad_identifier") from None

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError(
                f"{self.what} has {len(self._data) - self._pos} trailing bytes after offset {self._pos}",
                code="trailing_bytes",
            )
