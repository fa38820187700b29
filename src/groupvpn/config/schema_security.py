"""Schema of the member's security statements: ``[edit security zones]``,
``[edit security address-book]``, ``[edit security policies]``, ``[edit applications]``
and ``[edit interfaces]``."""

from __future__ import annotations

from groupvpn.config.statements import (
    DESCRIPTION,
    INTERFACE_NAME,
    LOGICAL_INTERFACE_NAME,
    LONG_NAME,
    OBJECT_NAME,
    Container,
    Flag,
    Leaf,
    LeafList,
    Named,
    Statement,
)
from groupvpn.config.values import (
    Integer,
    IpProtocol,
    Ipv4InterfaceAddress,
    Ipv4Prefix,
    Keyword,
    PortRange,
)

SYSTEM_SERVICES = Keyword.of(
    "all", "any-service", "bootp", "dhcp", "dns", "finger", "ftp", "http", "https", "ike",
    "netconf", "ntp", "ping", "rlogin", "rsh", "snmp", "snmp-trap", "ssh", "telnet", "tftp",
    "traceroute", "xnm-clear-text", "xnm-ssl",
)  # fmt: skip

_HOST_INBOUND = Container({"system-services": LeafList(SYSTEM_SERVICES)})

ZONE_INTERFACE = Container({"host-inbound-traffic": _HOST_INBOUND})

ADDRESS = Container(
    {"ip-prefix": Leaf(Ipv4Prefix()), "description": DESCRIPTION},
    mandatory=("ip-prefix",),
)

ADDRESS_SET = Container({"address": LeafList(LONG_NAME), "description": DESCRIPTION})

_BOOK_ENTRIES: dict[str, Statement] = {
    "address": Named(LONG_NAME, ADDRESS, positional="ip-prefix"),
    "address-set": Named(LONG_NAME, ADDRESS_SET),
}

ZONE = Container(
    {
        "interfaces": Named(LOGICAL_INTERFACE_NAME, ZONE_INTERFACE),
        "host-inbound-traffic": _HOST_INBOUND,
        "address-book": Container(_BOOK_ENTRIES),
        "description": DESCRIPTION,
    }
)

ADDRESS_BOOK = Container(
    {
        **_BOOK_ENTRIES,
        "attach": Container({"zone": LeafList(LONG_NAME)}),
        "description": DESCRIPTION,
    }
)

POLICY_MATCH = Container(
    {
        "source-address": LeafList(LONG_NAME),
        "destination-address": LeafList(LONG_NAME),
        "application": LeafList(LONG_NAME),
    },
    mandatory=("source-address", "destination-address", "application"),
)

POLICY_THEN = Container(
    {
        "permit": Container(
            {"tunnel": Container({"ipsec-group-vpn": Leaf(OBJECT_NAME)})},
        ),
        "deny": Flag(),
        "reject": Flag(),
    },
    exclusive=(frozenset({"permit", "deny", "reject"}),),
)

POLICY = Container(
    {"match": POLICY_MATCH, "then": POLICY_THEN, "description": DESCRIPTION},
    mandatory=("match", "then"),
)

POLICIES = Container(
    {
        "from-zone": Named(
            LONG_NAME,
            Container(
                {"to-zone": Named(LONG_NAME, Container({"policy": Named(LONG_NAME, POLICY)}))}
            ),
        )
    }
)

SECURITY: dict[str, Statement] = {
    "zones": Container({"security-zone": Named(LONG_NAME, ZONE)}),
    "address-book": Named(LONG_NAME, ADDRESS_BOOK),
    "policies": POLICIES,
}

APPLICATION = Container(
    {
        "protocol": Leaf(IpProtocol()),
        "source-port": Leaf(PortRange()),
        "destination-port": Leaf(PortRange()),
        "description": DESCRIPTION,
    },
    mandatory=("protocol",),
)

APPLICATION_SET = Container({"application": LeafList(LONG_NAME), "description": DESCRIPTION})

APPLICATIONS = Container(
    {
        "application": Named(LONG_NAME, APPLICATION),
        "application-set": Named(LONG_NAME, APPLICATION_SET),
    }
)

INTERFACE_UNIT = Container(
    {
        "family": Container({"inet": Container({"address": LeafList(Ipv4InterfaceAddress())})}),
        "description": DESCRIPTION,
    }
)

INTERFACE = Container(
    {
        "unit": Named(Integer(0, 16385), INTERFACE_UNIT),
        "mtu": Leaf(Integer(256, 9192)),
        "description": DESCRIPTION,
    }
)

# ``set interfaces ge-0/0/1 ...``: the name follows ``interfaces`` directly.
INTERFACES = Named(INTERFACE_NAME, INTERFACE)
