"""Dynamic policies: the spec's example (member1, member2) and the install rule's edges."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from groupvpn.policy import (
    Application,
    GroupPolicy,
    InstallDecision,
    Packet,
    PolicyLookup,
    PortRange,
    SecurityPolicy,
    accepted_group_policies,
    decide,
    dynamic_policies,
    explain,
)

VPN = "gvpn1"
NET10 = IPv4Network("10.0.0.0/8")
NET10_1 = IPv4Network("10.1.0.0/16")

# The group policies of "Example: Configuring Group VPNv1 Server and Members".
P1 = GroupPolicy("p1", IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"))
P2 = GroupPolicy("p2", IPv4Network("10.2.0.0/16"), IPv4Network("10.1.0.0/16"))
P3 = GroupPolicy("p3", IPv4Network("10.1.1.1/32"), IPv4Network("239.1.1.1/32"))
GROUP = (P1, P2, P3)

T2U = ("trust", "untrust")
U2T = ("untrust", "trust")


def _scope(from_zone: str, to_zone: str, name: str = "scope1", vpn: str = VPN) -> SecurityPolicy:
    return SecurityPolicy(name, from_zone, to_zone, (NET10,), (NET10,), group_vpn=vpn)


MEMBER1 = (_scope(*T2U), _scope(*U2T))
MEMBER2 = (
    SecurityPolicy("deny1", *T2U, sources=(NET10_1,), action="deny"),
    _scope(*T2U),
    SecurityPolicy("deny2", *U2T, destinations=(NET10_1,), action="deny"),
    _scope(*U2T),
)


def _by_key(decisions: list[InstallDecision]) -> dict[tuple[tuple[str, str], str], InstallDecision]:
    return {(d.context, d.group_policy.name): d for d in decisions}


def test_member1_installs_p1_and_p2_both_ways_and_never_multicast_p3():
    decisions = decide(GROUP, MEMBER1, VPN)
    assert [(d.context, d.group_policy.name, d.installed) for d in decisions] == [
        (T2U, "p1", True),
        (T2U, "p2", True),
        (T2U, "p3", False),
        (U2T, "p1", True),
        (U2T, "p2", True),
        (U2T, "p3", False),
    ]
    by_key = _by_key(decisions)
    assert by_key[(T2U, "p1")].scope_policy == "scope1"
    assert by_key[(T2U, "p1")].reason == "within scope policy scope1"
    for context in (T2U, U2T):
        p3 = by_key[(context, "p3")]
        assert p3.reason == (
            "outside scope policy scope1 (destination 239.1.1.1/32 not within 10.0.0.0/8)"
        )
        assert p3.scope_policy == "scope1"
    assert accepted_group_policies(decisions) == {"p1", "p2"}


def test_member2_deny_policies_shadow_p2_inbound_and_p1_outbound():
    by_key = _by_key(decide(GROUP, MEMBER2, VPN))
    # The spec's statement: p2 is not installed because it matches deny2.
    assert not by_key[(U2T, "p2")].installed
    assert by_key[(U2T, "p2")].reason == "shadowed by policy deny2"
    assert by_key[(U2T, "p2")].scope_policy is None
    assert not by_key[(T2U, "p1")].installed
    assert by_key[(T2U, "p1")].reason == "shadowed by policy deny1"
    # The other direction of each is untouched by the deny policies.
    assert by_key[(T2U, "p2")].installed
    assert by_key[(U2T, "p1")].installed
    # p3 comes from 10.1.1.1, which deny1 covers outbound; inbound it is outside scope1.
    assert by_key[(T2U, "p3")].reason == "shadowed by policy deny1"
    assert by_key[(U2T, "p3")].reason.startswith("outside scope policy scope1 (destination")
    assert accepted_group_policies(by_key.values()) == {"p1", "p2"}


def test_member2_dynamic_policies_in_stable_order():
    installed = dynamic_policies(decide(GROUP, MEMBER2, VPN), MEMBER2)
    assert [
        (d.index, d.context, d.scope_policy, d.scope_position, d.group_policy.name)
        for d in installed
    ] == [
        (1, T2U, "scope1", 1, "p2"),
        (2, U2T, "scope1", 1, "p1"),
    ]
    assert all(d.vpn == VPN for d in installed)


def test_member2_lookup_matches_the_spec_traffic():
    table = PolicyLookup(MEMBER2, dynamic_policies(decide(GROUP, MEMBER2, VPN), MEMBER2))

    def packet(source: str, destination: str) -> Packet:
        return Packet(IPv4Address(source), IPv4Address(destination), 6, 1024, 80)

    outbound = table.lookup(*T2U, packet("10.2.0.5", "10.1.0.5"))
    assert outbound.action == "permit"
    assert outbound.vpn == VPN
    assert table.lookup(*T2U, packet("10.1.0.5", "10.2.0.5")).rule == MEMBER2[0]  # deny1
    # Inside scope1 but covered by no dynamic policy: falls below scope1 -> default deny.
    stray = table.lookup(*T2U, packet("10.3.0.1", "10.4.0.1"))
    assert stray.rule is None
    assert stray.action == "deny"


def test_no_decisions_for_contexts_without_a_scope_policy_for_the_vpn():
    policies = (
        _scope(*T2U),
        SecurityPolicy("allow", "dmz", "untrust"),
        _scope(*U2T, vpn="other"),
    )
    decisions = decide((P1,), policies, VPN)
    assert [d.context for d in decisions] == [T2U]
    alone = explain(P1, policies, VPN, "dmz", "untrust")
    assert not alone.installed
    assert alone.reason == "shadowed by policy allow"
    nothing = explain(P1, policies, VPN, "trust", "dmz")
    assert nothing.reason == f"no scope policy for VPN {VPN} in this context"


def test_scope_policy_of_another_vpn_shadows():
    policies = (_scope(*T2U, name="scope-other", vpn="other"), _scope(*T2U))
    [decision] = decide((P1,), policies, VPN)
    assert decision.reason == "shadowed by policy scope-other"


def test_ordinary_permit_shadows_and_later_scope_policy_is_not_reached():
    policies = (SecurityPolicy("allow-all", *T2U), _scope(*T2U))
    [decision] = decide((P1,), policies, VPN)
    assert (decision.installed, decision.reason) == (False, "shadowed by policy allow-all")


def test_partial_overlap_of_a_scope_policy_does_not_install():
    narrow = SecurityPolicy("scope1", *T2U, (IPv4Network("10.1.0.0/17"),), group_vpn=VPN)
    [decision] = decide((P1,), (narrow,), VPN)
    assert not decision.installed
    assert decision.reason == (
        "outside scope policy scope1 (source 10.1.0.0/16 not within 10.1.0.0/17)"
    )


def test_first_covering_scope_policy_installs_after_a_partial_one():
    narrow = SecurityPolicy("narrow", *T2U, (IPv4Network("10.1.0.0/17"),), group_vpn=VPN)
    wide = _scope(*T2U, name="wide")
    [decision] = decide((P1,), (narrow, wide), VPN)
    assert (decision.installed, decision.scope_policy) == (True, "wide")
    # An earlier scope policy is not a shadow: its packets fall through to "wide".
    assert decision.partially_shadowed_by == ()


def test_partially_overlapping_deny_is_reported_but_does_not_block():
    deny = SecurityPolicy(
        "deny-web",
        *T2U,
        applications=(Application("http", 6, PortRange(0, 65535), PortRange(80, 80)),),
        action="deny",
    )
    [decision] = decide((P1,), (deny, _scope(*T2U)), VPN)
    assert decision.installed
    assert decision.partially_shadowed_by == ("deny-web",)
    assert decision.reason == "within scope policy scope1 (partly shadowed by policy deny-web)"


def test_port_and_protocol_must_fit_the_scope_policy_applications():
    web = Application("junos-http", 6, destination_ports=PortRange(80, 80))
    scope = SecurityPolicy("scope1", *T2U, (NET10,), (NET10,), (web,), group_vpn=VPN)
    http = GroupPolicy("http", P1.source, P1.destination, 0, 80, 6)
    dns = GroupPolicy("dns", P1.source, P1.destination, 0, 53, 17)
    everything = GroupPolicy("all", P1.source, P1.destination)
    decisions = _by_key(decide((http, dns, everything), (scope,), VPN))
    assert decisions[(T2U, "http")].installed
    assert decisions[(T2U, "dns")].reason == (
        "outside scope policy scope1 (protocol 17 (udp) not allowed by applications junos-http)"
    )
    assert decisions[(T2U, "all")].reason == (
        "outside scope policy scope1 (protocol any not allowed by applications junos-http)"
    )


def test_accepted_group_policies_counts_any_context():
    decisions = decide(GROUP, MEMBER2, VPN)
    assert accepted_group_policies(decisions) == {"p1", "p2"}
    assert accepted_group_policies([]) == set()


def test_dynamic_policies_refuse_a_scope_policy_that_is_not_there():
    [decision] = decide((P1,), MEMBER1[:1], VPN)
    with pytest.raises(ValueError, match="not a policy in"):
        dynamic_policies([decision], MEMBER1[1:])


def test_dynamic_policy_order_follows_scope_position_then_group_order():
    policies = (
        SecurityPolicy("web", *T2U, (IPv4Network("10.1.0.0/16"),), group_vpn=VPN),
        SecurityPolicy("rest", *T2U, group_vpn=VPN),
        _scope(*U2T),
    )
    wide = GroupPolicy("wide", IPv4Network("10.0.0.0/8"), IPv4Network("10.0.0.0/8"))
    decisions = decide((wide, P1, P2), policies, VPN)
    order = [
        (d.context, d.scope_policy, d.group_policy.name)
        for d in dynamic_policies(decisions, policies)
    ]
    assert order == [
        (T2U, "web", "p1"),
        (T2U, "rest", "wide"),
        (T2U, "rest", "p2"),
        (U2T, "scope1", "wide"),
        (U2T, "scope1", "p1"),
        (U2T, "scope1", "p2"),
    ]
