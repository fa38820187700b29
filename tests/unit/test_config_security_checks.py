"""Commit checks of zones, address books, applications and security policies."""

from __future__ import annotations

import pytest

from tests.unit.test_config_security import APP, BOOK, POL, ZONES, base, diags, only, policy

M = "set security group-vpn member"
EDIT_P = ("security", "policies", "from-zone", "trust", "to-zone", "untrust", "policy", "p")


def test_undefined_from_zone() -> None:
    lines = base(
        *policy(
            "set security policies from-zone dmz to-zone untrust policy",
            "p",
            "any",
            "any",
            "any",
            "deny",
        )
    )
    d = only(lines)
    assert d.format() == (
        "sec.conf:4: [edit security policies]\n  'from-zone dmz'\n    Security zone must be defined"
    )


def test_undefined_to_zone() -> None:
    lines = base(
        *policy(
            "set security policies from-zone trust to-zone dmz policy",
            "p",
            "any",
            "any",
            "any",
            "deny",
        )
    )
    d = only(lines)
    assert (d.line, d.path, d.statement, d.message) == (
        4,
        ("security", "policies", "from-zone", "trust"),
        "to-zone dmz",
        "Security zone must be defined",
    )


def test_undefined_source_and_destination_address() -> None:
    found = diags(base(*policy(POL, "p", "nope", "net10-x", "any", "deny")))
    assert [(d.line, d.statement, d.message) for d in found] == [
        (
            4,
            "source-address nope",
            "Referenced address must be defined in an address book of zone trust",
        ),
        (
            5,
            "destination-address net10-x",
            "Referenced address must be defined in an address book of zone untrust",
        ),
    ]
    assert found[0].path == (*EDIT_P, "match")


def test_address_of_another_zone_book_is_not_visible() -> None:
    lines = base(
        f"{BOOK} lan address lan1 10.1.0.0/16",
        f"{BOOK} lan attach zone untrust",
        *policy(POL, "p", "lan1", "lan1", "any", "deny"),
    )
    d = only(lines)
    assert (d.line, d.statement) == (6, "source-address lan1")


def test_undefined_application() -> None:
    d = only(base(*policy(POL, "p", "any", "any", "junos-nope", "deny")))
    assert d.format() == (
        "sec.conf:6: [edit security policies from-zone trust to-zone untrust policy p match]\n"
        "  'application junos-nope'\n"
        "    Application must be defined"
    )


def test_undefined_group_vpn() -> None:
    d = only(base(*policy(POL, "p", "net10", "net10", "any", "permit tunnel ipsec-group-vpn v9")))
    assert d.format() == (
        "sec.conf:7: [edit security policies from-zone trust to-zone untrust policy p "
        "then permit tunnel]\n"
        "  'ipsec-group-vpn v9'\n"
        "    Security group VPN must be defined"
    )


def test_attach_to_undefined_zone() -> None:
    d = only(base(f"{BOOK} lan address a 10.1.0.0/16", f"{BOOK} lan attach zone dmz"))
    assert (d.line, d.path, d.statement, d.message) == (
        5,
        ("security", "address-book", "lan", "attach"),
        "zone dmz",
        "Security zone must be defined",
    )


def test_address_set_members_must_be_in_the_same_book() -> None:
    lines = base(
        f"{BOOK} lan address a 10.1.0.0/16",
        f"{BOOK} lan address-set s address [ a net10 ]",
        f"{ZONES} trust address-book address-set t address nope",
    )
    found = diags(lines)
    assert [(d.line, d.statement, d.message) for d in found] == [
        (5, "address net10", "Referenced address must be defined in the same address book"),
        (6, "address nope", "Referenced address must be defined in the same address book"),
    ]


def test_application_set_members_defined() -> None:
    d = only(base("set applications application-set s application [ junos-http nope ]"))
    assert (d.line, d.path, d.statement, d.message) == (
        4,
        ("applications", "application-set", "s"),
        "application nope",
        "Application must be defined",
    )


@pytest.mark.parametrize("missing", ["source-address", "destination-address", "application"])
def test_policy_match_is_mandatory(missing: str) -> None:
    lines = [
        line
        for line in base(*policy(POL, "p", "any", "any", "any", "deny"))
        if missing + " " not in line
    ]
    d = only(lines)
    assert (d.path, d.statement, d.message) == (
        EDIT_P,
        "match",
        f"Missing mandatory statement: '{missing}'",
    )


def test_policy_then_is_mandatory() -> None:
    lines = base(*policy(POL, "p", "any", "any", "any", "deny")[:3])
    d = only(lines)
    assert (d.line, d.statement, d.message) == (
        4,
        "policy p",
        "Missing mandatory statement: 'then'",
    )


def test_policy_needs_an_action() -> None:
    lines = base(*policy(POL, "p", "any", "any", "any", "deny")[:3], f"{POL} p then")
    d = only(lines)
    assert (d.line, d.statement, d.message) == (
        7,
        "then",
        "Policy action must be one of: permit deny reject",
    )


def test_application_protocol_is_mandatory() -> None:
    d = only([f"{APP} web destination-port 80"])
    assert (d.statement, d.message) == (
        "application web",
        "Missing mandatory statement: 'protocol'",
    )


@pytest.mark.parametrize(
    ("line", "statement", "message"),
    [
        (f"{APP} a protocol 256", "protocol 256", "Value 256 is not within range (0..255)"),
        (
            f"{APP} a destination-port 90-80",
            "destination-port 90-80",
            "Invalid port range: '90-80' (low port above high port)",
        ),
        (
            f"{APP} a source-port 70000",
            "source-port 70000",
            "Value 70000 is not within range (0..65535)",
        ),
        (f"{APP} a source-port http", "source-port http", "Invalid port or port range: 'http'"),
        (
            f"{BOOK} global address a 10.0.0.0/40",
            "10.0.0.0/40",
            "Invalid IPv4 prefix: '10.0.0.0/40'",
        ),
        ("set interfaces ge-0/0/1 mtu 100", "mtu 100", "Value 100 is not within range (256..9192)"),
        (
            "set interfaces ge-0/0/1 unit 0 family inet address 10.1.0.1",
            "address 10.1.0.1",
            "Invalid IPv4 interface address: '10.1.0.1' (expected A.B.C.D/LEN)",
        ),
        (
            "set interfaces ge-0/0/1 unit 99999 family inet",
            "unit 99999",
            "Value 99999 is not within range (0..16385)",
        ),
        (
            "set interfaces GE0 mtu 1500",
            "interfaces GE0",
            "Must be an interface name such as ge-0/0/1 or lo0",
        ),
    ],
)
def test_bad_values(line: str, statement: str, message: str) -> None:
    d = only([line])
    assert (d.line, d.statement, d.message) == (1, statement, message)


def test_bad_protocol_and_service_keywords() -> None:
    d = only([f"{APP} a protocol tcpx"])
    assert d.headline == "syntax error: tcpx"
    assert d.message.startswith("syntax error, expecting a number 0..255 or one of: icmp igmp tcp")
    d = only([f"{ZONES} trust interfaces ge-0/0/0.0 host-inbound-traffic system-services nope"])
    assert d.headline == "syntax error: nope"


def test_positional_prefix_with_trailing_word() -> None:
    d = only([f"{BOOK} global address a 10.0.0.0/8 extra"])
    assert (d.headline, d.statement) == ("syntax error: extra", "extra")


def test_address_without_prefix() -> None:
    d = only([f"{BOOK} global address a description lan"])
    assert (d.statement, d.message) == ("address a", "Missing mandatory statement: 'ip-prefix'")


def test_scope_policy_with_member_vpn_is_valid() -> None:
    lines = [
        f"{M} ike proposal p1 authentication-method pre-shared-keys",
        f"{M} ike proposal p1 authentication-algorithm sha1",
        f"{M} ike proposal p1 dh-group group2",
        f"{M} ike proposal p1 encryption-algorithm 3des-cbc",
        f"{M} ike policy pol1 proposals p1",
        f'{M} ike policy pol1 pre-shared-key ascii-text "k"',
        f"{M} ike gateway gw1 ike-policy pol1",
        f"{M} ike gateway gw1 address 20.0.0.1",
        f"{M} ipsec vpn v1 ike-gateway gw1",
        f"{M} ipsec vpn v1 group 1",
        *base(*policy(POL, "p", "net10", "net10", "any", "permit tunnel ipsec-group-vpn v1")),
    ]
    assert diags(lines) == []
