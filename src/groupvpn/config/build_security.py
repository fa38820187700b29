"""Build zones, address books, security policies and interfaces from a checked tree."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from typing import cast

from groupvpn.config import model_security as ms
from groupvpn.config.resolve import (
    address_books,
    address_in_book,
    attached_zones,
    child,
    resolve_address,
    resolve_application,
    zones,
)
from groupvpn.config.tree import Node


def _book(name: str, node: Node, zones_attached: tuple[str, ...]) -> ms.AddressBook:
    addresses: dict[str, IPv4Network] = {}
    for address_name, address in node.objects("address").items():
        prefix = address.value("ip-prefix")
        assert isinstance(prefix, IPv4Network)
        addresses[address_name] = prefix
    sets = {
        set_name: address_in_book(node, set_name) or () for set_name in node.objects("address-set")
    }
    return ms.AddressBook(name, addresses, sets, zones_attached)


def _zone(name: str, node: Node) -> ms.Zone:
    interfaces = tuple(
        ms.ZoneInterface(
            if_name,
            tuple(str(s) for s in interface.values("system-services"))
            if (interface := child(iface, "host-inbound-traffic")) is not None
            else (),
        )
        for if_name, iface in node.objects("interfaces").items()
    )
    legacy = node.container("address-book")
    book = _book(name, legacy, (name,)) if legacy is not None else None
    return ms.Zone(name, interfaces, book)


def _addresses(root: Node, match: Node, keyword: str, zone: str) -> tuple[IPv4Network, ...]:
    found: list[IPv4Network] = []
    for name in match.values(keyword):
        networks = resolve_address(root, zone, str(name))
        assert networks is not None, f"{zone} {name}"
        if not networks:  # any
            return ()
        found.extend(n for n in networks if n not in found)
    return tuple(found)


def _applications(root: Node, match: Node) -> tuple[ms.Application, ...]:
    found: list[ms.Application] = []
    for name in match.values("application"):
        if name == "any":
            return ()
        applications = resolve_application(root, str(name))
        assert applications is not None, name
        found.extend(a for a in applications if a not in found)
    return tuple(found)


def _policy(root: Node, node: Node, from_zone: str, to_zone: str) -> ms.SecurityPolicy:
    assert node.name is not None
    match = node.container("match")
    then = node.container("then")
    assert match is not None and then is not None
    action = next(k for k in ("permit", "deny", "reject") if then.has(k))
    tunnel = child(then, "permit", "tunnel")
    group_vpn = tunnel.value("ipsec-group-vpn") if tunnel is not None else None
    return ms.SecurityPolicy(
        name=node.name,
        from_zone=from_zone,
        to_zone=to_zone,
        source_addresses=_addresses(root, match, "source-address", from_zone),
        destination_addresses=_addresses(root, match, "destination-address", to_zone),
        applications=_applications(root, match),
        action=cast(ms.PolicyAction, action),
        group_vpn=str(group_vpn) if group_vpn is not None else None,
    )


def security(root: Node) -> ms.SecurityConfig:
    policies: list[ms.SecurityPolicy] = []
    policies_node = child(root, "security", "policies")
    contexts = policies_node.objects("from-zone") if policies_node is not None else {}
    for from_zone, from_node in contexts.items():
        for to_zone, to_node in from_node.objects("to-zone").items():
            for policy in to_node.objects("policy").values():
                policies.append(_policy(root, policy, from_zone, to_zone))
    books = {
        name: _book(name, node, tuple(attached_zones(node)))
        for name, node in address_books(root).items()
    }
    return ms.SecurityConfig(
        zones={name: _zone(name, node) for name, node in zones(root).items()},
        policies=tuple(policies),
        address_books=books,
    )


def interfaces(root: Node) -> dict[str, ms.Interface]:
    found: dict[str, ms.Interface] = {}
    for name, node in root.objects("interfaces").items():
        units: dict[int, ms.InterfaceUnit] = {}
        for number, unit in node.objects("unit").items():
            inet = child(unit, "family", "inet")
            addresses = inet.values("address") if inet is not None else []
            units[int(number)] = ms.InterfaceUnit(
                int(number), tuple(a for a in addresses if isinstance(a, IPv4Interface))
            )
        mtu = node.value("mtu")
        found[name] = ms.Interface(name, units, mtu if isinstance(mtu, int) else None)
    return found
