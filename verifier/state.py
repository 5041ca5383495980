"""The state directory of a monitor or witness.

Layout of ``DIR``::

    checkpoint.txt          the last checkpoint note accepted (verified, consistent with all before it)
    lock                    held while a monitor or witness runs, so two never share DIR
    evidence/<time>-<kind>/ one directory per alert:
        alert.txt               what was detected, when, from where, and what to do
        accepted-checkpoint.txt the checkpoint accepted before (signed by the log)
        received-checkpoint.txt what the log served instead, byte for byte
        consistency-proof.json  the proof the log gave, if any
    cosigned/<size>-<root>.txt  (witness) each checkpoint note with the witness's cosignature appended
    cosigned/<size>-<root>.submitted  (witness --submit) the gateway accepted that cosignature

Files are written atomically (temporary file, fsync, rename, fsync of the
directory), so a crash or a kill leaves either the old or the new content and
a restart simply carries on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from attest_core.checkpoint import SignedCheckpoint, open_checkpoint
from attest_core.errors import AttestError
from attest_core.note import VerifierKey
from verifier.errors import UsageError

CHECKPOINT_FILE = "checkpoint.txt"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new content, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class StateDir:
    """A monitor's or witness's directory; use as a context manager to hold its lock."""

    def __init__(self, path: str | os.PathLike[str], log_key: VerifierKey) -> None:
        self.path = Path(path)
        self.log_key = log_key
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> StateDir:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = (self.path / "lock").open("ab")
        except OSError as exc:
            raise UsageError(f"--state: cannot use {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise UsageError(f"--state: {self.path} is in use by another monitor or witness") from None
        self._lock = lock
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.close()  # closing releases the lock
            self._lock = None

    # --- the accepted checkpoint ----------------------------------------------------

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def load(self) -> SignedCheckpoint | None:
        """The accepted checkpoint, re-verified with the log key; None if there is none yet."""
        try:
            data = self.checkpoint_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"--state: cannot read {self.checkpoint_file}: {exc.strerror or exc}") from None
        try:
            return open_checkpoint(data, self.log_key)
        except AttestError as exc:
            raise UsageError(
                f"--state: {self.checkpoint_file} does not verify with this --log-key [{exc.code}]: {exc}. "
                "Was this state directory made for another log?"
            ) from None

    def accept(self, signed: SignedCheckpoint) -> None:
        write_atomically(self.checkpoint_file, signed.note_text.encode("utf-8"))

    # --- alerts ---------------------------------------------------------------------

    def save_evidence(self, kind: str, report: str, files: dict[str, bytes]) -> Path:
        """A new ``evidence/<time>-<kind>/`` directory holding ``alert.txt`` and ``files``."""
        base = self.path / "evidence"
        base.mkdir(exist_ok=True)
        name = f"{_stamp()}-{kind}"
        target = base / name
        n = 1
        while target.exists():
            n += 1
            target = base / f"{name}-{n}"
        target.mkdir()
        for filename, data in {**files, "alert.txt": report.encode("utf-8")}.items():
            write_atomically(target / filename, data)
        return target

    # --- witness cosignatures -----------------------------------------------------------

    def _cosigned_base(self, signed: SignedCheckpoint) -> Path:
        cp = signed.checkpoint
        return self.path / "cosigned" / f"{cp.size}-{cp.root_hash.hex()[:16]}"

    def cosigned_note(self, signed: SignedCheckpoint) -> bytes | None:
        try:
            return self._cosigned_base(signed).with_suffix(".txt").read_bytes()
        except FileNotFoundError:
            return None

    def save_cosigned(self, signed: SignedCheckpoint, note: str) -> Path:
        base = self._cosigned_base(signed)
        base.parent.mkdir(exist_ok=True)
        path = base.with_suffix(".txt")
        write_atomically(path, note.encode("utf-8"))
        return path

    def submitted(self, signed: SignedCheckpoint) -> bool:
        return self._cosigned_base(signed).with_suffix(".submitted").exists()

    def mark_submitted(self, signed: SignedCheckpoint, answer: str) -> None:
        write_atomically(self._cosigned_base(signed).with_suffix(".submitted"), answer.encode("utf-8"))
