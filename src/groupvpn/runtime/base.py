"""What the server and member daemons share: options, sockets, signals, logging, shutdown."""

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
from groupvpn.ike.events import IkeSaEstablished
from groupvpn.runtime.binding import phase1_peer
from groupvpn.runtime.control import Command, ControlError, ControlServer
from groupvpn.runtime.logfmt import describe_event, tagged
from groupvpn.runtime.metrics import MetricsServer
from groupvpn.runtime.udp import EndpointProtocol, SansIoCore, open_endpoint
from groupvpn.wire.constants import Doi
from groupvpn.wire.dialect import V1, Dialect

log = logging.getLogger("groupvpn")

DEFAULT_PORT = 848


class StartupError(Exception):
    """A reason the daemon cannot start, worded for the operator."""


@dataclass
class DaemonOptions:
    port: int = DEFAULT_PORT
    phase1_doi: int = Doi.GDOI
    dialect: Dialect = V1
    #: Write "icookie,encryption-key" lines here for tshark's IKEv1 decryption table.
    debug_keys: Path | None = None
    retransmit_interval: float = 2.0
    retransmit_limit: int = 4
    control: Path | None = None
    #: ``--metrics``: (address, port) of the Prometheus endpoint; None: off.
    metrics: tuple[str, int] | None = None


@dataclass
class Daemon:
    options: DaemonOptions
    protocols: list[EndpointProtocol] = field(default_factory=list)
    endpoints: list[IkeEndpoint] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    debug_keys_file: TextIO | None = None
    control: ControlServer | None = None
    metrics: MetricsServer | None = None
    #: Extra reactions to events (the member's outcome tracking, ...).
    listeners: list[Callable[[object], None]] = field(default_factory=list)
    #: Log lines for events runtime/logfmt.py does not know (the key server's rekey
    #: events describe themselves); each returns None for events not its own.
    describers: list[Callable[[object], tuple[int, str] | None]] = field(default_factory=list)

    def on_event(self, event: object) -> None:
        described = (describe(event) for describe in self.describers)
        level, line = next((d for d in described if d is not None), None) or describe_event(event)
        log.log(level, "%s", tagged(event, line))
        if isinstance(event, IkeSaEstablished) and self.debug_keys_file is not None:
            self._write_debug_key(event)
        for listener in self.listeners:
            listener(event)

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
        for endpoint in self.endpoints:
            key = endpoint.decryption_key(event.sa.initiator_cookie, event.sa.responder_cookie)
            if key is not None:
                self.debug_keys_file.write(f"{event.sa.initiator_cookie.hex()},{key.hex()}\n")

    def new_endpoint(self, local: IPv4Address, gateways: Sequence[IkeGateway]) -> IkeEndpoint:
        options = self.options
        endpoint = IkeEndpoint(
            str(local),
            [phase1_peer(gateway, options.phase1_doi) for gateway in gateways],
            peer_port=options.port,
            retransmit_interval=options.retransmit_interval,
            retransmit_limit=options.retransmit_limit,
        )
        self.endpoints.append(endpoint)
        return endpoint

    async def listen(self, core: SansIoCore, local: IPv4Address, names: str) -> EndpointProtocol:
        try:
            protocol = await open_endpoint(core, str(local), self.options.port, self.on_event)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {local}:{self.options.port}: {exc.strerror}"
            ) from exc
        self.protocols.append(protocol)
        log.info("listening on %s:%d for IKE gateways %s", local, self.options.port, names)
        return protocol

    async def start_control(self, default: Path, commands: dict[str, Command]) -> None:
        path = self.options.control or default
        self.control = ControlServer(path, commands)
        try:
            await self.control.start()
        except ControlError as exc:
            raise StartupError(str(exc)) from exc
        log.info("control socket %s", path)

    async def start_metrics(self, render: Callable[[], bytes]) -> None:
        """Serve ``render()`` at /metrics if ``--metrics`` asked for it."""
        if self.options.metrics is None:
            return
        host, port = self.options.metrics
        self.metrics = MetricsServer(host, port, render)
        try:
            await self.metrics.start()
        except OSError as exc:
            raise StartupError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        log.info("metrics at http://%s:%d/metrics", host if ":" not in host else f"[{host}]",
                 self.metrics.port)  # fmt: skip

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop.set()

    def pump_all(self) -> None:
        for protocol in self.protocols:
            protocol.pump()

    async def shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        for endpoint in self.endpoints:
            endpoint.close(loop.time())
        self.pump_all()
        # Give the Delete notifications a moment to leave before the sockets close.
        await asyncio.sleep(0.05)
        for protocol in self.protocols:
            protocol.close()
        if self.control is not None:
            await self.control.close()
        if self.metrics is not None:
            await self.metrics.close()
        if self.debug_keys_file is not None:
            self.debug_keys_file.close()


def group_by_local_address(gateways: Sequence[IkeGateway]) -> dict[IPv4Address, list[IkeGateway]]:
    groups: dict[IPv4Address, list[IkeGateway]] = {}
    for gateway in gateways:
        local = gateway.local_address or route_source(gateway.addresses[0])
        groups.setdefault(local, []).append(gateway)
    return groups


def route_source(peer: IPv4Address) -> IPv4Address:
    """The address the kernel would send from to reach ``peer`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(peer), DEFAULT_PORT))
        except OSError as exc:
            raise StartupError(f"no route to {peer}: {exc.strerror}") from exc
        return IPv4Address(probe.getsockname()[0])
