"""The auditor's inputs: files and key strings given on the command line.

Everything here turns a missing file, an unreadable file or a key string that
does not parse into a :class:`~verifier.errors.UsageError` (exit code 3) with a
message naming the option and the file.  A key that parses but does not match
the evidence is not a usage error: that is found later, and is exit code 2.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from attest_core.checkpoint import WitnessKey
from attest_core.errors import AttestError
from attest_core.keys import fingerprint
from attest_core.note import NoteKey, VerifierKey
from verifier.errors import UsageError

MAX_KEY_FILE_BYTES = 64 * 1024
"""A key file holds one short line; anything larger is not a key file."""

K = TypeVar("K", bound=NoteKey)


def read_file(path: str | os.PathLike[str], what: str, limit: int | None = None) -> bytes:
    """The bytes of ``path``; a missing, unreadable or oversized file is a usage error."""
    p = Path(path)
    try:
        if p.is_dir():
            raise UsageError(f"{what}: {p} is a directory, not a file")
        with p.open("rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise UsageError(f"{what}: no such file: {p}") from None
    except PermissionError:
        raise UsageError(f"{what}: permission denied: {p}") from None
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {p}: {exc.strerror or exc}") from None
    if limit is not None and len(data) > limit:
        raise UsageError(f"{what}: {p} is larger than {limit} bytes")
    return data


def _is_file(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        return False


def _key_text(value: str, option: str) -> str:
    """The key string given to ``option``: the content of the file it names, or the value itself."""
    path = Path(value)
    if _is_file(path):
        raw = read_file(path, option, MAX_KEY_FILE_BYTES)
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{option}: {path} is not a text file holding a key string") from None
    if value.count("+") < 2:
        raise UsageError(
            f"{option}: {value!r} is neither an existing file nor a key string <name>+<id>+<key>"
        )
    return value.strip()


def _parse_key(cls: type[K], value: str, option: str) -> K:
    text = _key_text(value, option)
    if not text:
        raise UsageError(f"{option}: the key file {value} is empty")
    try:
        return cls.parse(text)
    except AttestError as exc:
        raise UsageError(f"{option}: not a valid {cls.KIND} string [{exc.code}]: {exc}") from None


def load_log_key(value: str, option: str = "--log-key") -> VerifierKey:
    """The log's verifier key from a key string or a file holding one (surrounding white space ignored)."""
    return _parse_key(VerifierKey, value, option)


def load_witness_key(value: str, option: str = "--witness-key") -> WitnessKey:
    """A witness's cosignature key from a key string or a file holding one."""
    return _parse_key(WitnessKey, value, option)


def witness_policy(keys: list[WitnessKey], min_witnesses: int | None) -> int:
    """The number of cosignatures required: by default every given witness."""
    idents = [(k.name, k.key_id) for k in keys]
    if len(set(idents)) != len(idents):
        raise UsageError("--witness-key: the same witness key is given twice")
    if min_witnesses is None:
        return len(keys)
    if min_witnesses > len(keys):
        raise UsageError(
            f"--min-witnesses {min_witnesses} asks for more cosignatures than the {len(keys)} "
            "--witness-key given"
        )
    return min_witnesses


def describe_key(key: NoteKey) -> dict[str, str]:
    """What an auditor compares against the key published out of band."""
    return {
        "name": key.name,
        "key_id": key.key_id.hex(),
        "fingerprint": fingerprint(key.public_key),
        "key": key.to_string(),
    }
