"""Ordered lookup: earlier policies pre-empt, fall-through below a scope policy, default deny."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from groupvpn.policy import (
    DEFAULT_DENY,
    Application,
    DynamicPolicy,
    GroupPolicy,
    Match,
    Packet,
    PolicyLookup,
    PortRange,
    SecurityPolicy,
    decide,
    dynamic_policies,
    lookup,
)

VPN = "gvpn1"
T2U = ("trust", "untrust")
NET10 = IPv4Network("10.0.0.0/8")
HTTP = Application("junos-http", 6, destination_ports=PortRange(80, 80))

P1 = GroupPolicy("p1", IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"))
WEB = GroupPolicy("web", IPv4Network("10.3.0.0/16"), IPv4Network("10.4.0.0/16"), 0, 80, 6)


def _packet(source: str, destination: str, protocol: int = 6, dport: int = 80) -> Packet:
    return Packet(IPv4Address(source), IPv4Address(destination), protocol, 40000, dport)


def _table(*policies: SecurityPolicy, group: tuple[GroupPolicy, ...] = (P1, WEB)) -> PolicyLookup:
    return PolicyLookup(policies, dynamic_policies(decide(group, policies, VPN), policies))


def _dynamic(match: Match) -> DynamicPolicy:
    assert isinstance(match.rule, DynamicPolicy), match
    return match.rule


SCOPE = SecurityPolicy("scope1", *T2U, (NET10,), (NET10,), group_vpn=VPN)


def test_dynamic_policy_match_permits_through_the_vpn():
    match = _table(SCOPE).lookup(*T2U, _packet("10.1.2.3", "10.2.3.4"))
    assert match.action == "permit"
    assert match.vpn == VPN
    assert _dynamic(match).group_policy == P1


def test_earlier_deny_pre_empts_the_scope_policy():
    deny = SecurityPolicy("deny-host", *T2U, (IPv4Network("10.1.2.3/32"),), action="deny")
    table = _table(deny, SCOPE)
    assert table.lookup(*T2U, _packet("10.1.2.3", "10.2.3.4")).rule == deny
    assert table.lookup(*T2U, _packet("10.1.2.4", "10.2.3.4")).vpn == VPN


def test_reject_action_is_returned():
    reject = SecurityPolicy(
        "reject-udp", *T2U, applications=(Application("udp", 17),), action="reject"
    )
    match = _table(reject, SCOPE).lookup(*T2U, _packet("10.1.0.1", "10.2.0.1", protocol=17))
    assert (match.rule, match.action) == (reject, "reject")


def test_no_dynamic_match_falls_through_to_policies_below_the_scope_policy():
    below = SecurityPolicy("clear-permit", *T2U)
    table = _table(SCOPE, below)
    # Inside scope1, but p1/web do not describe it: the search continues below scope1.
    assert table.lookup(*T2U, _packet("10.5.0.1", "10.6.0.1")).rule == below
    # web is only TCP port 80.
    assert table.lookup(*T2U, _packet("10.3.0.1", "10.4.0.1", dport=443)).rule == below
    assert table.lookup(*T2U, _packet("10.3.0.1", "10.4.0.1", dport=80)).vpn == VPN


def test_fall_through_reaches_a_later_scope_policy():
    web_scope = SecurityPolicy("web-scope", *T2U, applications=(HTTP,), group_vpn=VPN)
    rest = SecurityPolicy("rest", *T2U, group_vpn=VPN)
    table = _table(web_scope, rest)
    match = table.lookup(*T2U, _packet("10.1.0.1", "10.2.0.1", dport=80))
    # p1 (any port) is not covered by web-scope, so it sits under "rest".
    assert _dynamic(match).scope_policy == "rest"
    web = table.lookup(*T2U, _packet("10.3.0.1", "10.4.0.1", dport=80))
    assert _dynamic(web).scope_policy == "web-scope"


def test_default_deny():
    table = _table(SCOPE)
    assert table.lookup(*T2U, _packet("192.168.0.1", "10.2.0.1")) == DEFAULT_DENY
    assert table.lookup("dmz", "untrust", _packet("10.1.0.1", "10.2.0.1")) == DEFAULT_DENY
    assert DEFAULT_DENY.vpn is None


def test_contexts_are_separate():
    other = SecurityPolicy("allow", "untrust", "trust")
    table = _table(SCOPE, other)
    assert table.lookup("untrust", "trust", _packet("10.1.0.1", "10.2.0.1")).rule == other
    assert table.lookup(*T2U, _packet("10.1.0.1", "10.2.0.1")).vpn == VPN


def test_first_dynamic_policy_in_order_wins():
    narrow = GroupPolicy("narrow", IPv4Network("10.1.0.0/24"), IPv4Network("10.2.0.0/24"))
    table = _table(SCOPE, group=(narrow, P1))
    match = table.lookup(*T2U, _packet("10.1.0.1", "10.2.0.1"))
    assert _dynamic(match).group_policy == narrow


def test_one_off_lookup_function():
    policies = (SCOPE,)
    installed = dynamic_policies(decide((P1,), policies, VPN), policies)
    assert lookup(policies, installed, *T2U, _packet("10.1.0.1", "10.2.0.1")).vpn == VPN


def test_dynamic_policy_without_its_scope_policy_is_refused():
    installed = dynamic_policies(decide((P1,), (SCOPE,), VPN), (SCOPE,))
    with pytest.raises(ValueError, match="no scope policy of that name"):
        PolicyLookup((SecurityPolicy("scope1", *T2U),), installed)
