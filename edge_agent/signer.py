"""Device key access: everything that signs goes through :func:`load_signer`.

The rest of the agent only ever sees an :class:`attest_core.keys.Signer` (a public
key and a ``sign`` method).  ``[key] type`` in the config chooses the backend;
``"file"`` is the only one built so far.  A secure element (ATECC608, TPM,
PKCS#11) is added by writing a class with ``public_key`` and ``sign`` and
registering a loader in :data:`BACKENDS`; nothing else changes.

The file backend keeps the 32-byte Ed25519 seed in a one-line text file
(``iot-attest-ed25519-seed:<base64>``) that only its owner can read: it is created
with ``O_EXCL`` and mode 0600 in a directory of mode 0700, and the agent refuses
to load a key file that anyone else can read or write.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from attest_core.keys import SEED_SIZE, Ed25519Signer, Signer
from edge_agent.config import Config, KeyConfig
from edge_agent.errors import AgentError, Exit
from edge_agent.files import fsync_dir

KEY_FILE_PREFIX = "iot-attest-ed25519-seed:"


def derive_device_id(public_key: bytes) -> str:
    """The default device id: "dev-" + the first 16 characters of base32(SHA-256(key)), lowercase."""
    digest = hashlib.sha256(public_key).digest()
    return "dev-" + base64.b32encode(digest).decode("ascii").lower()[:16]


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (and parents) with mode 0700; tighten it to 0700 if we own it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = directory.stat()
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
        directory.chmod(0o700)


def create_key_file(path: Path) -> Ed25519Signer:
    """Generate a new device key into ``path`` (mode 0600, never overwriting a file)."""
    ensure_private_dir(path.parent)
    signer = Ed25519Signer.generate()
    line = KEY_FILE_PREFIX + base64.b64encode(signer.seed).decode("ascii") + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise AgentError(
            f"a device key already exists at {path}: refusing to overwrite it "
            "(a new key is a new device identity; move the old file away only if you mean that)",
            Exit.USAGE,
        ) from None
    except OSError as exc:
        raise AgentError(f"cannot create the key file {path}: {exc.strerror}", Exit.USAGE) from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, line.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)
    return signer


class FileSigner:
    """A :class:`Signer` whose seed comes from a private key file."""

    __slots__ = ("_inner", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._inner = Ed25519Signer(read_key_file(path))

    @property
    def public_key(self) -> bytes:
        return self._inner.public_key

    def sign(self, message: bytes) -> bytes:
        return self._inner.sign(message)


def read_key_file(path: Path) -> bytes:
    """The seed in a key file, after checking that only its owner can use the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise AgentError(
            f"no device key at {path}: run `python -m edge_agent init` first", Exit.USAGE
        ) from None
    except OSError as exc:
        raise AgentError(f"cannot open the device key {path}: {exc.strerror}", Exit.USAGE) from None
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise AgentError(
                f"the device key {path} has mode {stat.S_IMODE(info.st_mode):04o}: others can read it. "
                f"Run `chmod 600 {path}` (and consider the key compromised if others had access)",
                Exit.USAGE,
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise AgentError(
                f"the device key {path} belongs to uid {info.st_uid}, not to this user "
                f"(uid {os.geteuid()}): run the agent as the user that owns the key",
                Exit.USAGE,
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    text = data.decode("ascii", errors="replace").strip()
    if not text.startswith(KEY_FILE_PREFIX):
        raise AgentError(f"{path} is not an iot-attest device key file", Exit.USAGE)
    try:
        seed = base64.b64decode(text[len(KEY_FILE_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != SEED_SIZE:
        raise AgentError(f"the device key file {path} is damaged (not a 32-byte base64 seed)", Exit.USAGE)
    return seed


BACKENDS: dict[str, Callable[[KeyConfig], Signer]] = {
    "file": lambda key: FileSigner(key.path),
}
"""Signer backends by ``[key] type``; a secure-element backend registers itself here."""


def load_signer(config: Config) -> Signer:
    """The device's signer, as the config's ``[key] type`` says."""
    loader = BACKENDS.get(config.key.type)
    if loader is None:
        raise AgentError(
            f"key.type {config.key.type!r} is not supported (supported: {', '.join(sorted(BACKENDS))})",
            Exit.USAGE,
        )
    signer = loader(config.key)
    if not isinstance(signer, Signer):  # pragma: no cover - a backend bug
        raise AgentError(f"the {config.key.type!r} key backend does not provide a signer")
    return signer
