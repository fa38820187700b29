"""The key server's state directory: what must survive a restart, kept private.

For now it holds the rekey signing key (``signing-key.pem``): members verify
every GROUPKEY-PUSH with the public key they received at registration, so a
server that came back with a new key would be cut off from its members until
they registered again.  Issue 6 adds the group keys, SEQ and membership.

Rules: the directory is mode 0700 and every file 0600, created that way (never
chmod-ed after the fact, so there is no moment when a key is readable by
others).  Files are written to a temporary name, flushed, synced and renamed,
so a crash leaves the old file or the new one, never half of one.  A file that
exists but cannot be used is an error with a way out, never silently replaced:
a fresh key would split the group.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm

from groupvpn.server.signing import SigningKey

DEFAULT_SERVER_STATE_DIR = Path("/var/lib/groupvpn/server")
SIGNING_KEY_FILE = "signing-key.pem"


class StateError(Exception):
    """The state directory or a file in it cannot be used; the message says what to do."""


class StateDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path

    def prepare(self) -> None:
        """Create the directory (0700) if needed and check nobody else can read it."""
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.path.stat().st_mode
        except OSError as exc:
            raise StateError(f"state directory {self.path}: {exc.strerror}") from exc
        if not stat.S_ISDIR(mode):
            raise StateError(f"state directory {self.path} is not a directory")
        if mode & 0o077:
            raise StateError(
                f"state directory {self.path} is accessible by other users "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod 700 {self.path}"
            )

    def signing_key(self, generate: bool = True) -> tuple[SigningKey, bool]:
        """The stored signing key, or a new one stored now; True if it was generated."""
        path = self.path / SIGNING_KEY_FILE
        data = self._read_private(path)
        if data is None:
            if not generate:
                raise StateError(f"no signing key in {self.path}")
            key = SigningKey.generate()
            self._write_private(path, key.private_pem())
            return key, True
        try:
            return SigningKey.from_pem(data), False
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise StateError(
                f"{path} is not a usable RSA private key ({exc}). If it is lost for good, "
                f"move it away and start again: a new key is generated, and every member "
                f"must register again to learn it"
            ) from exc

    def read_file(self, name: str) -> bytes | None:
        """A private file of the directory (None if absent); StateError if others can read it."""
        return self._read_private(self.path / name)

    def write_file(self, name: str, data: bytes) -> None:
        """Write a private file atomically (0600, synced, renamed into place)."""
        self._write_private(self.path / name, data)

    def _read_private(self, path: Path) -> bytes | None:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{path}: {exc.strerror}") from exc
        if mode & 0o077:
            raise StateError(
                f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
                f"run: chmod 600 {path}"
            )
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StateError(f"{path}: {exc.strerror}") from exc

    def _write_private(self, path: Path, data: bytes) -> None:
        temporary = path.with_name(path.name + ".new")
        try:
            temporary.unlink(missing_ok=True)  # left by a crash mid-write
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, path)
            directory = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(directory)  # the rename itself must survive a power cut
            finally:
                os.close(directory)
        except OSError as exc:
            raise StateError(f"cannot write {path}: {exc.strerror}") from exc
