"""``groupvpn server``: the group key server on UDP 848.

It answers IKE phase 1 from its configured gateways, registers members with
GROUPKEY-PULL into the groups they may join, pushes rekeys and heartbeats
(``server.rekeying``: unicast copies leave from the server socket the member
registered through), and answers `show`, `request` and `reload` commands on its
control socket until SIGTERM/SIGINT.

Multicast rekeys leave by a socket of their own per outgoing interface
(:class:`MulticastSender`), set up deliberately:

* ``IP_MULTICAST_IF``: the address of `multicast-outgoing-interface`, found in
  `[edit interfaces]`.  If that names no address, or one this host does not have
  (a configuration written for another box), the server's local address is used
  instead, with a warning.
* ``IP_MULTICAST_TTL`` = :data:`MULTICAST_TTL`: the kernel's default of 1 never
  leaves the server's own link, but the spec's rekeys cross a routed private WAN
  to the members (CE, PE, a few P routers, PE, CE).  8 covers such a core with room
  to spare and still bounds the datagram; administratively scoped groups
  (239/8) and multicast boundaries are what really fence the group in.  Junos
  has no knob for it, so neither do we.
* ``IP_MULTICAST_LOOP``: on only when a member may share this host: with
  `co-location`, or when the interface is a loopback address (then nothing but
  local members could hear it).  Off otherwise, so the server never receives its
  own rekeys.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import Address
from groupvpn.runtime import server_views, views
from groupvpn.runtime.base import Daemon, DaemonOptions, StartupError
from groupvpn.runtime.binding import phase1_peer
from groupvpn.runtime.control import DEFAULT_SERVER_SOCKET, ControlError
from groupvpn.runtime.metrics_families import render, server_families
from groupvpn.runtime.server_persistence import StatePersister
from groupvpn.runtime.server_setup import ServerSetup, SetupError, load_server_setup
from groupvpn.runtime.state import SIGNING_KEY_FILE, StateDirectory, StateError
from groupvpn.runtime.statistics_views import clear_statistics, statistics_view
from groupvpn.server import rekey_events
from groupvpn.server.core import KeyServerCore
from groupvpn.server.group_state import RestoredGroup
from groupvpn.server.groups import GroupDefinition, GroupKeyServer, counter_mode_problem
from groupvpn.server.rekey import RekeyReason
from groupvpn.server.rekeying import KeyServerRekeying, MulticastDatagram, RekeyRefused
from groupvpn.server.signing import SigningKey
from groupvpn.server.statistics import ServerStatistics
from groupvpn.store.server_store import StoreError
from groupvpn.wire.dialect import Dialect

log = logging.getLogger("groupvpn")


#: Hops a multicast rekey may cross (see the module docstring for why 8).
MULTICAST_TTL = 8


def dialect_problem(setup: ServerSetup, dialect: Dialect) -> str | None:
    """Why ``setup`` cannot run in ``dialect`` (None if it can)."""
    for group in setup.groups:
        # AES-GCM needs sender IDs, which only the v2 dialect hands out (RFC 6407).
        if (problem := counter_mode_problem(group, dialect)) is not None:
            return problem
    return None


async def run_server(
    config_path: Path, setup: ServerSetup, options: DaemonOptions, state_dir: Path
) -> int:
    """Serve until told to stop; 0 on a clean stop.

    ``setup`` has passed :func:`dialect_problem` for ``options.dialect`` (the command
    checks it before it keeps anything in ``state_dir``).
    """
    loop = asyncio.get_running_loop()
    daemon = Daemon(options)
    daemon.describers.append(rekey_events.describe)
    statistics = ServerStatistics(loop.time())
    daemon.listeners.append(statistics.on_event)
    daemon.open_debug_keys()
    signing_key = _load_signing_key(state_dir) if setup.has_kek else None
    key_server = GroupKeyServer(
        setup.groups, options.dialect, signing_key=signing_key, port=options.port,
        clock_offset=time.time() - loop.time(),
    )  # fmt: skip
    persister = _restore_state(state_dir, key_server, loop.time())
    first_local = next(iter(setup.by_local_address))
    rekeying = KeyServerRekeying(key_server, loop.time(), source_address=str(first_local))
    rekeying.restore_members(loop.time())
    _push_policies_changed_while_stopped(rekeying, persister.restored, loop.time())
    multicast = MulticastSender(first_local, setup.co_location)
    multicast.prepare(setup.groups)
    endpoints = {}
    for local, local_gateways in setup.by_local_address.items():
        endpoints[local] = daemon.new_endpoint(local, local_gateways)
        core = KeyServerCore(endpoints[local], key_server, rekeying=rekeying)
        names = ", ".join(g.name for g in local_gateways)
        await daemon.listen(_ServerShellCore(core, multicast, persister), local, names)
    reloader = _Reloader(config_path, state_dir, options, rekeying, endpoints, multicast, daemon)

    def clock() -> views.Clock:
        return views.Clock(loop.time())

    def registered_members(args: dict[str, Any]) -> object:
        group = args.get("group")
        return server_views.registered_members(
            key_server, clock(), group if isinstance(group, str) else None, rekeying
        )

    def rekey(args: dict[str, Any]) -> object:
        group = args.get("group")
        if not isinstance(group, str):
            raise ControlError("which group? request security group-vpn server rekey group NAME")
        try:
            sent = rekeying.request_rekey(group, RekeyReason.OPERATOR_REQUEST, loop.time())
        except RekeyRefused as exc:
            raise ControlError(str(exc)) from exc
        daemon.pump_all()  # the first copies leave now, not at the next timer
        return server_views.rekey_sent(sent)

    await daemon.start_control(
        DEFAULT_SERVER_SOCKET,
        {
            "server-registered-members": registered_members,
            "server-ike-security-associations": lambda args: views.ike_security_associations(
                daemon.endpoints, clock()
            ),
            "server-ipsec-security-associations": lambda args: (
                server_views.ipsec_security_associations(key_server, clock())
            ),
            "server-kek-security-associations": lambda args: server_views.kek_security_associations(
                key_server, clock(), rekeying
            ),
            "server-rekey": rekey,
            "server-statistics": lambda args: statistics_view(
                statistics, key_server, clock(), daemon.endpoints
            ),
            "clear-server-statistics": lambda args: clear_statistics(
                statistics, loop.time(), daemon.endpoints
            ),
            "reload": lambda args: reloader.reload(),
        },
    )
    await daemon.start_metrics(
        lambda: render(
            lambda: server_families(
                statistics_view(statistics, key_server, clock(), daemon.endpoints)
            )
        )
    )
    daemon.install_signal_handlers()
    loop.add_signal_handler(signal.SIGHUP, reloader.reload_on_signal)
    names = ", ".join(f"{g.name} (group-id {g.group_id})" for g in setup.groups) or "none"
    log.info("key server running; groups: %s", names)
    await daemon.stop.wait()
    await daemon.shutdown()
    multicast.close()
    persister.close()
    return 0


class _ServerShellCore:
    """A key server core as the UDP shell drives it; it also sends the multicast rekeys.

    Every core's timer includes the rekey deadlines, so whichever core's shell
    runs after a rekey went out finds its multicast copies here and sends them.
    """

    def __init__(
        self, core: KeyServerCore, multicast: MulticastSender, persister: StatePersister
    ) -> None:
        self.core = core
        self._multicast = multicast
        self._persister = persister

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.core.receive_datagram(data, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        if not self._persister.flush():
            return []  # kept queued until what they carry is on disk
        if self.core.rekeying is not None:
            for datagram in self.core.rekeying.multicast_datagrams():
                self._multicast.send(datagram)
        return self.core.datagrams_to_send()

    def get_timer(self) -> float | None:
        return self.core.get_timer()

    def handle_timer(self, now: float) -> None:
        self.core.handle_timer(now)

    def next_event(self) -> object | None:
        return self.core.next_event()


class MulticastSender:
    """The sockets multicast rekeys leave by: one per outgoing interface address.

    Sent directly (non-blocking): one datagram per rekey or heartbeat and group
    never fills a socket buffer, and a datagram the kernel refuses is logged and
    lost like any datagram on the wire.
    """

    def __init__(self, fallback: IPv4Address, co_location: bool) -> None:
        self._fallback = fallback
        self._co_location = co_location
        self._sockets: dict[IPv4Address, socket.socket | None] = {}
        #: Interface addresses that cannot send multicast here -> the one used instead.
        self._instead: dict[IPv4Address, IPv4Address] = {}

    def prepare(self, groups: Iterable[GroupDefinition]) -> None:
        """Open the sockets the multicast groups need (at start and after a reload)."""
        for group in groups:
            if group.kek is not None and group.kek.multicast_group is not None:
                self._socket(group.multicast_interface_address, group.multicast_interface)

    def send(self, datagram: MulticastDatagram) -> None:
        sock = self._socket(datagram.interface, None)
        if sock is None:
            return  # why was logged when the socket could not be opened
        try:
            sock.sendto(datagram.data, datagram.destination)
        except OSError as exc:
            host, port = datagram.destination
            log.warning("multicast rekey not sent: group=%s destination=%s:%d reason=%s",
                        datagram.group, host, port, exc.strerror or exc)  # fmt: skip

    def close(self) -> None:
        for sock in self._sockets.values():
            if sock is not None:
                sock.close()
        self._sockets.clear()

    def _socket(self, interface: IPv4Address | None, name: str | None) -> socket.socket | None:
        address = interface or self._fallback
        address = self._instead.get(address, address)
        if address in self._sockets:
            return self._sockets[address]
        loop_back = self._co_location or address.is_loopback
        try:
            sock = open_multicast_socket(address, MULTICAST_TTL, loop_back)
        except OSError as exc:
            if address == self._fallback:
                log.error("cannot send multicast rekeys from %s: %s", address, exc.strerror)
                self._sockets[address] = None
                return None
            log.warning(
                "multicast-outgoing-interface %s (%s) cannot send multicast here: %s; using %s",
                name or "?", address, exc.strerror, self._fallback,
            )  # fmt: skip
            self._instead[address] = self._fallback
            return self._socket(self._fallback, None)
        log.info("multicast rekeys leave from %s (ttl %d, loop %s)", address, MULTICAST_TTL,
                 "on" if loop_back else "off")  # fmt: skip
        self._sockets[address] = sock
        return sock


def open_multicast_socket(interface: IPv4Address, ttl: int, loop_back: bool) -> socket.socket:
    """A non-blocking UDP socket sending multicast out of ``interface``'s link."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, interface.packed)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(loop_back))
        # The source address is the interface's; the port is the kernel's choice,
        # since the server socket already holds the GDOI port on its own address.
        sock.bind((str(interface), 0))
    except OSError:
        sock.close()
        raise
    return sock


class _Reloader:
    """`groupvpn reload` and SIGHUP: run a new configuration, or keep the old one.

    Everything is read and checked before anything changes, so a refused
    reload leaves the server exactly as it was; the reason goes back to the
    operator (and to the log for SIGHUP).
    """

    def __init__(
        self,
        config_path: Path,
        state_dir: Path,
        options: DaemonOptions,
        rekeying: KeyServerRekeying,
        endpoints: dict[IPv4Address, IkeEndpoint],
        multicast: MulticastSender,
        daemon: Daemon,
    ) -> None:
        self._config_path = config_path
        self._state_dir = state_dir
        self._options = options
        self._rekeying = rekeying
        self._key_server = rekeying.groups
        self._endpoints = endpoints
        self._multicast = multicast
        self._daemon = daemon

    def reload(self) -> dict[str, object]:
        try:
            setup = load_server_setup(self._config_path)
        except SetupError as exc:
            raise ControlError(
                f"{exc}\nconfiguration not reloaded; still running the previous one"
            ) from exc
        if set(setup.by_local_address) != set(self._endpoints):
            raise ControlError(
                "the key server's local addresses changed (ike gateway local-address): "
                "that needs a restart; configuration not reloaded"
            )
        peers = {
            local: [phase1_peer(gateway, self._options.phase1_doi) for gateway in gateways]
            for local, gateways in setup.by_local_address.items()
        }
        previous_key = self._key_server.signing_key
        if setup.has_kek and previous_key is None:
            try:
                self._key_server.signing_key = _load_signing_key(self._state_dir)
            except StartupError as exc:
                raise ControlError(f"{exc}; configuration not reloaded") from exc
        try:
            outcome = self._rekeying.reconfigure(setup.groups, asyncio.get_running_loop().time())
        except ValueError as exc:
            self._key_server.signing_key = previous_key  # a refused reload changes nothing
            raise ControlError(f"{exc}; configuration not reloaded") from exc
        for local, endpoint in self._endpoints.items():
            endpoint.set_peers(peers[local])
        self._multicast.prepare(setup.groups)
        changes = outcome.changes
        for change in changes:
            log.info("configuration reloaded: group %s (group-id %d) %s%s", change.group,
                     change.group_id, change.kind,
                     f": {'; '.join(change.details)}" if change.details else "")  # fmt: skip
        if not changes:
            log.info("configuration reloaded: no group changed")
        # The rekeys the changes called for are built; their first copies leave now.
        self._daemon.pump_all()
        return {
            "changes": [
                {"group": c.group, "group-id": c.group_id, "change": c.kind,
                 "details": list(c.details), "rekey-needed": c.needs_rekey,
                 "rekey": (server_views.rekey_sent(outcome.rekeys[c.group_id])
                           if c.group_id in outcome.rekeys else None)}
                for c in changes
            ]
        }  # fmt: skip

    def reload_on_signal(self) -> None:
        log.info("received SIGHUP, reloading %s", self._config_path)
        try:
            self.reload()
        except ControlError as exc:
            # One line, so a journal or syslog filter gets all of it (the control
            # socket's answer keeps the Junos-style layout for the operator).
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            log.error("reload refused: %s", " | ".join(lines))


def _load_signing_key(state_dir: Path) -> SigningKey:
    """The key members verify rekeys with: the same one across restarts."""
    state = StateDirectory(state_dir)
    try:
        state.prepare()
        key, generated = state.signing_key()
    except StateError as exc:
        raise StartupError(str(exc)) from exc
    verb = "generated and stored" if generated else "loaded"
    log.info("rekey signing key %s: rsa-%d %s (%s)", verb, key.bits, key.fingerprint,
             state_dir / SIGNING_KEY_FILE)  # fmt: skip
    return key


def _restore_state(state_dir: Path, key_server: GroupKeyServer, now: float) -> StatePersister:
    """Continue from the stored state (docs/persistence.md); StartupError if it is unusable."""
    try:
        StateDirectory(state_dir).prepare()
        persister = StatePersister.open(state_dir, key_server, now)
    except (StateError, StoreError) as exc:
        raise StartupError(str(exc)) from exc
    if not persister.restored:
        log.info("key server state: none stored, starting afresh (%s)", persister.store.path)
    for group in persister.restored:
        log.info("key server state restored: group %s: %s", group.group, group.describe())
    return persister


def _push_policies_changed_while_stopped(
    rekeying: KeyServerRekeying, restored: list[RestoredGroup], now: float
) -> None:
    """A policy changed while the server was stopped: push its new key, as a reload would."""
    for group in restored:
        if group.fresh and group.kek_restored:
            sent = rekeying.request_rekey(group.group, RekeyReason.POLICY_CHANGE, now)
            log.info("group %s: policies changed while stopped (%s): rekey SEQ %d queued",
                     group.group, ", ".join(group.fresh), sent.seq)  # fmt: skip
