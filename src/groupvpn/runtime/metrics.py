"""``--metrics [ADDR:]PORT``: a Prometheus text endpoint on a tiny asyncio HTTP server.

It answers ``GET /metrics`` (and ``HEAD``) with the text exposition format 0.0.4
that ``runtime.metrics_families`` builds from the same views the `show` commands
print, and 404/405/400 to anything else.  It is off unless asked for, and binds
to loopback unless given another address, because what it tells (group names,
member counts, drop reasons) is for the operator's monitoring, not the world.

The server is deliberately small and defensive, since it may face whatever can
reach the port: a request (line and headers) larger than :data:`MAX_REQUEST`, or
not complete within :data:`REQUEST_TIMEOUT`, is answered with an error and the
connection closed; beyond :data:`MAX_CONNECTIONS` at once, new connections are
closed unanswered; any exception while answering is logged and closes only
that connection.  One request per connection (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from ipaddress import ip_address

log = logging.getLogger("groupvpn")

DEFAULT_METRICS_HOST = "127.0.0.1"
MAX_REQUEST = 8192
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 32
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsAddressError(ValueError):
    """A ``--metrics`` value that is not ``PORT``, ``:PORT``, ``ADDR:PORT`` or ``[V6]:PORT``."""


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``"9848"`` -> ``("127.0.0.1", 9848)``; ``"0.0.0.0:9848"``, ``"[::1]:9848"`` as given."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host = ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsAddressError(f"{text!r}: write an IPv6 address in brackets, [::1]:9848")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise MetricsAddressError(f"{text!r}: the port must be a number from 1 to 65535")
    if not host:
        return DEFAULT_METRICS_HOST, int(port_text)
    try:
        return str(ip_address(host)), int(port_text)
    except ValueError:
        raise MetricsAddressError(f"{text!r}: {host!r} is not an IP address") from None


class MetricsServer:
    """Serves ``render()`` (the exposition text, encoded) at ``/metrics``."""

    def __init__(self, host: str, port: int, render: Callable[[], bytes]) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._server: asyncio.AbstractServer | None = None
        self._active: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen; OSError (address in use, not ours, ...) is the caller's to report."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=MAX_REQUEST
        )
        if self.port == 0:  # tests ask the kernel for a free port
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._active):  # a slow client must not hold up the stop
                writer.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._active) >= MAX_CONNECTIONS:
            writer.close()
            return
        self._active.add(writer)
        try:
            status, body, head_only = await self._answer(reader)
            writer.write(_response(status, body, head_only))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("metrics: answering a request failed")
        finally:
            self._active.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, bytes, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
        except asyncio.LimitOverrunError:
            return "431 Request Header Fields Too Large", b"request too large\n", False
        except asyncio.IncompleteReadError:
            return "400 Bad Request", b"incomplete request\n", False
        except TimeoutError:
            return "408 Request Timeout", b"request not complete in time\n", False
        words = head.split(b"\r\n", 1)[0].split(b" ")
        if len(words) != 3 or not words[2].startswith(b"HTTP/1."):
            return "400 Bad Request", b"not an HTTP/1.x request line\n", False
        method, target = words[0], words[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return "404 Not Found", b"not found; metrics are at /metrics\n", False
        if method not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", b"only GET and HEAD\n", False
        return "200 OK", self._render(), method == b"HEAD"


def _response(status: str, body: bytes, head_only: bool) -> bytes:
    content_type = CONTENT_TYPE if status.startswith("200") else "text/plain; charset=utf-8"
    allow = "Allow: GET, HEAD\r\n" if status.startswith("405") else ""
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{allow}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)
