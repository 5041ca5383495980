"""The log's signing key: generated once, kept in a file only its owner can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attest_core.errors import AttestError
from attest_core.note import NoteSigner, generate_private_key
from gateway.errors import KeyFileError


def generate_key_file(path: str | Path, name: str) -> NoteSigner:
    """Create a new log key at ``path`` (mode 0600); refuse to overwrite an existing one."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists: a log key is never overwritten", code="key_exists"
        ) from None
    text = generate_private_key(name)
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return NoteSigner.from_private_key(text)


def load_key_file(path: str | Path) -> NoteSigner:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except FileNotFoundError:
        raise KeyFileError(
            f"log key file {path} does not exist (create it with: python -m gateway keygen)"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read log key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"log key file {path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    try:
        return NoteSigner.from_private_key(text)
    except AttestError as exc:
        raise KeyFileError(f"log key file {path} does not hold a log key: {exc}") from exc


def load_or_create(path: str | Path, name: str) -> tuple[NoteSigner, bool]:
    """The key at ``path``, created on first start. Returns (signer, created)."""
    if Path(path).exists():
        signer = load_key_file(path)
        if signer.name != name:
            raise KeyFileError(
                f"log key file {path} is for log {signer.name!r}, but the gateway is configured as {name!r}"
            )
        return signer, False
    return generate_key_file(path, name), True
