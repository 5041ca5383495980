"""The text rules shared by signed notes and checkpoints, written once.

A note and a checkpoint body are UTF-8 text of lines, each ending in a newline,
with no control character but the newline.  :mod:`attest_core.note` and
:mod:`attest_core.checkpoint` apply them with their own wording and reason codes
(``note_...``, ``checkpoint_...``); base64 is the standard alphabet, padded and
canonical, in both.
"""

from __future__ import annotations

import base64
import binascii
import re

from attest_core.errors import DecodeError

CONTROL_EXCEPT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f]")
_MAX_ECHO = 48


def echo(text: str) -> str:
    """``repr`` of a piece of untrusted input, shortened for error messages."""
    if len(text) > _MAX_ECHO:
        return repr(text[:_MAX_ECHO]) + f"... ({len(text)} characters)"
    return repr(text)


def utf8(text: str) -> bytes | None:
    """The UTF-8 encoding of ``text``, or None if it holds lone surrogates."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def b64decode_canonical(text: str) -> bytes | None:
    """Decode standard, padded base64, or return None if ``text`` is not canonical.

    Canonical means that encoding the result gives back exactly ``text``: no
    whitespace, no missing or extra padding, no non-zero unused bits.
    """
    if not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_text(data: str | bytes, what: str, kind: str, code: str) -> str:
    """``data`` as text: UTF-8 bytes decoded, a str checked for lone surrogates.

    ``what`` names it in messages ("the note"), ``kind`` in the TypeError for
    anything else ("a note"), ``code`` is the reason code of invalid UTF-8.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what} is not valid UTF-8 (byte offset {exc.start})", code=code) from exc
    if not isinstance(data, str):
        raise TypeError(f"{kind} is str or bytes, not {type(data).__name__}")
    if utf8(data) is None:
        raise DecodeError(f"{what} is not valid UTF-8 (lone surrogate)", code=code)
    return data


def check_lines(text: str, what: str, prefix: str) -> None:
    """Raise unless ``text`` has no control character but newline and ends in a newline.

    The reason codes are ``<prefix>_control_char`` and ``<prefix>_no_final_newline``.
    """
    match = CONTROL_EXCEPT_NEWLINE.search(text)
    if match is not None:
        raise DecodeError(
            f"{what} contains the control character U+{ord(match.group()):04X} "
            f"at offset {match.start()}; only newline is allowed",
            code=f"{prefix}_control_char",
        )
    if not text.endswith("\n"):
        raise DecodeError(f"{what} does not end in a newline", code=f"{prefix}_no_final_newline")
