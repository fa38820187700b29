"""Model of the member's security configuration: zones, address books, applications,
security (scope) policies, and interfaces.

Policies hold resolved values: address names become networks (``any`` becomes the empty
tuple), application names become :class:`Application` objects, sets are expanded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from typing import Literal

PolicyAction = Literal["permit", "deny", "reject"]
ANY_PORT = (0, 65535)
# Zones Junos defines itself.
PREDEFINED_ZONES = ("junos-host",)


@dataclass(frozen=True, slots=True)
class Application:
    """An IP protocol (None = any) and source/destination port ranges (inclusive)."""

    name: str
    protocol: int | None
    source_ports: tuple[int, int] = ANY_PORT
    destination_ports: tuple[int, int] = ANY_PORT


def _app(name: str, protocol: int | None, port: int | None = None) -> Application:
    destination = (port, port) if port is not None else ANY_PORT
    return Application(name, protocol, ANY_PORT, destination)


_TCP, _UDP, _ICMP = 6, 17, 1

# Junos's predefined applications that groupvpn knows (protocol and destination port;
# ICMP types of junos-ping are not modelled: it matches all ICMP).
PREDEFINED_APPLICATIONS: Mapping[str, Application] = {
    a.name: a
    for a in (
        _app("any", None),
        _app("junos-ftp", _TCP, 21),
        _app("junos-ssh", _TCP, 22),
        _app("junos-telnet", _TCP, 23),
        _app("junos-smtp", _TCP, 25),
        _app("junos-dns-tcp", _TCP, 53),
        _app("junos-dns-udp", _UDP, 53),
        _app("junos-tftp", _UDP, 69),
        _app("junos-http", _TCP, 80),
        _app("junos-pop3", _TCP, 110),
        _app("junos-ntp", _UDP, 123),
        _app("junos-imap", _TCP, 143),
        _app("junos-bgp", _TCP, 179),
        _app("junos-ldap", _TCP, 389),
        _app("junos-https", _TCP, 443),
        _app("junos-ike", _UDP, 500),
        _app("junos-syslog", _UDP, 514),
        _app("junos-snmp-agentx", _TCP, 705),
        _app("junos-ping", _ICMP),
        _app("junos-icmp-all", _ICMP),
    )
}


@dataclass(frozen=True, slots=True)
class ZoneInterface:
    """``security-zone Z interfaces IFNAME``, with its host-inbound system services."""

    name: str
    system_services: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AddressBook:
    """An address book; ``address_sets`` are expanded to their networks."""

    name: str
    addresses: dict[str, IPv4Network]
    address_sets: dict[str, tuple[IPv4Network, ...]] = field(default_factory=dict)
    zones: tuple[str, ...] = ()
    """Zones it is attached to (``global`` serves every zone)."""


@dataclass(frozen=True, slots=True)
class Zone:
    name: str
    interfaces: tuple[ZoneInterface, ...] = ()
    address_book: AddressBook | None = None
    """The zone's own (legacy) address book, if it has one."""


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """``security policies from-zone F to-zone T policy NAME``; empty tuples mean any."""

    name: str
    from_zone: str
    to_zone: str
    source_addresses: tuple[IPv4Network, ...]
    destination_addresses: tuple[IPv4Network, ...]
    applications: tuple[Application, ...]
    action: PolicyAction
    group_vpn: str | None = None
    """``then permit tunnel ipsec-group-vpn VPN``: a scope policy for that VPN."""


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    zones: dict[str, Zone] = field(default_factory=dict)
    policies: tuple[SecurityPolicy, ...] = ()
    """Per (from-zone, to-zone) context in file order, contexts in order of appearance."""
    address_books: dict[str, AddressBook] = field(default_factory=dict)

    def context(self, from_zone: str, to_zone: str) -> tuple[SecurityPolicy, ...]:
        """The ordered policies of one context."""
        return tuple(p for p in self.policies if p.from_zone == from_zone and p.to_zone == to_zone)


@dataclass(frozen=True, slots=True)
class InterfaceUnit:
    number: int
    addresses: tuple[IPv4Interface, ...] = ()


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    units: dict[int, InterfaceUnit] = field(default_factory=dict)
    mtu: int | None = None
