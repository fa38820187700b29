"""The asyncio shell around one sans-IO core on one UDP socket.

It owns the socket and the single timer, feeds datagrams and ``loop.time()``
into the core, sends what the core queued and hands events to a callback.
Nothing protocol-related happens here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Protocol, cast

from groupvpn.ike.events import Address

log = logging.getLogger("groupvpn")

#: Seconds a timer waits after the core's handle_timer raised, before it tries again.
TIMER_ERROR_BACKOFF = 1.0

# Linux socket options the socket module does not name (asm-generic/socket.h).
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


class SansIoCore(Protocol):
    """What the shell drives: the IKE endpoint, or a key server / member core on it."""

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None: ...
    def datagrams_to_send(self) -> list[tuple[bytes, Address]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> object | None: ...


class EndpointProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SansIoCore, on_event: Callable[[object], None]) -> None:
        self.endpoint = endpoint
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: After a timer failed, no deadline earlier than this (see _fire).
        self._not_before = 0.0

    # -- asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # create_datagram_endpoint always hands over a datagram transport, though
        # asyncio's selector implementation does not subclass DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer: Address = (str(addr[0]), int(addr[1]))
        try:
            self.endpoint.receive_datagram(data, peer, self._loop.time())
        except Exception:
            # The cores report their own bugs as events; this is the last line, so a
            # bug in any layer loses one datagram, never the timer or the socket.
            log.exception("internal error handling a datagram from %s", peer[0])
        self.pump()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) surface here; the core's own
        # retransmission and timeouts decide what they mean.
        log.debug("socket error: %s", exc)

    # -- driving the core -------------------------------------------------------------

    def pump(self) -> None:
        """Send what the core queued, deliver its events, re-arm its timer.

        A failing event handler is logged and skipped: the timer must be re-armed
        whatever happens, or retransmissions and expiries would silently stop.
        """
        try:
            if self._transport is not None:
                for data, addr in self.endpoint.datagrams_to_send():
                    self._transport.sendto(data, addr)
            while (event := self.endpoint.next_event()) is not None:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("error while handling %s", type(event).__name__)
        finally:
            self._arm_timer()

    def _arm_timer(self) -> None:
        when = self.endpoint.get_timer()
        if when is not None and when < self._not_before:
            when = self._not_before
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = None if when is None else self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        assert self._timer_at is not None
        # Never hand the core a time before the deadline it asked for (aioquic's rule).
        now = max(self._timer_at, self._loop.time())
        self._timer = self._timer_at = None
        try:
            self.endpoint.handle_timer(now)
        except Exception:
            # Keep the timer alive, but a deadline that fails every time must not turn
            # into a busy loop: the next attempt waits a second.
            log.exception("internal error in a timer")
            self._not_before = now + TIMER_ERROR_BACKOFF
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()


#: Socket buffer size for the daemons' UDP sockets.  A key server that pushes a
#: rekey to thousands of members gets their ACKs back in a burst; the kernel's
#: default receive buffer (about 200 KiB, a few hundred small datagrams) would drop
#: most of them and turn each drop into a retransmission ten seconds later.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def enlarge_buffers(sock: socket.socket, size: int = SOCKET_BUFFER_BYTES) -> None:
    """Ask for ``size``-byte buffers; root may exceed net.core.[rw]mem_max (the *FORCE options)."""
    for forced, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, size)
        except OSError:  # not root: the kernel caps the plain option at its maximum
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


async def open_endpoint(
    core: SansIoCore, local_address: str, port: int, on_event: Callable[[object], None]
) -> EndpointProtocol:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: EndpointProtocol(core, on_event), local_addr=(local_address, port)
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        enlarge_buffers(sock)
    return protocol
