"""covers / coverage_gap / overlaps: addresses, unions of entries, ports, protocols."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from groupvpn.policy import (
    ANY_PORT,
    Application,
    GroupPolicy,
    PortRange,
    SecurityPolicy,
    coverage_gap,
    covers,
    overlaps,
)

NET = IPv4Network


def _policy(
    sources: tuple[str, ...] = (),
    destinations: tuple[str, ...] = (),
    applications: tuple[Application, ...] = (),
) -> SecurityPolicy:
    return SecurityPolicy(
        "pol", "trust", "untrust",
        tuple(NET(s) for s in sources), tuple(NET(d) for d in destinations), applications,
    )  # fmt: skip


def _group(
    source: str = "10.1.0.0/16",
    destination: str = "10.2.0.0/16",
    source_port: int = 0,
    destination_port: int = 0,
    protocol: int = 0,
) -> GroupPolicy:
    return GroupPolicy("gp", NET(source), NET(destination), source_port, destination_port, protocol)


TCP = Application("tcp-any", 6)
UDP = Application("udp-any", 17)
HTTP = Application("http", 6, destination_ports=PortRange(80, 80))
LOW_TCP = Application("low", 6, destination_ports=PortRange(0, 1023))
HIGH_TCP = Application("high", 6, destination_ports=PortRange(1024, 65535))


def test_any_policy_covers_everything():
    assert covers(_policy(), _group(source="0.0.0.0/0", destination="0.0.0.0/0"))


def test_address_inside_one_entry():
    assert covers(_policy(("192.168.0.0/16", "10.0.0.0/8")), _group())
    assert coverage_gap(_policy(("10.1.0.0/17",)), _group()) == (
        "source 10.1.0.0/16 not within 10.1.0.0/17"
    )


def test_address_covered_by_adjacent_entries_together():
    halves = _policy(destinations=("10.2.0.0/17", "10.2.128.0/17"))
    assert covers(halves, _group())
    gap = _policy(destinations=("10.2.0.0/17", "10.2.192.0/18"))
    assert coverage_gap(gap, _group()) == (
        "destination 10.2.0.0/16 not within 10.2.0.0/17, 10.2.192.0/18"
    )


def test_any_group_address_is_covered_only_by_any():
    assert coverage_gap(_policy(("0.0.0.0/1", "128.0.0.0/1")), _group(source="0.0.0.0/0")) is None
    assert coverage_gap(_policy(("10.0.0.0/8",)), _group(source="0.0.0.0/0")) == (
        "source any not within 10.0.0.0/8"
    )


def test_protocol_wildcard_needs_an_any_protocol_application():
    assert not covers(_policy(applications=(TCP, UDP)), _group())
    assert covers(_policy(applications=(TCP, Application("all", None))), _group())
    assert covers(_policy(applications=(TCP,)), _group(protocol=6))
    assert coverage_gap(_policy(applications=(TCP,)), _group(protocol=17)) == (
        "protocol 17 (udp) not allowed by applications tcp-any"
    )


def test_port_wildcard_needs_every_port():
    assert coverage_gap(_policy(applications=(HTTP,)), _group(protocol=6)) == (
        "destination-port any not allowed by applications http"
    )
    assert covers(_policy(applications=(HTTP,)), _group(protocol=6, destination_port=80))
    assert not covers(_policy(applications=(HTTP,)), _group(protocol=6, destination_port=443))
    # Two ranges that together make every port cover the wildcard.
    assert covers(_policy(applications=(LOW_TCP, HIGH_TCP)), _group(protocol=6))
    assert not covers(_policy(applications=(LOW_TCP, HTTP)), _group(protocol=6))


def test_source_port_gap_is_named():
    client = Application("client", 6, source_ports=PortRange(1024, 65535))
    assert coverage_gap(_policy(applications=(client,)), _group(protocol=6)) == (
        "source-port any not allowed by applications client"
    )
    assert covers(_policy(applications=(client,)), _group(protocol=6, source_port=2000))


def test_port_combination_gap():
    # Each port is fully allowed by some application, but not every pair is.
    a = Application("a", 6, PortRange(0, 1023), PortRange(0, 1023))
    b = Application("b", 6, PortRange(1024, 65535), PortRange(1024, 65535))
    assert coverage_gap(_policy(applications=(a, b)), _group(protocol=6)) == (
        "source-port any with destination-port any not allowed by applications a, b"
    )
    c = Application("c", 6, PortRange(0, 1023), PortRange(1024, 65535))
    d = Application("d", 6, PortRange(1024, 65535), PortRange(0, 1023))
    assert covers(_policy(applications=(a, b, c, d)), _group(protocol=6))


def test_specific_protocol_in_any_protocol_application_with_ports():
    any_80 = Application("any-80", None, destination_ports=PortRange(80, 80))
    assert covers(_policy(applications=(any_80,)), _group(protocol=17, destination_port=80))
    assert covers(_policy(applications=(any_80,)), _group(destination_port=80))


def test_overlaps():
    assert overlaps(_policy(("10.1.0.0/17",)), _group())
    assert not overlaps(_policy(("10.3.0.0/16",)), _group())
    assert overlaps(_policy(applications=(HTTP,)), _group())
    assert not overlaps(_policy(applications=(HTTP,)), _group(protocol=17))
    assert not overlaps(_policy(applications=(HTTP,)), _group(protocol=6, destination_port=443))


@pytest.mark.parametrize(
    "make",
    [
        lambda: PortRange(10, 9),
        lambda: PortRange(0, 65536),
        lambda: Application("zero", 0),
        lambda: GroupPolicy("g", NET("10.0.0.0/8"), NET("10.0.0.0/8"), 70000),
        lambda: GroupPolicy("g", NET("10.0.0.0/8"), NET("10.0.0.0/8"), protocol=256),
        lambda: SecurityPolicy("s", "a", "b", action="deny", group_vpn="v"),
    ],
)
def test_invalid_values_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_descriptions():
    assert str(ANY_PORT) == "any"
    assert str(PortRange(80, 80)) == "80"
    assert str(PortRange(80, 90)) == "80-90"
    assert str(_group(protocol=6, destination_port=80)).endswith("port 80 protocol 6 (tcp)")
