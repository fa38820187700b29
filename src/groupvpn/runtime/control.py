"""The daemons' local control socket, and the client the `show`/`clear` commands use.

One request per connection: a JSON line ``{"command": NAME, "args": {...}}``
answered by one JSON line ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``.  The socket is created mode 0600 in a
directory of its own and every caller's credentials are checked
(SO_PEERCRED): only root, or the user the daemon runs as, may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("groupvpn")

DEFAULT_SERVER_SOCKET = Path("/run/groupvpn/server.sock")
DEFAULT_MEMBER_SOCKET = Path("/run/groupvpn/member.sock")
MAX_REQUEST = 64 * 1024

Command = Callable[[dict[str, Any]], Any]


class ControlError(Exception):
    """The control socket could not be used; the message is for the operator."""


class ControlServer:
    def __init__(self, path: Path, commands: dict[str, Command]) -> None:
        self.path = path
        self.commands = commands
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._remove_stale_socket()
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        except OSError as exc:
            raise ControlError(f"cannot create control socket {self.path}: {exc.strerror}") from exc
        os.chmod(self.path, 0o600)

    def _remove_stale_socket(self) -> None:
        """A socket left by a daemon that died is removed; a live one is an error."""
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self.path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()
                return
        raise ControlError(f"another daemon is already using control socket {self.path}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response = await self._answer(reader, writer)
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> dict[str, Any]:
        sock = writer.get_extra_info("socket")
        if sock is not None and not _caller_allowed(sock):
            return {"ok": False, "error": "permission denied: only root may use this socket"}
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            return {"ok": False, "error": "request too long"}
        if len(line) > MAX_REQUEST:
            return {"ok": False, "error": "request too long"}
        try:
            request = json.loads(line)
            name = request["command"]
            args = request.get("args", {})
            if not isinstance(name, str) or not isinstance(args, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        command = self.commands.get(name)
        if command is None:
            return {"ok": False, "error": f"unknown command {name!r}"}
        try:
            return {"ok": True, "result": command(args)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            log.exception("control command %s failed", name)
            return {"ok": False, "error": f"internal error running {name}"}


def _caller_allowed(sock: socket.socket) -> bool:
    """SO_PEERCRED: the caller must be root or the daemon's own user."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.geteuid())


def call(
    path: Path, command: str, args: dict[str, Any] | None = None, timeout: float = 10.0
) -> Any:
    """Send one command to a daemon and return its result, or raise ControlError."""
    request = json.dumps({"command": command, "args": args or {}}).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(f"no control socket at {path}: is the daemon running?") from None
        except PermissionError:
            raise ControlError(f"permission denied on {path}: only root may use it") from None
        except OSError as exc:
            raise ControlError(f"cannot reach the daemon at {path}: {exc.strerror}") from None
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            raise ControlError(f"no answer from the daemon at {path}") from None
    try:
        response = json.loads(b"".join(chunks))
    except ValueError:
        raise ControlError(f"unreadable answer from the daemon at {path}") from None
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "the daemon refused the command")))
    return response.get("result")
