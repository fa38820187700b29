"""``groupvpn server`` and ``groupvpn member``: Phase 1 on the wire.

Both run in the foreground, log one line per significant event and stop
cleanly on SIGTERM/SIGINT (established IKE SAs are deleted, telling the peer).
GDOI registration comes in a later step; until then the member stops once
every configured gateway has an IKE SA (or has failed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TextIO

from groupvpn.config.model import IkeGateway
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import (
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    InternalError,
    NotifyReceived,
    PacketDropped,
)
from groupvpn.runtime.binding import phase1_peer
from groupvpn.runtime.udp import EndpointProtocol, open_endpoint
from groupvpn.wire.constants import Doi, notify_name

log = logging.getLogger("groupvpn")

DEFAULT_PORT = 848


class StartupError(Exception):
    """A reason the daemon cannot start, worded for the operator."""


@dataclass
class DaemonOptions:
    port: int = DEFAULT_PORT
    phase1_doi: int = Doi.GDOI
    #: Write "icookie,encryption-key" lines here for tshark's IKEv1 decryption table.
    debug_keys: Path | None = None
    retransmit_interval: float = 2.0
    retransmit_limit: int = 4


def describe_event(event: IkeEvent) -> tuple[int, str]:
    """The log level and line for an event.  Lines are ``key=value`` so they can be filtered."""
    if isinstance(event, IkeSaEstablished):
        sa = event.sa
        return logging.INFO, (
            f"IKE SA up: peer={sa.peer[0]}:{sa.peer[1]} gateway={sa.gateway} role={sa.role} "
            f"mode={sa.mode} encryption={sa.encryption} hash={sa.hash} "
            f"dh-group=group{sa.dh_group} lifetime={sa.lifetime_seconds}s cookies={sa.cookies} "
            f"local-id={sa.local_identity} remote-id={sa.remote_identity}"
        )
    if isinstance(event, IkeSaDeleted):
        sa = event.sa
        return logging.INFO, (
            f"IKE SA down: peer={sa.peer[0]}:{sa.peer[1]} gateway={sa.gateway} "
            f"reason={event.reason} cookies={sa.cookies}"
        )
    if isinstance(event, IkeSaFailed):
        notify = f" notify={notify_name(event.notify)}" if event.notify is not None else ""
        return logging.WARNING, (
            f"IKE SA failed: peer={event.peer[0]}:{event.peer[1]} gateway={event.gateway} "
            f"role={event.role} mode={event.mode}{notify} reason={event.reason}"
        )
    if isinstance(event, NotifyReceived):
        kind = "protected" if event.protected else "unprotected"
        return logging.INFO, (
            f"notify received: peer={event.peer[0]}:{event.peer[1]} "
            f"type={notify_name(event.notify_type)} {kind}"
        )
    if isinstance(event, InternalError):
        return logging.ERROR, f"internal error ({event.where}), please report:\n{event.detail}"
    assert isinstance(event, PacketDropped)
    return (
        logging.INFO,
        f"packet dropped: peer={event.peer[0]}:{event.peer[1]} reason={event.reason}",
    )


@dataclass
class _Daemon:
    options: DaemonOptions
    protocols: list[EndpointProtocol] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    debug_keys_file: TextIO | None = None

    def on_event(self, event: IkeEvent) -> None:
        level, line = describe_event(event)
        log.log(level, "%s", line)
        if isinstance(event, IkeSaEstablished) and self.debug_keys_file is not None:
            self._write_debug_key(event)

    def open_debug_keys(self) -> None:
        """Open the --debug-keys file at start-up, so a bad path stops us before any SA."""
        path = self.options.debug_keys
        if path is None:
            return
        try:
            # Secrets on disk: owner-only, and never through a symlink someone planted.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            os.fchmod(fd, 0o600)
        except OSError as exc:
            raise StartupError(f"cannot open --debug-keys file {path}: {exc.strerror}") from exc
        self.debug_keys_file = os.fdopen(fd, "a", buffering=1)

    def _write_debug_key(self, event: IkeSaEstablished) -> None:
        assert self.debug_keys_file is not None
        for protocol in self.protocols:
            key = protocol.endpoint.decryption_key(
                event.sa.initiator_cookie, event.sa.responder_cookie
            )
            if key is not None:
                self.debug_keys_file.write(f"{event.sa.initiator_cookie.hex()},{key.hex()}\n")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop.set()

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        for protocol in self.protocols:
            protocol.endpoint.close(loop.time())
            protocol.pump()
        # Give the Delete notifications a moment to leave before the sockets close.
        await asyncio.sleep(0.05)
        for protocol in self.protocols:
            protocol.close()
        if self.debug_keys_file is not None:
            self.debug_keys_file.close()


def _group_by_local_address(
    gateways: Sequence[IkeGateway], default: IPv4Address | None
) -> dict[IPv4Address, list[IkeGateway]]:
    groups: dict[IPv4Address, list[IkeGateway]] = {}
    for gateway in gateways:
        local = gateway.local_address or default or _route_source(gateway.addresses[0])
        groups.setdefault(local, []).append(gateway)
    return groups


def _route_source(peer: IPv4Address) -> IPv4Address:
    """The address the kernel would send from to reach ``peer`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(peer), DEFAULT_PORT))
        except OSError as exc:
            raise StartupError(f"no route to {peer}: {exc.strerror}") from exc
        return IPv4Address(probe.getsockname()[0])


async def _open_all(
    daemon: _Daemon,
    groups: dict[IPv4Address, list[IkeGateway]],
    on_event: Callable[[IkeEvent], None],
) -> list[EndpointProtocol]:
    options = daemon.options
    daemon.open_debug_keys()
    for local, gateways in groups.items():
        endpoint = IkeEndpoint(
            str(local),
            [phase1_peer(gateway, options.phase1_doi) for gateway in gateways],
            peer_port=options.port,
            retransmit_interval=options.retransmit_interval,
            retransmit_limit=options.retransmit_limit,
        )
        try:
            protocol = await open_endpoint(endpoint, options.port, on_event)
        except OSError as exc:
            raise StartupError(f"cannot listen on {local}:{options.port}: {exc.strerror}") from exc
        daemon.protocols.append(protocol)
        names = ", ".join(g.name for g in gateways)
        log.info("listening on %s:%d for IKE gateways %s", local, options.port, names)
    return daemon.protocols


async def run_server(gateways: Sequence[IkeGateway], options: DaemonOptions) -> int:
    """Answer Phase 1 from the configured gateways until told to stop."""
    daemon = _Daemon(options)
    missing = [g.name for g in gateways if g.local_address is None]
    if missing:
        raise StartupError(
            "server IKE gateways need local-address (the key server's address): "
            + ", ".join(missing)
        )
    await _open_all(daemon, _group_by_local_address(gateways, None), daemon.on_event)
    daemon.install_signal_handlers()
    log.info("key server running")
    await daemon.stop.wait()
    await daemon.shutdown()
    return 0


async def run_member(gateways: Sequence[IkeGateway], options: DaemonOptions) -> int:
    """Bring up Phase 1 to every configured gateway, then stop.  Exit 0 if all came up."""
    daemon = _Daemon(options)
    outcome: dict[str, bool] = {}
    all_done = asyncio.Event()

    def on_event(event: IkeEvent) -> None:
        daemon.on_event(event)
        # Only our own negotiations decide the outcome: a refused stray first
        # message from the key server's address is not our SA failing.
        if isinstance(event, IkeSaEstablished) and event.sa.role == "initiator":
            outcome.setdefault(event.sa.gateway, True)
        elif isinstance(event, IkeSaFailed) and event.role == "initiator":
            outcome.setdefault(event.gateway, False)
        else:
            return
        if len(outcome) == len(gateways):
            all_done.set()

    groups = _group_by_local_address(gateways, None)
    protocols = await _open_all(daemon, groups, on_event)
    daemon.install_signal_handlers()
    loop = asyncio.get_running_loop()
    for protocol, group in zip(protocols, groups.values(), strict=True):
        for gateway in group:
            log.info(
                "initiating IKE Phase 1 to %s (gateway %s)", gateway.addresses[0], gateway.name
            )
            protocol.endpoint.initiate(gateway.name, loop.time())
        protocol.pump()
    stop_wait = asyncio.ensure_future(daemon.stop.wait())
    done_wait = asyncio.ensure_future(all_done.wait())
    await asyncio.wait({stop_wait, done_wait}, return_when=asyncio.FIRST_COMPLETED)
    stop_wait.cancel()
    done_wait.cancel()
    if all_done.is_set():
        log.info(
            "Phase 1 complete for %d gateway(s); GDOI registration is not implemented yet, "
            "stopping",
            len(gateways),
        )
    await daemon.shutdown()
    return 0 if outcome and all(outcome.values()) and len(outcome) == len(gateways) else 1
