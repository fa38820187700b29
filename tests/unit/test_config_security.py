"""Zones, address books, applications, security (scope) policies and interfaces."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from groupvpn.config import (
    PREDEFINED_APPLICATIONS,
    Application,
    Config,
    Diagnostic,
    SecurityPolicy,
    ZoneInterface,
    check_config,
    load_config,
    load_config_file,
)

SPEC = Path(__file__).resolve().parent.parent / "configs" / "spec"
POL = "set security policies from-zone trust to-zone untrust policy"
BACK = "set security policies from-zone untrust to-zone trust policy"
ZONES = "set security zones security-zone"
BOOK = "set security address-book"
APP = "set applications application"
NET10 = IPv4Network("10.0.0.0/8")
NET10_1 = IPv4Network("10.1.0.0/16")


def base(*extra: str) -> list[str]:
    """Lines 1-3: zones trust and untrust and a global address net10; then ``extra``."""
    return [
        f"{ZONES} trust interfaces ge-0/0/0.0",
        f"{ZONES} untrust interfaces ge-0/0/1.0",
        f"{BOOK} global address net10 10.0.0.0/8",
        *extra,
    ]


def policy(prefix: str, name: str, src: str, dst: str, app: str, then: str) -> list[str]:
    return [
        f"{prefix} {name} match source-address {src}",
        f"{prefix} {name} match destination-address {dst}",
        f"{prefix} {name} match application {app}",
        f"{prefix} {name} then {then}",
    ]


def load(lines: list[str]) -> Config:
    return load_config("\n".join(lines) + "\n", "sec.conf")


def diags(lines: list[str]) -> list[Diagnostic]:
    return check_config("\n".join(lines) + "\n", "sec.conf")


def only(lines: list[str]) -> Diagnostic:
    found = diags(lines)
    assert len(found) == 1, [d.format() for d in found]
    return found[0]


# -- the spec example ----------------------------------------------------------------------


def test_spec_member1_policies() -> None:
    config = load_config_file(SPEC / "member1.conf")
    scope = dict(
        source_addresses=(NET10,),
        destination_addresses=(NET10,),
        applications=(),
        action="permit",
        group_vpn="gvpn1",
    )
    assert config.security.policies == (
        SecurityPolicy("scope1", "trust", "untrust", **scope),  # type: ignore[arg-type]
        SecurityPolicy("scope1", "untrust", "trust", **scope),  # type: ignore[arg-type]
    )
    zones = config.security.zones
    assert list(zones) == ["trust", "untrust"]
    assert zones["untrust"].interfaces == (ZoneInterface("ge-0/0/1.0", ("ike",)),)
    assert zones["trust"].interfaces == (ZoneInterface("ge-0/0/0.0"),)
    books = config.security.address_books
    assert books["book-trust"].zones == ("trust",)
    assert books["book-untrust"].addresses == {"net10": NET10}


def test_spec_member2_policies_in_order() -> None:
    config = load_config_file(SPEC / "member2.conf")
    security = config.security
    assert [(p.from_zone, p.to_zone, p.name) for p in security.policies] == [
        ("trust", "untrust", "deny1"),
        ("trust", "untrust", "scope1"),
        ("untrust", "trust", "deny2"),
        ("untrust", "trust", "scope1"),
    ]
    deny1, scope1 = security.context("trust", "untrust")
    assert (deny1.source_addresses, deny1.destination_addresses) == ((NET10_1,), ())
    assert (deny1.action, deny1.group_vpn, deny1.applications) == ("deny", None, ())
    assert (scope1.action, scope1.group_vpn) == ("permit", "gvpn1")
    deny2, _ = security.context("untrust", "trust")
    assert (deny2.source_addresses, deny2.destination_addresses) == ((), (NET10_1,))
    assert config.interfaces["ge-0/0/0"].units[0].addresses == (IPv4Interface("10.2.0.1/16"),)


def test_spec_server_zones() -> None:
    config = load_config_file(SPEC / "server.conf")
    (untrust,) = config.security.zones.values()
    assert [i.name for i in untrust.interfaces] == ["ge-0/0/1.0", "lo0.0"]
    assert config.security.policies == ()


# -- policies ---------------------------------------------------------------------------------


def test_policy_order_is_first_appearance() -> None:
    lines = base(
        f"{POL} b match source-address any",
        *policy(POL, "a", "any", "any", "any", "deny"),
        *policy(BACK, "z", "any", "any", "any", "reject"),
        f"{POL} b match destination-address any",
        f"{POL} b match application any",
        f"{POL} b then permit",
        f"{POL} a then permit",  # a later line changes a, not its position
    )
    config = load(lines)
    assert [(p.name, p.action) for p in config.security.policies] == [
        ("b", "permit"),
        ("a", "permit"),
        ("z", "reject"),
    ]


def test_then_is_a_choice_later_wins() -> None:
    lines = base(
        *policy(POL, "s", "net10", "net10", "any", "permit tunnel ipsec-group-vpn v1"),
        f"{POL} s then deny",
    )
    (p,) = load(lines).security.policies
    assert (p.action, p.group_vpn) == ("deny", None)
    lines = base(*policy(POL, "s", "net10", "net10", "any", "reject"), f"{POL} s then permit")
    (p,) = load(lines).security.policies
    assert (p.action, p.group_vpn) == ("permit", None)


def test_bracket_lists_and_repeats() -> None:
    lines = base(
        f"{BOOK} global address h1 10.1.1.1/32",
        f"{BOOK} global address h2 10.1.1.2",
        f"{POL} p match source-address [ h1 h2 ]",
        f"{POL} p match source-address net10",
        f"{POL} p match source-address h1",
        f"{POL} p match destination-address any",
        f"{POL} p match application [ junos-http junos-https ]",
        f"{POL} p then permit",
    )
    (p,) = load(lines).security.policies
    assert p.source_addresses == (
        IPv4Network("10.1.1.1/32"),
        IPv4Network("10.1.1.2/32"),
        NET10,
    )
    assert p.applications == (
        PREDEFINED_APPLICATIONS["junos-http"],
        PREDEFINED_APPLICATIONS["junos-https"],
    )


def test_any_wins_over_names() -> None:
    lines = base(
        f"{POL} p match source-address [ net10 any ]",
        f"{POL} p match destination-address net10",
        f"{POL} p match application [ junos-ssh any ]",
        f"{POL} p then permit",
    )
    (p,) = load(lines).security.policies
    assert (p.source_addresses, p.applications) == ((), ())


def test_address_set_expansion() -> None:
    lines = base(
        f"{BOOK} global address a 10.1.0.0/16",
        f"{BOOK} global address b 10.2.0.0/16",
        f"{BOOK} global address-set s1 address [ a b ]",
        f"{BOOK} global address-set s1 address a",
        *policy(POL, "p", "s1", "b", "any", "permit"),
    )
    config = load(lines)
    (p,) = config.security.policies
    assert p.source_addresses == (IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"))
    assert p.destination_addresses == (IPv4Network("10.2.0.0/16"),)
    book = config.security.address_books["global"]
    assert book.address_sets == {"s1": p.source_addresses}


def test_attached_book_before_global_and_per_zone() -> None:
    lines = base(
        f"{BOOK} lan address net10 10.9.0.0/16",
        f"{BOOK} lan attach zone trust",
        *policy(POL, "p", "net10", "net10", "any", "permit"),
    )
    (p,) = load(lines).security.policies
    # source in trust sees the attached book, destination in untrust the global one
    assert p.source_addresses == (IPv4Network("10.9.0.0/16"),)
    assert p.destination_addresses == (NET10,)


def test_legacy_zone_address_book() -> None:
    lines = base(
        f"{ZONES} trust address-book address lan 10.1.0.0/16",
        f"{ZONES} trust address-book address-set lans address lan",
        *policy(POL, "p", "lans", "net10", "any", "permit"),
    )
    config = load(lines)
    (p,) = config.security.policies
    assert p.source_addresses == (NET10_1,)
    book = config.security.zones["trust"].address_book
    assert book is not None and book.addresses == {"lan": NET10_1}


def test_applications_and_sets() -> None:
    lines = base(
        f"{APP} web protocol tcp",
        f"{APP} web destination-port 8080-8090",
        f"{APP} dns-src protocol udp",
        f"{APP} dns-src source-port 53",
        f"{APP} gre protocol 47",
        "set applications application-set mix application [ web junos-ntp ]",
        "set applications application-set mix application gre",
        *policy(POL, "p", "any", "any", "[ mix dns-src ]", "permit"),
    )
    (p,) = load(lines).security.policies
    assert p.applications == (
        Application("web", 6, (0, 65535), (8080, 8090)),
        Application("junos-ntp", 17, (0, 65535), (123, 123)),
        Application("gre", 47, (0, 65535), (0, 65535)),
        Application("dns-src", 17, (53, 53), (0, 65535)),
    )


def test_predefined_applications() -> None:
    expected = {
        "any": (None, (0, 65535)),
        "junos-http": (6, (80, 80)),
        "junos-https": (6, (443, 443)),
        "junos-ssh": (6, (22, 22)),
        "junos-telnet": (6, (23, 23)),
        "junos-ftp": (6, (21, 21)),
        "junos-dns-udp": (17, (53, 53)),
        "junos-dns-tcp": (6, (53, 53)),
        "junos-ntp": (17, (123, 123)),
        "junos-syslog": (17, (514, 514)),
        "junos-ike": (17, (500, 500)),
        "junos-ping": (1, (0, 65535)),
        "junos-icmp-all": (1, (0, 65535)),
    }
    for name, (protocol, ports) in expected.items():
        app = PREDEFINED_APPLICATIONS[name]
        assert (app.protocol, app.destination_ports, app.source_ports) == (
            protocol,
            ports,
            (0, 65535),
        )


def test_junos_host_zone_is_predefined() -> None:
    lines = base(
        *policy(
            "set security policies from-zone trust to-zone junos-host policy",
            "h",
            "any",
            "any",
            "junos-ssh",
            "permit",
        )
    )
    (p,) = load(lines).security.policies
    assert p.to_zone == "junos-host"


def test_interfaces() -> None:
    config = load(
        [
            "set interfaces ge-0/0/1 unit 0 family inet address 10.1.0.1/24",
            "set interfaces ge-0/0/1 unit 0 family inet address 10.1.1.1/24",
            "set interfaces ge-0/0/1 unit 5 family inet address 10.5.0.1/24",
            "set interfaces ge-0/0/1 mtu 1400",
            "set interfaces lo0 unit 0 family inet address 20.0.0.1/32",
            "set interfaces ge-0/0/2 unit 0 family inet",
        ]
    )
    ge1 = config.interfaces["ge-0/0/1"]
    assert ge1.mtu == 1400 and list(ge1.units) == [0, 5]
    assert [str(a) for a in ge1.units[0].addresses] == ["10.1.0.1/24", "10.1.1.1/24"]
    assert config.interfaces["lo0"].mtu is None
    assert config.interfaces["ge-0/0/2"].units[0].addresses == ()


def test_security_alone_is_a_valid_configuration() -> None:
    config = load(base(*policy(POL, "p", "any", "any", "any", "deny")))
    assert config.server is None and config.member is None
