"""The asyncio side of the member data plane: TUN and raw sockets around the engine.

The engine (:class:`groupvpn.dataplane.engine.DataPlane`) is sans-IO: it takes a
packet and the time and returns what to send.  This shell owns the descriptors the
Linux plumbing (:mod:`.linux`) opened, all non-blocking:

* the TUN: each read is a clear packet for :meth:`DataPlane.outbound`;
* the raw ``IPPROTO_ESP`` socket: each read is an ESP packet (IP header included)
  for :meth:`DataPlane.inbound`;
* what the engine returns goes out as it says: ``ToWan`` on a raw ``IPPROTO_RAW``
  socket (ESP on the one marked for the WAN table, anything else on the one whose
  mark sends it the normal way), ``ToTun`` written into the TUN.

Each readiness callback drains its descriptor until EAGAIN (python-performance.md
§2: one read per callback costs about 2 µs more per packet), up to ``BATCH`` packets
so that the other descriptor and the control plane get their turn; the reader is
level-triggered, so what is left is read in the next round.  A failing send or
write loses that packet and is counted (and logged, rate-limited); an exception
from the engine loses that packet and is logged with its traceback: nothing here
stops the daemon.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Protocol

from groupvpn.dataplane.linux import (
    DEFAULT_STATE_DIR,
    DEFAULT_TUN_NAME,
    LinuxPlumbing,
    PlumbingError,
    check_privileges,
    find_wan_interface,
)
from groupvpn.member.group_clock import GroupClock
from groupvpn.member.keyring import GroupKeyring, PolicySelectors
from groupvpn.member.keys import GroupSa

log = logging.getLogger("groupvpn")

#: Packets read per readiness callback before yielding to the event loop.
BATCH = 256
#: Largest packet read from the TUN or the ESP socket.
MAX_PACKET = 65535
#: Seconds between two log lines about the same kind of send error.
ERROR_LOG_INTERVAL = 10.0
IPPROTO_ESP = 50


class Output(Protocol):
    """ToWan or ToTun: a full IPv4 packet."""

    @property
    def packet(self) -> bytes: ...


class Engine(Protocol):
    """What the shell needs of :class:`groupvpn.dataplane.engine.DataPlane`."""

    def outbound(self, packet: bytes, now: float) -> Iterable[Output]: ...
    def inbound(self, packet: bytes, now: float) -> Iterable[Output]: ...


@dataclass
class ShellCounters:
    """What crossed the shell; the engine counts its own drops by reason."""

    tun_packets_read: int = 0
    esp_packets_read: int = 0
    wan_packets_sent: int = 0
    clear_packets_sent: int = 0
    tun_packets_written: int = 0
    send_errors: int = 0
    tun_write_errors: int = 0
    read_errors: int = 0
    engine_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name.replace("_", "-"): getattr(self, f.name) for f in fields(self)}

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)


class DataPlaneShell:
    """Drives one engine from the TUN and raw sockets on the running event loop."""

    def __init__(
        self,
        engine: Engine,
        *,
        tun_fd: int,
        esp_socket: socket.socket,
        wan_socket: socket.socket,
        clear_socket: socket.socket,
        to_wan: type,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.engine = engine
        self.counters = ShellCounters()
        self._tun = tun_fd
        self._esp = esp_socket
        self._wan = wan_socket
        self._clear = clear_socket
        self._to_wan = to_wan
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock = clock
        self._last_logged: dict[str, float] = {}
        self._running = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._clock is None:
            self._clock = loop.time
        for sock in (self._esp, self._wan, self._clear):
            sock.setblocking(False)
        os.set_blocking(self._tun, False)
        loop.add_reader(self._tun, self._on_tun)
        loop.add_reader(self._esp.fileno(), self._on_esp)
        self._running = True

    def stop(self) -> None:
        """Stop reading (the plumbing closes the descriptors)."""
        if not self._running or self._loop is None:
            return
        self._running = False
        self._loop.remove_reader(self._tun)
        self._loop.remove_reader(self._esp.fileno())

    # -- readiness callbacks -------------------------------------------------------------

    def _on_tun(self) -> None:
        assert self._clock is not None
        read, fd, counters = os.read, self._tun, self.counters
        outbound = self.engine.outbound
        for _ in range(BATCH):
            try:
                packet = read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                counters.read_errors += 1
                self._log_error("tun-read", f"reading the TUN failed: {exc.strerror}")
                return
            counters.tun_packets_read += 1
            try:
                out = outbound(packet, self._clock())
            except Exception:
                counters.engine_errors += 1
                log.exception("data plane: internal error on an outbound packet")
                continue
            if out:
                self._emit(out)

    def _on_esp(self) -> None:
        assert self._clock is not None
        recv, counters = self._esp.recv, self.counters
        inbound = self.engine.inbound
        for _ in range(BATCH):
            try:
                packet = recv(MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                counters.read_errors += 1
                self._log_error("esp-read", f"reading the ESP socket failed: {exc.strerror}")
                return
            counters.esp_packets_read += 1
            try:
                out = inbound(packet, self._clock())
            except Exception:
                counters.engine_errors += 1
                log.exception("data plane: internal error on an inbound packet")
                continue
            if out:
                self._emit(out)

    # -- output ---------------------------------------------------------------------------

    def _emit(self, out: Iterable[Output]) -> None:
        counters = self.counters
        for item in out:
            packet = item.packet
            if type(item) is self._to_wan:
                esp = len(packet) > 20 and packet[9] == IPPROTO_ESP
                sock = self._wan if esp else self._clear
                try:
                    sock.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
                except OSError as exc:
                    counters.send_errors += 1
                    self._log_error(
                        f"send-{exc.errno}",
                        f"sending to {socket.inet_ntoa(packet[16:20])} failed: "
                        f"{exc.strerror or exc}",
                    )
                    continue
                if esp:
                    counters.wan_packets_sent += 1
                else:
                    counters.clear_packets_sent += 1
            else:
                try:
                    os.write(self._tun, packet)
                except OSError as exc:
                    counters.tun_write_errors += 1
                    if exc.errno != errno.EAGAIN:
                        self._log_error(
                            f"tun-{exc.errno}", f"writing into the TUN failed: {exc.strerror}"
                        )
                    continue
                counters.tun_packets_written += 1

    def _log_error(self, kind: str, message: str) -> None:
        now = self._loop.time() if self._loop is not None else 0.0
        last = self._last_logged.get(kind)
        if last is not None and now - last < ERROR_LOG_INTERVAL:
            return
        self._last_logged[kind] = now
        log.warning("data plane: %s (further ones counted, logged every %ds)", message,
                    ERROR_LOG_INTERVAL)  # fmt: skip


# -- the member daemon's data plane ----------------------------------------------------------


class KeySource(Protocol):
    """One group VPN's keys as the member core holds them (member/rekeys.py GroupKeys)."""

    vpn: str
    group_id: int

    @property
    def keyring(self) -> GroupKeyring: ...
    @property
    def clock(self) -> GroupClock: ...
    def dynamic_policies(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class VpnKeys:
    """What :meth:`DataPlane.install_keys` takes for one group VPN."""

    vpn: str
    group_id: int
    order: tuple[PolicySelectors, ...]
    encrypting: dict[PolicySelectors, GroupSa]
    decrypting: tuple[GroupSa, ...]
    group_time: Callable[[float], float | None]


def vpn_keys(source: KeySource) -> VpnKeys:
    """A VPN's dynamic policies in lookup order with the key that encrypts each now.

    The order is the dynamic-policy view's (its ``sequence``: scope policy order,
    then group policy order); without scope policies (the view is empty) the
    keyring's own order, which is the order the key server listed the policies in.
    """
    keyring = source.keyring
    held = keyring.policies()
    rank: dict[PolicySelectors, int] = {}
    for view in source.dynamic_policies():
        sequence = view.get("sequence")
        spi = view.get("spi")
        if not view.get("installed", True) or not isinstance(sequence, int) or not spi:
            continue
        sa = keyring.decrypt_key(bytes.fromhex(spi))
        if sa is not None:
            selectors = PolicySelectors.of(sa)
            rank[selectors] = min(rank.get(selectors, sequence), sequence)
    position = {selectors: n for n, selectors in enumerate(held)}
    order = tuple(sorted(held, key=lambda s: (rank.get(s, 1 << 30), position[s])))
    encrypting = {s: sa for s in order if (sa := keyring.encrypt_key(s)) is not None}
    decrypting = tuple(sa for s in held for sa in keyring.decrypt_keys(s))
    return VpnKeys(
        source.vpn, source.group_id, order, encrypting, decrypting, source.clock.group_time
    )


def skewed(
    group_time: Callable[[float], float | None], skew: float
) -> Callable[[float], float | None]:
    """``group_time`` with ``skew`` seconds added (``--group-clock-skew``, for tests)."""
    if not skew:
        return group_time

    def shifted(now: float) -> float | None:
        time = group_time(now)
        return None if time is None else time + skew

    return shifted


class MemberDataPlane:
    """Engine, Linux plumbing and shell of one member daemon.

    :meth:`open` sets it all up (removing a crashed run's leftovers first);
    :meth:`keys_changed` schedules a re-install of every VPN's keys (coalesced: one
    per event-loop turn) and, when the protected destinations change, the routes;
    :meth:`close` tears it down.  Netlink work runs on one worker thread, in order.
    """

    def __init__(
        self,
        engine: Any,
        plumbing: LinuxPlumbing,
        shell: DataPlaneShell,
        sources: Callable[[], Iterable[KeySource]],
        executor: ThreadPoolExecutor,
        group_clock_skew: float = 0.0,
    ) -> None:
        self.engine = engine
        #: Fault injection (``--group-clock-skew``): seconds added to every group clock.
        self.group_clock_skew = group_clock_skew
        self.plumbing = plumbing
        self.shell = shell
        self._sources = sources
        self._executor = executor
        self._loop = asyncio.get_running_loop()
        self._pending = False
        self._installed: set[str] = set()
        self._destinations: list[IPv4Network] = []
        self._route_tasks: set[asyncio.Future[None]] = set()
        self._counting_since = self._loop.time()

    @classmethod
    async def open(
        cls,
        wan_name: str | None,
        wan_address: IPv4Address | None,
        sources: Callable[[], Iterable[KeySource]],
        *,
        configured_mtu: int | None = None,
        tun_name: str = DEFAULT_TUN_NAME,
        state_dir: Path = DEFAULT_STATE_DIR,
        group_clock_skew: float = 0.0,
    ) -> MemberDataPlane:
        """Set up the data plane on the external interface; PlumbingError if it cannot."""
        from groupvpn.dataplane.engine import DataPlane, ToWan  # only when one is wanted

        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="groupvpn-netlink")
        try:
            check_privileges()
            wan = await loop.run_in_executor(executor, find_wan_interface, wan_name, wan_address)
            # The kernel decrements the TTL when it forwards into the TUN (and out of it on
            # the receiving member): the member counts as one router hop, not two.
            engine = DataPlane(wan.address, mtu=wan.mtu, decrement_ttl=False)
            tun_mtu = configured_mtu or wan.mtu - engine.overhead()
            if tun_mtu + engine.overhead() > wan.mtu:
                log.warning(
                    "data plane: TUN mtu %d + ESP overhead up to %d exceeds the WAN's mtu %d: "
                    "large packets are fragmented (or refused with ICMP when DF is set)",
                    tun_mtu, engine.overhead(), wan.mtu,
                )  # fmt: skip
            plumbing = LinuxPlumbing(wan, tun_name=tun_name, state_dir=state_dir)
            await loop.run_in_executor(executor, plumbing.start, tun_mtu)
        except PlumbingError:
            executor.shutdown(wait=False)
            raise
        except Exception as exc:  # netlink answers (NetlinkError) while looking the WAN up
            executor.shutdown(wait=False)
            raise PlumbingError(f"data plane set-up failed: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        assert plumbing.tun_fd is not None and plumbing.esp_socket is not None
        assert plumbing.send_socket is not None and plumbing.clear_socket is not None
        shell = DataPlaneShell(
            engine, tun_fd=plumbing.tun_fd, esp_socket=plumbing.esp_socket,
            wan_socket=plumbing.send_socket, clear_socket=plumbing.clear_socket, to_wan=ToWan,
        )  # fmt: skip
        shell.start()
        member = cls(engine, plumbing, shell, sources, executor, group_clock_skew)
        member.keys_changed()
        return member

    def keys_changed(self) -> None:
        """The keys or the policies of some VPN changed: re-install them soon."""
        if not self._pending:
            self._pending = True
            self._loop.call_soon(self._sync)

    def _sync(self) -> None:
        self._pending = False
        seen = set()
        try:
            for source in self._sources():
                keys = vpn_keys(source)
                self.engine.install_keys(
                    keys.vpn, keys.group_id, keys.order, keys.encrypting, keys.decrypting,
                    skewed(keys.group_time, self.group_clock_skew),
                )  # fmt: skip
                seen.add(keys.vpn)
            for vpn in self._installed - seen:
                self.engine.remove_vpn(vpn)
            self._installed = seen
            destinations = list(self.engine.protected_destinations())
        except Exception:
            log.exception("data plane: installing the keys failed")
            return
        if sorted(destinations) != sorted(self._destinations):
            self._destinations = destinations
            future = self._loop.run_in_executor(
                self._executor, self.plumbing.set_destinations, destinations
            )
            self._route_tasks.add(future)
            future.add_done_callback(self._routes_done)

    def _routes_done(self, future: asyncio.Future[None]) -> None:
        self._route_tasks.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("data plane: updating the routes failed: %s", exc)

    def statistics(self) -> dict[str, object]:
        counters = getattr(self.engine, "counters", None)
        engine = counters.as_dict() if counters is not None else {}
        return {"shell": self.shell.counters.as_dict(), "engine": engine,
                "destinations": [str(d) for d in self._destinations],
                "seconds": max(0, int(self._loop.time() - self._counting_since))}  # fmt: skip

    def clear_statistics(self) -> None:
        """`clear security group-vpn member ipsec statistics`: every counter back to zero."""
        counters = getattr(self.engine, "counters", None)
        if counters is not None:
            counters.reset()
        self.shell.counters.reset()
        self._counting_since = self._loop.time()

    async def close(self) -> None:
        """Stop reading and remove everything the plumbing added."""
        self.shell.stop()
        if self._route_tasks:
            await asyncio.gather(*self._route_tasks, return_exceptions=True)
        try:
            await self._loop.run_in_executor(self._executor, self.plumbing.teardown)
        finally:
            self._executor.shutdown(wait=False)
        log.info("data plane stopped: %s", self.statistics())
