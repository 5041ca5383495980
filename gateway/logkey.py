"""The log's signing key: generated once, kept in a file only its owner can read, and bound to its log.

A log is signed by one key for ever: checkpoints signed by another key are worthless to
everyone who trusts the first.  The database records the log's verifier key with the first
checkpoint (``log_state.log_key``), and :func:`bind` refuses to start a gateway whose key file
holds another key, or that has no key file for a log that already has entries, naming the key
the log belongs to; a key is only ever created for an empty log.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncpg

from attest_core.checkpoint import open_checkpoint
from attest_core.errors import AttestError
from attest_core.note import NoteSigner, VerifierKey, generate_private_key, parse_note
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


async def bind(conn: asyncpg.Connection, path: str | Path, name: str) -> tuple[NoteSigner, bool]:
    """The log key at ``path`` if it is the key of the log in this database; created for an empty log.

    Returns (signer, created).  Raises :class:`KeyFileError` (code ``wrong_log_key`` or
    ``missing_log_key``) when the key file does not belong to the log.
    """
    recorded, size = await conn.fetchrow("SELECT log_key, size FROM log_state")
    newest = await conn.fetchval("SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1")
    owner = recorded or (_signer_of(newest) if newest is not None else None)
    if not Path(path).exists():
        if recorded is not None or size or newest is not None:
            raise KeyFileError(
                f"there is no log key file at {path}, but the log in this database has {size} entries and "
                f"belongs to the key {owner}: restore that key's file (a new key would orphan the log)",
                code="missing_log_key",
            )
        return generate_key_file(path, name), True
    signer = _load_named(path, name)
    ours = signer.verifier_key()
    if recorded is not None:
        if recorded != ours.to_string():
            raise KeyFileError(
                f"the log key file {path} holds the key {ours.to_string()}, but the log in this database "
                f"belongs to the key {recorded}: use that key's file, or another database",
                code="wrong_log_key",
            )
    elif newest is not None:
        if not _signed_by(newest, ours):
            raise KeyFileError(
                f"the log key file {path} holds the key {ours.to_string()}, but the log's checkpoints are "
                f"signed by {owner}: use that key's file, or another database",
                code="wrong_log_key",
            )
        # a log from before keys were recorded: its checkpoints prove which key it has
        await conn.execute("UPDATE log_state SET log_key = $1 WHERE log_key IS NULL", ours.to_string())
    return signer, False


def _signer_of(note: str) -> str:
    """``<name>+<key id>`` of a checkpoint's first signature (the log's, as the gateway signs them)."""
    try:
        first = parse_note(note).signatures[0]
    except AttestError:
        return "(an unreadable checkpoint)"
    return f"{first.name}+{first.key_id.hex()}"


def _signed_by(note: str, key: VerifierKey) -> bool:
    try:
        open_checkpoint(note, key)
    except AttestError:
        return False
    return True


def _load_named(path: str | Path, name: str) -> NoteSigner:
    """The key at ``path``, which must be a key of the log called ``name``."""
    signer = load_key_file(path)
    if signer.name != name:
        raise KeyFileError(
            f"log key file {path} is for log {signer.name!r}, but the gateway is configured as {name!r}"
        )
    return signer
