"""Name resolution on the parsed tree, shared by the commit checks and the model builders.

Addresses: a policy's ``source-address`` is looked up in the address books of its
from-zone, its ``destination-address`` in those of its to-zone.  A zone's books are, in
order, its own (legacy) ``address-book``, the books attached to it with ``attach zone``,
and the ``global`` book.  An address set's members come from the set's own book.

Applications: a user-defined ``application``, else a Junos predefined one (``any``,
``junos-http`` ...), else an ``application-set`` expanded to its applications.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from groupvpn.config.model_security import (
    ANY_PORT,
    PREDEFINED_APPLICATIONS,
    PREDEFINED_ZONES,
    Application,
)
from groupvpn.config.tree import Node

ANY_ADDRESS = frozenset({"any", "any-ipv4"})
GLOBAL_BOOK = "global"


def child(node: Node | None, *keywords: str) -> Node | None:
    for keyword in keywords:
        if node is None:
            return None
        node = node.container(keyword)
    return node


def zones(root: Node) -> dict[str, Node]:
    zones_node = child(root, "security", "zones")
    return zones_node.objects("security-zone") if zones_node is not None else {}


def zone_defined(root: Node, name: str) -> bool:
    return name in zones(root) or name in PREDEFINED_ZONES


def address_books(root: Node) -> dict[str, Node]:
    security = root.container("security")
    return security.objects("address-book") if security is not None else {}


def books_for_zone(root: Node, zone: str) -> list[Node]:
    """The address books a policy of ``zone`` sees, in lookup order."""
    found: list[Node] = []
    zone_node = zones(root).get(zone)
    legacy = zone_node.container("address-book") if zone_node is not None else None
    if legacy is not None:
        found.append(legacy)
    books = address_books(root)
    for name, book in books.items():
        if name != GLOBAL_BOOK and zone in attached_zones(book):
            found.append(book)
    if GLOBAL_BOOK in books:
        found.append(books[GLOBAL_BOOK])
    return found


def attached_zones(book: Node) -> list[str]:
    attach = book.container("attach")
    return [str(z) for z in attach.values("zone")] if attach is not None else []


def address_in_book(book: Node, name: str) -> tuple[IPv4Network, ...] | None:
    """An address or address set of ``book`` as networks; None if it has no such name."""
    address = book.objects("address").get(name)
    if address is not None:
        prefix = address.value("ip-prefix")
        return (prefix,) if isinstance(prefix, IPv4Network) else ()
    address_set = book.objects("address-set").get(name)
    if address_set is None:
        return None
    networks: list[IPv4Network] = []
    for member in address_set.values("address"):
        for network in address_in_book(book, str(member)) or ():
            if network not in networks:
                networks.append(network)
    return tuple(networks)


def resolve_address(root: Node, zone: str, name: str) -> tuple[IPv4Network, ...] | None:
    """``name`` as seen from ``zone``; ``()`` for ``any``; None if it is not defined."""
    if name in ANY_ADDRESS:
        return ()
    for book in books_for_zone(root, zone):
        found = address_in_book(book, name)
        if found is not None:
            return found
    return None


def _applications(root: Node, keyword: str) -> dict[str, Node]:
    applications = root.container("applications")
    return applications.objects(keyword) if applications is not None else {}


def application_of(node: Node) -> Application:
    assert node.name is not None
    protocol = node.value("protocol")
    source = node.value("source-port")
    destination = node.value("destination-port")
    return Application(
        node.name,
        protocol if isinstance(protocol, int) else None,
        _ports(source),
        _ports(destination),
    )


def _ports(value: object) -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 2:
        low, high = value
        if isinstance(low, int) and isinstance(high, int):
            return (low, high)
    return ANY_PORT


def single_application(root: Node, name: str) -> Application | None:
    node = _applications(root, "application").get(name)
    if node is not None:
        return application_of(node)
    return PREDEFINED_APPLICATIONS.get(name)


def resolve_application(root: Node, name: str) -> tuple[Application, ...] | None:
    """``name`` as a tuple of applications; None if it is not defined."""
    single = single_application(root, name)
    if single is not None:
        return (single,)
    application_set = _applications(root, "application-set").get(name)
    if application_set is None:
        return None
    found: list[Application] = []
    for member in application_set.values("application"):
        application = single_application(root, str(member))
        if application is not None and application not in found:
            found.append(application)
    return tuple(found)


def application_sets(root: Node) -> dict[str, Node]:
    return _applications(root, "application-set")
