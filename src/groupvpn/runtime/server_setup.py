"""The key server's configuration as the daemon runs it, read at start and on reload.

One function for both, so a reload accepts exactly what a start accepts, with
the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from groupvpn.config import ConfigError, load_config, load_config_file
from groupvpn.config.model import Config, IkeGateway
from groupvpn.runtime.base import StartupError, group_by_local_address
from groupvpn.runtime.binding import group_definitions
from groupvpn.server.groups import GroupDefinition


class SetupError(Exception):
    """The configuration cannot be run; the message is for the operator as it is."""


@dataclass(frozen=True, slots=True)
class ServerSetup:
    gateways: tuple[IkeGateway, ...]
    groups: tuple[GroupDefinition, ...]
    #: The server's addresses, each with the IKE gateways that reach it there.
    by_local_address: dict[IPv4Address, list[IkeGateway]]
    #: `co-location`: a group member runs on this host too (it must hear our
    #: multicast rekeys through the loopback).
    co_location: bool = False

    @property
    def has_kek(self) -> bool:
        return any(group.kek is not None for group in self.groups)


def load_server_setup(path: str | Path) -> ServerSetup:
    try:
        config = load_config_file(str(path))
    except ConfigError as exc:
        raise SetupError(str(exc)) from exc
    return _setup(config)


def server_setup_from_text(text: str, source: str) -> ServerSetup:
    """:func:`load_server_setup` on text already read (``source`` names it in errors)."""
    try:
        config = load_config(text, source)
    except ConfigError as exc:
        raise SetupError(str(exc)) from exc
    return _setup(config)


def _setup(config: Config) -> ServerSetup:
    if config.server is None or not config.server.ike.gateways:
        raise SetupError(
            "error: no IKE gateway configured under [edit security group-vpn server ike]"
        )
    gateways = tuple(config.server.ike.gateways.values())
    missing = [gateway.name for gateway in gateways if gateway.local_address is None]
    if missing:
        raise SetupError(
            "error: server IKE gateways need local-address (the key server's address): "
            + ", ".join(missing)
        )
    try:
        by_local_address = group_by_local_address(gateways)
    except StartupError as exc:
        raise SetupError(f"error: {exc}") from exc
    return ServerSetup(
        gateways, tuple(group_definitions(config)), by_local_address, config.co_location
    )
