"""Traffic selectors: port ranges, applications, group policies and packets.

Two vocabularies meet here and must not be confused:

* A *group policy* is what the key server downloads with each SA TEK (RFC 3547
  §5.4.1 ID payloads): one source prefix, one destination prefix, one source
  port, one destination port and one IP protocol, where port 0 and protocol 0
  mean "any".
* An *application* is what a member's security policy matches on (Junos
  `match application`): an IP protocol (or any) and a range for each port.

A packet is a concrete 5-tuple.  Packets of protocols without ports (ICMP, GRE,
ESP, ...) carry port 0 on both sides; they therefore match only applications
whose port ranges include 0, which ``ANY_PORT`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

MAX_PORT = 65535
MAX_PROTOCOL = 255

#: Names for the protocol numbers operators meet most, used only in messages.
PROTOCOL_NAMES: dict[int, str] = {
    1: "icmp",
    2: "igmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    51: "ah",
    89: "ospf",
    132: "sctp",
}


def describe_protocol(protocol: int | None) -> str:
    """``None`` (application) and ``0`` (group policy) both read "any"."""
    if not protocol:
        return "any"
    name = PROTOCOL_NAMES.get(protocol)
    return f"{protocol} ({name})" if name else str(protocol)


def describe_network(network: IPv4Network) -> str:
    return "any" if network.prefixlen == 0 else str(network)


def describe_port(port: int) -> str:
    return "any" if port == 0 else str(port)


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive range of TCP/UDP/SCTP ports."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.high <= MAX_PORT:
            raise ValueError(f"port range {self.low}-{self.high} is not within 0-{MAX_PORT}")

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __str__(self) -> str:
        if self == ANY_PORT:
            return "any"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    def contains_range(self, other: PortRange) -> bool:
        return self.low <= other.low and other.high <= self.high

    def overlaps(self, other: PortRange) -> bool:
        return self.low <= other.high and other.low <= self.high


ANY_PORT = PortRange(0, MAX_PORT)


def group_port_range(port: int) -> PortRange:
    """The ports a group-policy port selects: 0 is every port, anything else itself."""
    return ANY_PORT if port == 0 else PortRange(port, port)


@dataclass(frozen=True, slots=True)
class Application:
    """A Junos application as a security policy matches it."""

    name: str
    protocol: int | None  # None = any protocol
    source_ports: PortRange = ANY_PORT
    destination_ports: PortRange = ANY_PORT

    def __post_init__(self) -> None:
        # Protocol 0 would be ambiguous: it is "any" in a group policy.
        if self.protocol is not None and not 1 <= self.protocol <= MAX_PROTOCOL:
            raise ValueError(
                f"application {self.name}: protocol {self.protocol} is not within "
                f"1-{MAX_PROTOCOL} (use None for any protocol)"
            )

    def allows_protocol(self, protocol: int) -> bool:
        return self.protocol is None or self.protocol == protocol


ANY_APPLICATION = Application("any", None)


@dataclass(frozen=True, slots=True)
class GroupPolicy:
    """One group policy as downloaded from the key server (port 0 / protocol 0 = any)."""

    name: str
    source: IPv4Network
    destination: IPv4Network
    source_port: int = 0
    destination_port: int = 0
    protocol: int = 0

    def __post_init__(self) -> None:
        for label, port in (
            ("source-port", self.source_port),
            ("destination-port", self.destination_port),
        ):
            if not 0 <= port <= MAX_PORT:
                raise ValueError(
                    f"group policy {self.name}: {label} {port} is not within 0-{MAX_PORT}"
                )
        if not 0 <= self.protocol <= MAX_PROTOCOL:
            raise ValueError(
                f"group policy {self.name}: protocol {self.protocol} is not within 0-{MAX_PROTOCOL}"
            )

    @property
    def source_ports(self) -> PortRange:
        return group_port_range(self.source_port)

    @property
    def destination_ports(self) -> PortRange:
        return group_port_range(self.destination_port)

    def matches(self, packet: Packet) -> bool:
        return (
            packet.source in self.source
            and packet.destination in self.destination
            and self.protocol in (0, packet.protocol)
            and self.source_port in (0, packet.source_port)
            and self.destination_port in (0, packet.destination_port)
        )

    def __str__(self) -> str:
        return (
            f"{self.name}: {describe_network(self.source)} port {describe_port(self.source_port)}"
            f" -> {describe_network(self.destination)} port"
            f" {describe_port(self.destination_port)} protocol {describe_protocol(self.protocol)}"
        )


@dataclass(frozen=True, slots=True)
class Packet:
    """A concrete packet's 5-tuple (ports 0 for protocols that have none)."""

    source: IPv4Address
    destination: IPv4Address
    protocol: int
    source_port: int = 0
    destination_port: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.protocol <= MAX_PROTOCOL:
            raise ValueError(f"packet protocol {self.protocol} is not within 0-{MAX_PROTOCOL}")
        if not (0 <= self.source_port <= MAX_PORT and 0 <= self.destination_port <= MAX_PORT):
            raise ValueError(
                f"packet ports {self.source_port}/{self.destination_port} "
                f"are not within 0-{MAX_PORT}"
            )
