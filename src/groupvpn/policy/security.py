"""Security policies and how they relate to packets and to group policies.

A security policy matches a packet when its source is in one of the policy's
source addresses, its destination in one of its destination addresses and it
fits one of its applications; an empty tuple means ``any`` for that field.

A policy *covers* a group policy when every packet the group policy describes
matches the policy.  Address entries and applications are unions, so coverage
is computed against the union, not entry by entry: 10.0.0.0/25 and
10.0.0.128/25 together cover a group policy for 10.0.0.0/24, and applications
for TCP ports 0-1023 and 1024-65535 together cover "TCP, any port".  A group
policy's wildcard (port 0, protocol 0) is therefore covered only by a policy
that allows every port or every protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, collapse_addresses
from typing import Literal

from groupvpn.policy.selectors import (
    MAX_PROTOCOL,
    Application,
    GroupPolicy,
    Packet,
    PortRange,
    describe_network,
    describe_protocol,
)

Action = Literal["permit", "deny", "reject"]
#: A (from-zone, to-zone) pair: the unit in which Junos orders its policies.
Context = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """One `security policies from-zone F to-zone T policy NAME` entry."""

    name: str
    from_zone: str
    to_zone: str
    sources: tuple[IPv4Network, ...] = ()  # () = any
    destinations: tuple[IPv4Network, ...] = ()  # () = any
    applications: tuple[Application, ...] = ()  # () = any
    action: Action = "permit"
    #: `then permit tunnel ipsec-group-vpn VPN`: this makes the policy a scope policy.
    group_vpn: str | None = None

    def __post_init__(self) -> None:
        if self.group_vpn is not None and self.action != "permit":
            # The spec allows only the tunnel action on a scope policy.
            raise ValueError(
                f"policy {self.name}: ipsec-group-vpn {self.group_vpn} needs the permit action, "
                f"not {self.action}"
            )

    @property
    def context(self) -> Context:
        return (self.from_zone, self.to_zone)

    @property
    def is_scope_policy(self) -> bool:
        return self.group_vpn is not None

    def is_scope_policy_for(self, vpn: str) -> bool:
        return self.group_vpn == vpn

    def matches(self, packet: Packet) -> bool:
        return (
            _address_matches(self.sources, packet.source)
            and _address_matches(self.destinations, packet.destination)
            and (
                not self.applications
                or any(_application_matches(app, packet) for app in self.applications)
            )
        )


def _address_matches(entries: tuple[IPv4Network, ...], address: object) -> bool:
    return not entries or any(address in entry for entry in entries)


def _application_matches(app: Application, packet: Packet) -> bool:
    return (
        app.allows_protocol(packet.protocol)
        and packet.source_port in app.source_ports
        and packet.destination_port in app.destination_ports
    )


def covers(policy: SecurityPolicy, group_policy: GroupPolicy) -> bool:
    """Would every packet of ``group_policy`` match ``policy``?"""
    return coverage_gap(policy, group_policy) is None


def coverage_gap(policy: SecurityPolicy, group_policy: GroupPolicy) -> str | None:
    """``None`` if ``policy`` covers ``group_policy``, else the first field that does not fit.

    The text names the field and both sides, e.g.
    ``"destination 239.1.1.1/32 not within 10.0.0.0/8"``.
    """
    return (
        _address_gap("source", group_policy.source, policy.sources)
        or _address_gap("destination", group_policy.destination, policy.destinations)
        or _application_gap(group_policy, policy.applications)
    )


def overlaps(policy: SecurityPolicy, group_policy: GroupPolicy) -> bool:
    """Would at least one packet of ``group_policy`` match ``policy``?"""
    return (
        _addresses_overlap(group_policy.source, policy.sources)
        and _addresses_overlap(group_policy.destination, policy.destinations)
        and (
            not policy.applications
            or any(_application_overlaps(app, group_policy) for app in policy.applications)
        )
    )


def _addresses_overlap(wanted: IPv4Network, entries: tuple[IPv4Network, ...]) -> bool:
    return not entries or any(wanted.overlaps(entry) for entry in entries)


def _application_overlaps(app: Application, group_policy: GroupPolicy) -> bool:
    return (
        (group_policy.protocol == 0 or app.allows_protocol(group_policy.protocol))
        and app.source_ports.overlaps(group_policy.source_ports)
        and app.destination_ports.overlaps(group_policy.destination_ports)
    )


def _address_gap(field: str, wanted: IPv4Network, entries: tuple[IPv4Network, ...]) -> str | None:
    if not entries:
        return None
    # Collapsing merges adjacent entries, so a prefix covered by several entries
    # together lies inside a single collapsed block.
    if any(wanted.subnet_of(block) for block in collapse_addresses(entries)):
        return None
    listed = ", ".join(str(entry) for entry in entries)
    return f"{field} {describe_network(wanted)} not within {listed}"


def _application_gap(group_policy: GroupPolicy, apps: tuple[Application, ...]) -> str | None:
    if not apps:
        return None
    for protocol in _representative_protocols(group_policy.protocol, apps):
        usable = [app for app in apps if app.allows_protocol(protocol)]
        if not usable:
            field = f"protocol {describe_protocol(group_policy.protocol)}"
            return f"{field} not allowed by applications {_names(apps)}"
        gap = _port_gap(group_policy, usable)
        if gap is not None:
            return f"{gap} not allowed by applications {_names(apps)}"
    return None


def _representative_protocols(wanted: int, apps: Iterable[Application]) -> list[int]:
    """Protocols to check so that checking them all is the same as checking every one.

    A specific protocol stands for itself.  "Any" must hold for each protocol an
    application names and for every unnamed one; the unnamed ones all see the
    same applications (those for any protocol), so one of them stands for all.
    """
    if wanted != 0:
        return [wanted]
    named = sorted({app.protocol for app in apps if app.protocol is not None})
    unnamed = next((p for p in range(MAX_PROTOCOL + 1) if p not in named), None)
    # The unnamed one first, so that a missing protocol is reported as such.
    return named if unnamed is None else [unnamed, *named]


def _port_gap(group_policy: GroupPolicy, usable: Sequence[Application]) -> str | None:
    wanted_source = group_policy.source_ports
    wanted_destination = group_policy.destination_ports
    boxes = [(app.source_ports, app.destination_ports) for app in usable]
    if _rectangles_cover(wanted_source, wanted_destination, boxes):
        return None
    if not _ranges_cover(wanted_source, [source for source, _ in boxes]):
        return f"source-port {wanted_source}"
    if not _ranges_cover(wanted_destination, [destination for _, destination in boxes]):
        return f"destination-port {wanted_destination}"
    return f"source-port {wanted_source} with destination-port {wanted_destination}"


def _ranges_cover(wanted: PortRange, ranges: Sequence[PortRange]) -> bool:
    return _rectangles_cover(wanted, PortRange(0, 0), [(r, PortRange(0, 0)) for r in ranges])


def _rectangles_cover(
    wanted_x: PortRange, wanted_y: PortRange, boxes: Sequence[tuple[PortRange, PortRange]]
) -> bool:
    """Is the rectangle wanted_x × wanted_y inside the union of ``boxes``?

    The box edges cut the wanted rectangle into cells that each lie wholly
    inside or wholly outside every box, so testing one corner per cell decides.
    """
    xs = _cuts(wanted_x, [x for x, _ in boxes])
    ys = _cuts(wanted_y, [y for _, y in boxes])
    return all(any(x in bx and y in by for bx, by in boxes) for x in xs for y in ys)


def _cuts(wanted: PortRange, ranges: Iterable[PortRange]) -> list[int]:
    """The first port of each cell into which ``ranges`` cut ``wanted``."""
    starts = {wanted.low}
    for r in ranges:
        for edge in (r.low, r.high + 1):
            if wanted.low < edge <= wanted.high:
                starts.add(edge)
    return sorted(starts)


def _names(apps: Iterable[Application]) -> str:
    return ", ".join(app.name for app in apps)
