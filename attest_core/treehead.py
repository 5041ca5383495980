"""A checkpoint's text: origin, tree size, root hash, the ``time`` line and other extensions.

The rules of the text (c2sp.org/tlog-checkpoint, and this project's conventions)
are described in :mod:`attest_core.checkpoint`; signing and opening the signed
note are there too, cosignatures in :mod:`attest_core.cosignature`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from attest_core.errors import DecodeError
from attest_core.notetext import b64decode_canonical, check_lines, decode_text, echo, utf8

#: Size of an RFC 6962 (SHA-256) root hash.
HASH_SIZE = 32
#: Largest tree size and timestamp accepted: 2^63 - 1.
MAX_UINT63 = 2**63 - 1
#: Start of the extension line that carries the checkpoint's signing time.
TIME_EXTENSION_PREFIX = "time "

_CONTROL = re.compile(r"[\x00-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_MAX_DIGITS = len(str(MAX_UINT63))


def _parse_uint63(text: str, what: str, code: str, overflow_code: str) -> int:
    """A decimal with no sign, no leading zeros, ASCII digits only, below 2^63."""
    if _DECIMAL.fullmatch(text) is None:
        raise DecodeError(f"the {what} {echo(text)} is not a decimal number without leading zeros", code=code)
    if len(text) > _MAX_DIGITS or int(text) > MAX_UINT63:
        raise DecodeError(f"the {what} {echo(text)} does not fit in 63 bits", code=overflow_code)
    return int(text)


def check_uint63(value: object, what: str, code: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"the {what} is an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_UINT63:
        raise DecodeError(f"the {what} {value} is not in [0, 2^63 - 1]", code=code)
    return value


def _line_problem(line: str) -> str | None:
    match = _CONTROL.search(line)
    if match is not None:
        return f"contains the control character U+{ord(match.group()):04X}"
    if utf8(line) is None:
        return "is not valid Unicode (lone surrogate)"
    return None


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash, signing time and extension lines.

    Every value is checked on construction (``DecodeError`` with the same codes
    as :func:`parse_checkpoint_body`).
    """

    origin: str
    size: int
    root_hash: bytes
    time: int | None = None
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.origin, str):
            raise TypeError(f"the origin is a str, not {type(self.origin).__name__}")
        problem = _origin_problem(self.origin)
        if problem is not None:
            raise DecodeError(f"the origin {echo(self.origin)} {problem}", code="checkpoint_bad_origin")
        check_uint63(self.size, "tree size", "checkpoint_size_overflow")
        if not isinstance(self.root_hash, bytes):
            raise TypeError(f"the root hash is bytes, not {type(self.root_hash).__name__}")
        if len(self.root_hash) != HASH_SIZE:
            raise DecodeError(
                f"the root hash is {HASH_SIZE} bytes, got {len(self.root_hash)}",
                code="checkpoint_bad_root_hash",
            )
        if self.time is not None:
            check_uint63(self.time, "time", "checkpoint_bad_time")
        if not isinstance(self.extensions, tuple):
            raise TypeError("the extension lines are a tuple of str")
        for line in self.extensions:
            if not isinstance(line, str):
                raise TypeError("the extension lines are a tuple of str")
            if not line:
                raise DecodeError("an extension line is empty", code="checkpoint_empty_line")
            problem = _line_problem(line)
            if problem is not None:
                raise DecodeError(
                    f"the extension line {echo(line)} {problem}", code="checkpoint_control_char"
                )
            if line.startswith(TIME_EXTENSION_PREFIX):
                raise DecodeError(
                    "a 'time ' extension line is given as Checkpoint.time, not in extensions",
                    code="checkpoint_bad_time",
                )

    def body(self) -> str:
        """The note text that the log signs, ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        if self.time is not None:
            lines.append(f"{TIME_EXTENSION_PREFIX}{self.time}")
        lines.extend(self.extensions)
        return "".join(line + "\n" for line in lines)


def _origin_problem(origin: str) -> str | None:
    if not origin:
        return "is empty"
    if origin != origin.strip():
        return "has leading or trailing white space"
    return _line_problem(origin)


def parse_checkpoint_body(text: str | bytes) -> Checkpoint:
    """Parse a checkpoint note text (the signed body, *not* the whole signed note).

    Raises :class:`~attest_core.errors.DecodeError` with code
    ``checkpoint_not_utf8``, ``checkpoint_control_char``,
    ``checkpoint_no_final_newline``, ``checkpoint_too_few_lines``,
    ``checkpoint_bad_origin``, ``checkpoint_bad_size``,
    ``checkpoint_size_overflow``, ``checkpoint_bad_root_hash``,
    ``checkpoint_bad_time`` or ``checkpoint_empty_line``.
    """
    text = decode_text(text, "the checkpoint", "a checkpoint body", "checkpoint_not_utf8")
    check_lines(text, "the checkpoint", "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise DecodeError(
            f"a checkpoint has at least 3 lines (origin, size, root hash), got {len(lines)}",
            code="checkpoint_too_few_lines",
        )
    origin, size_text, root_text, *rest = lines
    problem = _origin_problem(origin)
    if problem is not None:
        raise DecodeError(f"the origin {echo(origin)} {problem}", code="checkpoint_bad_origin")
    size = _parse_uint63(size_text, "tree size", "checkpoint_bad_size", "checkpoint_size_overflow")
    root_hash = b64decode_canonical(root_text)
    if root_hash is None:
        raise DecodeError(
            f"the root hash {echo(root_text)} is not canonical standard base64",
            code="checkpoint_bad_root_hash",
        )
    if len(root_hash) != HASH_SIZE:
        raise DecodeError(
            f"the root hash is {HASH_SIZE} bytes, got {len(root_hash)}", code="checkpoint_bad_root_hash"
        )
    time: int | None = None
    for index, line in enumerate(rest):
        if not line:
            raise DecodeError(f"extension line {index + 1} is empty", code="checkpoint_empty_line")
        if line.startswith(TIME_EXTENSION_PREFIX):
            if index != 0:
                raise DecodeError(
                    "the 'time' extension line must be the first extension line, and appear once",
                    code="checkpoint_bad_time",
                )
            time = _parse_uint63(
                line[len(TIME_EXTENSION_PREFIX) :], "time", "checkpoint_bad_time", "checkpoint_bad_time"
            )
    extensions = tuple(rest[1:] if time is not None else rest)
    return Checkpoint(origin, size, root_hash, time, extensions)
