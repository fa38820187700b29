"""What a lab is made of: a frozen description of its nodes, links, addresses and routes.

A :class:`LabTopology` is a key server behind a core router, and N *sites*: a group
member with a WAN link to the core and a LAN it protects, with one host on it::

    host1 ---- member1 ----+                +---- member2 ---- host2
                           |                |
                           +---- core ------+---- ... memberN ---- hostN
                                  |
                                server

Everything else follows from that: the node names, the veth links (member ``wan0`` to
core ``to-<member>``, server ``wan0`` to core ``to-server``, host ``eth0`` to member
``lan0``), the routes (the core routes each protected prefix to its member and the
server's address to the server; everyone else has a default route towards the core),
and the group policies the key server hands out (:meth:`LabTopology.group_policies`).
:data:`SPEC_LAB` is the spec's example, the one ``groupvpn lab`` builds; the system
tests build others with addresses of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Interface
from itertools import permutations

#: Linux interface names are at most 15 characters.
IFNAMSIZ = 15


@dataclass(frozen=True)
class Link:
    """A veth pair: ``a`` and ``b`` are (node, interface, address/prefix)."""

    a: tuple[str, str, str]
    b: tuple[str, str, str]


@dataclass(frozen=True)
class Site:
    """A group member and the LAN behind it, with one host on that LAN.

    ``wan`` is the member's ``wan0`` address and ``core`` the core's end of that link
    (both address/prefix); ``lan`` the member's ``lan0`` address/prefix, whose network
    is the prefix the member protects; ``host_address`` the host's address on it.
    ``member_options`` are extra ``groupvpn member`` options for this member's daemon.
    """

    member: str
    host: str
    wan: str
    core: str
    lan: str
    host_address: str
    member_options: tuple[str, ...] = ()

    @property
    def protected(self) -> str:
        """The member's protected prefix (its LAN), e.g. ``10.1.0.0/16``."""
        return str(IPv4Interface(self.lan).network)

    @property
    def member_address(self) -> str:
        """The member's WAN address: its IKE address, and where its ESP comes from."""
        return str(IPv4Interface(self.wan).ip)

    @property
    def core_interface(self) -> str:
        """The core's interface towards this member."""
        return f"to-{self.member}"


@dataclass(frozen=True)
class LabTopology:
    """A lab: the key server's address and link to the core, and the sites.

    ``multicast_group`` is the group the first site's host sends to (one group
    policy, installed on every member); ``scope`` the prefix the members' scope
    policies admit (their address book's ``net10``).  ``anti_replay_time_window``
    and ``activation_time_delay`` (seconds) go into the key server's group when set;
    unset, the Junos defaults apply.  ``encryption_algorithm`` and
    ``authentication_algorithm`` make the group's IPsec proposal (AES-GCM takes no
    authentication algorithm, and needs ``dialect`` "v2"); ``dialect`` is every
    daemon's ``--dialect``.
    """

    sites: tuple[Site, ...]
    server_address: str = "20.0.0.1"
    server_wan: str = "192.0.2.1/24"
    server_core: str = "192.0.2.254/24"
    multicast_group: str = "239.1.1.1"
    scope: str = "10.0.0.0/8"
    anti_replay_time_window: int | None = None
    activation_time_delay: int | None = None
    encryption_algorithm: str = "3des-cbc"
    authentication_algorithm: str | None = "hmac-sha1-96"
    dialect: str = "v1"

    def __post_init__(self) -> None:
        names = ["server", "core", *self.members, *self.hosts]
        if len(set(names)) != len(names) or not self.sites:
            raise ValueError(f"a lab needs sites with node names of their own: {names}")
        too_long = [s.core_interface for s in self.sites if len(s.core_interface) > IFNAMSIZ]
        if too_long:
            raise ValueError(f"interface names longer than {IFNAMSIZ} characters: {too_long}")

    # -- the nodes ---------------------------------------------------------------------------

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(site.member for site in self.sites)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(site.host for site in self.sites)

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node, in the order they are built."""
        return ("server", "core", *self.members, *self.hosts)

    @property
    def routers(self) -> tuple[str, ...]:
        """The nodes that forward IPv4: the core and the members."""
        return ("core", *self.members)

    def site(self, node: str) -> Site:
        """The site of a member or host node."""
        for site in self.sites:
            if node in (site.member, site.host):
                return site
        raise KeyError(node)

    def host_address(self, host: str) -> str:
        return self.site(host).host_address

    def member_address(self, member: str) -> str:
        return self.site(member).member_address

    @property
    def host_addresses(self) -> dict[str, str]:
        """Host node -> its address."""
        return {site.host: site.host_address for site in self.sites}

    @property
    def multicast_sender(self) -> Site:
        """The site whose host sends to the multicast group (the first)."""
        return self.sites[0]

    # -- links, addresses, routes ------------------------------------------------------------

    @cached_property
    def links(self) -> tuple[Link, ...]:
        """The members' WAN links, the server's, then the hosts' LAN links."""
        wans = [Link((s.member, "wan0", s.wan), ("core", s.core_interface, s.core))
                for s in self.sites]  # fmt: skip
        server = Link(("server", "wan0", self.server_wan), ("core", "to-server", self.server_core))
        lans = [
            Link((s.host, "eth0", f"{s.host_address}/{IPv4Interface(s.lan).network.prefixlen}"),
                 (s.member, "lan0", s.lan))
            for s in self.sites
        ]  # fmt: skip
        return (*wans, server, *lans)

    @property
    def loopback_addresses(self) -> dict[str, str]:
        """Extra addresses on ``lo``: the key server's own address."""
        return {"server": f"{self.server_address}/32"}

    @cached_property
    def routes(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Routes per node: (destination, gateway)."""
        routes: dict[str, tuple[tuple[str, str], ...]] = {
            "server": (("default", _ip(self.server_core)),),
            "core": (
                (f"{self.server_address}/32", _ip(self.server_wan)),
                *((s.protected, s.member_address) for s in self.sites),
            ),
        }
        routes.update({s.member: (("default", _ip(s.core)),) for s in self.sites})
        routes.update({s.host: (("default", _ip(s.lan)),) for s in self.sites})
        return routes

    def interface(self, node: str, name: str) -> IPv4Interface:
        """The address (with prefix) of ``node``'s interface ``name``."""
        for link in self.links:
            for end in (link.a, link.b):
                if end[0] == node and end[1] == name:
                    return IPv4Interface(end[2])
        raise KeyError((node, name))

    def interfaces(self, node: str) -> list[tuple[str, str]]:
        """``node``'s veth interfaces as (name, address/prefix), in link order."""
        return [(end[1], end[2]) for link in self.links for end in (link.a, link.b)
                if end[0] == node]  # fmt: skip

    # -- the group -----------------------------------------------------------------------------

    def group_policies(self) -> dict[str, tuple[str, str]]:
        """The group's policies, name -> (source, destination): one for each ordered
        pair of sites (member to member unicast), then the multicast group's."""
        pairs = [(a.protected, b.protected) for a, b in permutations(self.sites, 2)]
        sender = f"{self.multicast_sender.host_address}/32"
        flows = [*pairs, (sender, f"{self.multicast_group}/32")]
        return {f"p{n}": flow for n, flow in enumerate(flows, start=1)}


def _ip(interface: str) -> str:
    """``192.0.2.1`` of ``192.0.2.1/24``."""
    return str(IPv4Interface(interface).ip)


#: The spec's example, as ``groupvpn lab`` builds it (docs/lab.md).
SPEC_LAB = LabTopology(
    sites=(
        Site("member1", "host1", wan="198.51.100.1/24", core="198.51.100.254/24",
             lan="10.1.0.1/16", host_address="10.1.1.1"),
        Site("member2", "host2", wan="203.0.113.1/24", core="203.0.113.254/24",
             lan="10.2.0.1/16", host_address="10.2.1.1"),
    ),
)  # fmt: skip
