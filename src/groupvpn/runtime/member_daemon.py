"""``groupvpn member``: registers each configured group VPN and follows its rekeys.

With group VPNs configured it runs until SIGTERM/SIGINT, registering (and
registering again after failures, with backoff, or when heartbeats or key
lifetimes say so), taking GROUPKEY-PUSH rekeys on its IKE socket and on the
multicast groups its KEKs name, and answering `show` and `clear` on its
control socket.  With IKE gateways only, it checks phase 1 to each and stops:
exit 0 if every one came up.

``--dataplane none`` keeps keys and dynamic policies in the control plane without
forwarding packets.  With a :class:`DataPlaneSettings` (``--dataplane linux``) the
member also forwards: a TUN, policy routing and raw sockets on the VPNs'
`group-vpn-external-interface` (groupvpn.dataplane.linux), the ESP engine fed with
every VPN's keys whenever they change, all removed again when it stops (and a
crashed run's leftovers removed when it starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from groupvpn.config.model import Config, IkeGateway
from groupvpn.dataplane.linux import DEFAULT_STATE_DIR, DEFAULT_TUN_NAME, PlumbingError
from groupvpn.dataplane.shell import MemberDataPlane
from groupvpn.ike.events import IkeSaEstablished, IkeSaFailed
from groupvpn.member.core import GroupVpn, MemberCore, Registered, Reregistering
from groupvpn.member.install import PolicyFilter, install_all
from groupvpn.member.keyring import ChangeKind, KeyChange
from groupvpn.member.push_inbox import PushDropped
from groupvpn.member.rekeys import HeartbeatReceived, RekeyApplied
from groupvpn.runtime import member_views, views
from groupvpn.runtime.base import Daemon, DaemonOptions, StartupError, group_by_local_address
from groupvpn.runtime.binding import interface_address
from groupvpn.runtime.control import DEFAULT_MEMBER_SOCKET
from groupvpn.runtime.logfmt import tagged
from groupvpn.runtime.metrics_families import member_families, render
from groupvpn.runtime.udp import EndpointProtocol

log = logging.getLogger("groupvpn")

#: Seconds over which members spread registering again when the whole group must
#: (docs/persistence.md, "Storms"): at the ~300 registrations a second a key server
#: core sustains, 8,000 members need about 27 s, so they converge within a few
#: spreads while no member waits longer than this before its first attempt.  Less
#: than the activation-time-delay margin keys have before they end (3 x ATD).
REREGISTRATION_SPREAD = 10.0

__all__ = ["DataPlaneSettings", "PolicyFilter", "install_all", "member_settings", "run_member"]


@dataclass(frozen=True, slots=True)
class DataPlaneSettings:
    """``--dataplane linux``: forward packets; where the TUN and the state file go."""

    tun_name: str = DEFAULT_TUN_NAME
    #: Run-time state (the record of what the data plane added), one file per netns.
    state_dir: Path = DEFAULT_STATE_DIR
    #: Fault injection for tests: seconds added to this member's group clock, so its
    #: packets fall outside the others' anti-replay window (and theirs outside its).
    group_clock_skew: float = 0.0


async def run_member(
    gateways: Sequence[IkeGateway],
    vpns: Sequence[GroupVpn],
    options: DaemonOptions,
    policy_filter: PolicyFilter = install_all,
    *,
    config: Config | None = None,
    dataplane: DataPlaneSettings | None = None,
) -> int:
    """Run the member.  ``config``: the whole configuration, for the settings of each
    VPN that ``vpns`` may not carry (heartbeat-threshold, the external interface).
    ``dataplane``: forward packets (None: control plane only)."""
    if not vpns:
        return await _check_phase1(gateways, options)
    interfaces: dict[str, IPv4Address] = {}
    if config is not None:
        vpns, interfaces = member_settings(config, vpns)
    daemon = MemberDaemon(options)
    daemon.open_debug_keys()
    loop = asyncio.get_running_loop()
    cores: list[MemberCore] = []
    multicast = MulticastListeners(loop)
    data_plane: MemberDataPlane | None = None

    def sync_multicast() -> None:
        wanted: dict[tuple[str, int], set[str]] = {}
        for core, _ in daemon.member_cores:
            for kek in core.keks():
                if (group := kek.multicast_group) is not None:
                    address = interfaces.get(kek.vpn, IPv4Address(core.ike.local_address))
                    wanted.setdefault((str(group[0]), group[1]), set()).add(str(address))
        multicast.sync(wanted, daemon.member_cores)

    def on_event(event: object) -> None:
        if isinstance(event, Registered):
            dynamic = [
                p for c, _ in daemon.member_cores for p in c.dynamic_policies()
                if p["vpn"] == event.vpn
            ]  # fmt: skip
            log.info(
                "group SAs installed: vpn=%s installed=%d rejected=%d dynamic-policies=%d",
                event.vpn, event.installed, len(event.sas) - event.installed,
                sum(1 for p in dynamic if p.get("installed", True)),
            )  # fmt: skip
        if isinstance(event, Registered | RekeyApplied):
            sync_multicast()  # a new KEK may name another multicast group
        if data_plane is not None and isinstance(event, Registered | RekeyApplied | KeyChange):
            data_plane.keys_changed()

    daemon.listeners.append(on_event)
    for local, local_gateways in group_by_local_address(gateways).items():
        names = {g.name for g in local_gateways}
        local_vpns = [vpn for vpn in vpns if vpn.gateway in names]
        if not local_vpns:
            continue
        endpoint = daemon.new_endpoint(local, local_gateways)
        core = MemberCore(
            endpoint, local_vpns, options.dialect,
            retransmit_interval=options.retransmit_interval,
            retransmit_limit=options.retransmit_limit,
            reregistration_spread=REREGISTRATION_SPREAD,
            policy_filter=policy_filter,
        )  # fmt: skip
        cores.append(core)
        protocol = await daemon.listen(core, local, ", ".join(sorted(names)))
        daemon.member_cores.append((core, protocol))

    if dataplane is not None:
        data_plane = await open_data_plane(config, vpns, cores, dataplane)
    try:
        return await _serve(daemon, cores, multicast, sync_multicast, vpns, data_plane)
    finally:
        if data_plane is not None:
            await data_plane.close()


async def _serve(
    daemon: MemberDaemon,
    cores: list[MemberCore],
    multicast: MulticastListeners,
    sync_multicast: Any,
    vpns: Sequence[GroupVpn],
    data_plane: MemberDataPlane | None,
) -> int:
    loop = asyncio.get_running_loop()

    def clock() -> views.Clock:
        return views.Clock(loop.time())

    def clear(args: dict[str, Any]) -> object:
        for core in cores:
            core.clear(loop.time())
        daemon.pump_all()
        sync_multicast()
        log.info("group SAs cleared by operator; registering again")
        return None

    def statistics() -> dict[str, object]:
        return {"dataplane": "none"} if data_plane is None else data_plane.statistics()

    def clear_statistics(args: dict[str, Any]) -> object:
        if data_plane is not None:
            data_plane.clear_statistics()
            log.info("event=statistics-cleared ESP statistics cleared by operator")
        return None

    await daemon.start_control(
        DEFAULT_MEMBER_SOCKET,
        {
            "member-ike-security-associations": lambda args: member_views.ike_security_associations(
                cores, clock()
            ),
            "member-ipsec-security-associations": lambda args: (
                member_views.ipsec_security_associations(
                    [key for core in cores for key in core.key_status(loop.time())], clock()
                )
            ),
            "member-kek-security-associations": lambda args: (
                member_views.member_kek_security_associations(cores, clock())
            ),
            "dynamic-policies": lambda args: {
                "dynamic-policies": [p for core in cores for p in core.dynamic_policies()]
            },
            "clear-member-ipsec-security-associations": clear,
            # Without its KEK a member cannot follow rekeys: it registers again too.
            "clear-member-kek-security-associations": clear,
            "member-dataplane-statistics": lambda args: statistics(),
            "clear-member-ipsec-statistics": clear_statistics,
        },
    )
    await daemon.start_metrics(
        lambda: render(lambda: member_families(
            statistics(), member_views.member_kek_security_associations(cores, clock()),
            member_views.ike_security_associations(cores, clock()),
        ))
    )  # fmt: skip
    daemon.install_signal_handlers()
    log.info("member running; group VPNs: %s", ", ".join(v.name for v in vpns))
    daemon.pump_all()  # start registering (each VPN's first timer is due now)
    await daemon.stop.wait()
    multicast.close()
    await daemon.shutdown()
    return 0


async def open_data_plane(
    config: Config | None,
    vpns: Sequence[GroupVpn],
    cores: Sequence[MemberCore],
    settings: DataPlaneSettings,
) -> MemberDataPlane:
    """The Linux data plane on the VPNs' external interface; StartupError if impossible."""
    member = config.member if config is not None else None
    external = {
        vpn.name: setting.external_interface
        for vpn in vpns
        if member is not None and (setting := member.vpns.get(vpn.name)) is not None
        and setting.external_interface is not None
    }  # fmt: skip
    names = sorted(set(external.values()))
    if config is None or not names:
        raise StartupError(
            "the Linux data plane needs group-vpn-external-interface "
            "([edit security group-vpn member ipsec vpn NAME])"
        )
    if len(names) > 1:
        raise StartupError(
            f"the Linux data plane uses one external interface; the VPNs name {', '.join(names)}"
        )
    name = names[0]
    fed = {vpn for vpn, interface in external.items() if interface == name}
    skipped = sorted(vpn.name for vpn in vpns if vpn.name not in fed)
    if skipped:
        log.warning("data plane: no external interface, not forwarded: %s", ", ".join(skipped))
    physical = config.interfaces.get(name.partition(".")[0])
    try:
        return await MemberDataPlane.open(
            name, interface_address(config, name),
            lambda: [keys for core in cores for keys in core.group_keys() if keys.vpn in fed],
            configured_mtu=physical.mtu if physical is not None else None,
            tun_name=settings.tun_name, state_dir=settings.state_dir,
            group_clock_skew=settings.group_clock_skew,
        )  # fmt: skip
    except PlumbingError as exc:
        raise StartupError(f"data plane: {exc}") from exc


def member_settings(
    config: Config, vpns: Sequence[GroupVpn]
) -> tuple[list[GroupVpn], dict[str, IPv4Address]]:
    """Each VPN's heartbeat-threshold from the configuration, and the address of its
    `group-vpn-external-interface` (where multicast rekeys are joined) when it has one."""
    member = config.member
    configured = member.vpns if member is not None else {}
    result, addresses = [], {}
    for vpn in vpns:
        settings = configured.get(vpn.name)
        if settings is None:
            result.append(vpn)
            continue
        result.append(dataclasses.replace(vpn, heartbeat_threshold=settings.heartbeat_threshold))
        if settings.external_interface is not None:
            address = interface_address(config, settings.external_interface)
            if address is not None:
                addresses[vpn.name] = address
    return result, addresses


# -- logging the member's own events ----------------------------------------------------


@dataclass
class MemberDaemon(Daemon):
    """The shared daemon, with a log line of its own for each rekey-side event."""

    member_cores: list[tuple[MemberCore, EndpointProtocol]] = dataclasses.field(
        default_factory=list
    )

    def on_event(self, event: object) -> None:
        described = describe_member_event(event)
        if described is None:
            super().on_event(event)
            return
        level, line = described
        log.log(level, "%s", tagged(event, line))
        for listener in self.listeners:
            listener(event)


def describe_member_event(event: object) -> tuple[int, str] | None:
    """The log level and line of a rekey-side member event; None for the others."""
    if isinstance(event, RekeyApplied):
        kek = "no" if event.new_kek is None else event.new_kek.hex()
        return logging.INFO, (
            f"rekey applied: vpn={event.vpn} seq={event.sequence} installed={event.installed} "
            f"rejected={event.rejected} deleted={event.deleted} kek-rollover={kek} "
            f"ack={'yes' if event.acked else 'no'}"
        )
    if isinstance(event, HeartbeatReceived):
        if not event.missing:
            return logging.DEBUG, f"heartbeat: vpn={event.vpn} seq={event.sequence}"
        missing = ",".join(spi.hex() for spi in event.missing)
        return logging.WARNING, (
            f"heartbeat lists keys this member lacks: vpn={event.vpn} seq={event.sequence} "
            f"missing={missing}"
        )
    if isinstance(event, PushDropped):
        vpn = event.vpn or "-"
        suppressed = f" (+{event.suppressed} not logged)" if event.suppressed else ""
        return logging.WARNING, (
            f"push dropped: peer={event.peer[0]}:{event.peer[1]} reason={event.reason} "
            f"vpn={vpn} count={event.count}{suppressed} detail={event.detail}"
        )
    if isinstance(event, Reregistering):
        return logging.WARNING, (
            f"registering again: vpn={event.vpn} reason={event.reason} in={event.delay:.1f}s"
        )
    if isinstance(event, KeyChange):
        level = logging.INFO if event.kind is not ChangeKind.INSTALLED else logging.DEBUG
        return level, (
            f"group SA {event.kind.value}: vpn={event.vpn} spi={event.spi.hex()} "
            f"policy={event.selectors} reason={event.reason}"
        )
    return None


# -- multicast rekeys ----------------------------------------------------------------------


class MulticastListeners:
    """One UDP socket per multicast group and port a KEK names, joined on each interface.

    Datagrams go to the member core(s) holding the KEK the cookies name (or the
    first one listening, which counts an unknown KEK), and the core's own IKE
    socket sends whatever it answers: a socket bound to a group address must
    not be a source.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sockets: dict[tuple[str, int], _GroupSocket] = {}

    def sync(
        self,
        wanted: dict[tuple[str, int], set[str]],
        cores: list[tuple[MemberCore, EndpointProtocol]],
    ) -> None:
        for key in [k for k in self._sockets if k not in wanted]:
            log.info("multicast rekeys: leaving %s port %d", *key)
            self._sockets.pop(key).close()
        for key, addresses in wanted.items():
            listener = self._sockets.get(key)
            if listener is None:
                try:
                    listener = _GroupSocket(self._loop, key[0], key[1], cores)
                except OSError as exc:
                    log.warning(
                        "multicast rekeys: cannot listen on %s port %d: %s", *key, exc.strerror
                    )
                    continue
                self._sockets[key] = listener
            listener.cores = cores
            listener.join(addresses)

    def close(self) -> None:
        for listener in self._sockets.values():
            listener.close()
        self._sockets.clear()


class _GroupSocket(asyncio.DatagramProtocol):
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        group: str,
        port: int,
        cores: list[tuple[MemberCore, EndpointProtocol]],
    ) -> None:
        self.group, self.port, self.cores = group, port, cores
        self._loop = loop
        self._joined: set[str] = set()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Other members (or daemons) on this host may listen to the same group.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((group, port))  # only datagrams to the group, not all of the port
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self._transport: asyncio.BaseTransport | None = None
        self._closed = False
        self._task = loop.create_task(loop.create_datagram_endpoint(lambda: self, sock=self._sock))

    def join(self, addresses: set[str]) -> None:
        for address in sorted(addresses - self._joined):
            request = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton(address))
            try:
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
            except OSError as exc:
                log.warning(
                    "multicast rekeys: cannot join %s on %s: %s", self.group, address, exc.strerror
                )
                continue
            self._joined.add(address)
            log.info("multicast rekeys: joined %s port %d on %s", self.group, self.port, address)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if self._closed:
            transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        now = self._loop.time()
        spi = data[:16]
        holders = [(c, p) for c, p in self.cores if c.holds_kek(spi)] or self.cores[:1]
        for core, protocol in holders:
            core.receive_multicast(data, peer, now)
            protocol.pump()  # ACKs and re-registration leave from the core's IKE socket

    def error_received(self, exc: Exception) -> None:
        log.debug("multicast socket error: %s", exc)

    def close(self) -> None:
        self._closed = True
        for address in self._joined:
            request = struct.pack("4s4s", socket.inet_aton(self.group), socket.inet_aton(address))
            with contextlib.suppress(OSError):
                self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, request)
        self._joined.clear()
        if self._transport is not None:
            self._transport.close()
        elif not self._task.done():
            self._task.cancel()
            self._sock.close()
        # else connection_made is on its way, and closes the transport itself


async def _check_phase1(gateways: Sequence[IkeGateway], options: DaemonOptions) -> int:
    """No group VPN configured: bring up phase 1 to every gateway, then stop."""
    daemon = Daemon(options)
    daemon.open_debug_keys()
    outcome: dict[str, bool] = {}
    all_done = asyncio.Event()

    def track(event: object) -> None:
        # Only our own negotiations decide the outcome: a refused stray first
        # message from the key server's address is not our SA failing.
        if isinstance(event, IkeSaEstablished) and event.sa.role == "initiator":
            outcome.setdefault(event.sa.gateway, True)
        elif isinstance(event, IkeSaFailed) and event.role == "initiator":
            outcome.setdefault(event.gateway, False)
        if len(outcome) == len(gateways):
            all_done.set()

    daemon.listeners.append(track)
    loop = asyncio.get_running_loop()
    for local, local_gateways in group_by_local_address(gateways).items():
        endpoint = daemon.new_endpoint(local, local_gateways)
        await daemon.listen(endpoint, local, ", ".join(g.name for g in local_gateways))
        for gateway in local_gateways:
            log.info(
                "initiating IKE Phase 1 to %s (gateway %s)", gateway.addresses[0], gateway.name
            )
            endpoint.initiate(gateway.name, loop.time())
    daemon.pump_all()
    daemon.install_signal_handlers()
    stop_wait = asyncio.ensure_future(daemon.stop.wait())
    done_wait = asyncio.ensure_future(all_done.wait())
    await asyncio.wait({stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    done_wait.cancel()
    if all_done.is_set():
        log.info(
            "Phase 1 complete for %d gateway(s); no group VPN configured "
            "([edit security group-vpn member ipsec vpn]), stopping",
            len(gateways),
        )
    await daemon.shutdown()
    return 0 if len(outcome) == len(gateways) and all(outcome.values()) else 1
