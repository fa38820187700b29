"""decide() and PolicyLookup against a brute-force model over a small packet space.

The model knows nothing of prefixes-within-prefixes or port-range algebra: it
lists every concrete packet of a small universe and asks, packet by packet,
which policy matches.  The universe is small but exact for the generated
rules: group policies stay inside 10.0.0.0/29 (all 8 addresses are listed);
every port range used cuts the port space only at 80, 81 and 1024, so one port
from each cell (0, 80, 500, 2000) stands for its whole cell; protocol 1 stands
for every protocol no application names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv4Address, IPv4Network
from itertools import product
from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.policy import (
    ANY_PORT,
    Application,
    DynamicPolicy,
    GroupPolicy,
    InstallDecision,
    Packet,
    PolicyLookup,
    PortRange,
    SecurityPolicy,
    decide,
    dynamic_policies,
)

BASE = int(IPv4Address("10.0.0.0"))
ADDRESSES = [BASE + offset for offset in range(8)]
PORTS = [0, 80, 500, 2000]
PROTOCOLS = [1, 6, 17]
CONTEXTS = [("trust", "untrust"), ("untrust", "trust")]
VPNS = ["A", "B"]

SMALL_PREFIXES = [
    IPv4Network((BASE + start, length))
    for length in range(29, 33)
    for start in range(0, 8, 2 ** (32 - length))
]
POLICY_PREFIXES = [*SMALL_PREFIXES, IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12")]
PORT_RANGES = [ANY_PORT, PortRange(80, 80), PortRange(0, 1023), PortRange(1024, 65535)]
GROUP_PORTS = [0, 80, 2000]

# ---- the model: plain integer comparisons over concrete packets -------------

RefPacket = tuple[int, int, int, int, int]  # source, destination, protocol, sport, dport


@cache
def _bounds(network: IPv4Network) -> tuple[int, int]:
    low = int(network.network_address)
    return low, low + network.num_addresses - 1


def _in(network: IPv4Network, address: int) -> bool:
    low, high = _bounds(network)
    return low <= address <= high


def model_policy_matches(policy: SecurityPolicy, packet: RefPacket) -> bool:
    source, destination, protocol, sport, dport = packet
    if policy.sources and not any(_in(n, source) for n in policy.sources):
        return False
    if policy.destinations and not any(_in(n, destination) for n in policy.destinations):
        return False
    if not policy.applications:
        return True
    return any(
        (app.protocol is None or app.protocol == protocol)
        and app.source_ports.low <= sport <= app.source_ports.high
        and app.destination_ports.low <= dport <= app.destination_ports.high
        for app in policy.applications
    )


def model_group_matches(group: GroupPolicy, packet: RefPacket) -> bool:
    source, destination, protocol, sport, dport = packet
    return (
        _in(group.source, source)
        and _in(group.destination, destination)
        and group.protocol in (0, protocol)
        and group.source_port in (0, sport)
        and group.destination_port in (0, dport)
    )


UNIVERSE: list[RefPacket] = list(product(ADDRESSES, ADDRESSES, PROTOCOLS, PORTS, PORTS))
# The same packets as the code under test takes them, built once.
CONCRETE = [
    Packet(IPv4Address(source), IPv4Address(destination), protocol, sport, dport)
    for source, destination, protocol, sport, dport in UNIVERSE
]


@cache
def model_packets(group: GroupPolicy) -> list[RefPacket]:
    return [packet for packet in UNIVERSE if model_group_matches(group, packet)]


@dataclass
class ModelDecision:
    installed: bool
    first_covering: str | None
    partial: tuple[str, ...]


def model_decide(
    group: GroupPolicy,
    ordered: Sequence[SecurityPolicy],
    vpn: str,
    matched: dict[str, set[RefPacket]],
) -> ModelDecision:
    packets = model_packets(group)
    partial: list[str] = []
    for policy in ordered:
        hits = sum(packet in matched[policy.name] for packet in packets)
        if hits == len(packets):  # every packet of the group policy matches: covers
            return ModelDecision(policy.group_vpn == vpn, policy.name, tuple(partial))
        if hits and policy.group_vpn is None:
            partial.append(policy.name)
    return ModelDecision(False, None, ())


def model_lookup(
    ordered: Sequence[SecurityPolicy],
    dynamic: Sequence[DynamicPolicy],
    matched: dict[str, set[RefPacket]],
    packet: RefPacket,
) -> SecurityPolicy | DynamicPolicy | None:
    for policy in ordered:
        if packet not in matched[policy.name]:
            continue
        if policy.group_vpn is None:
            return policy
        for entry in dynamic:
            if (
                entry.context == policy.context
                and entry.scope_policy == policy.name
                and model_group_matches(entry.group_policy, packet)
            ):
                return entry
    return None


# ---- generators -------------------------------------------------------------

applications = st.builds(
    Application,
    name=st.just("app"),
    protocol=st.sampled_from([None, 6, 17]),
    source_ports=st.sampled_from(PORT_RANGES),
    destination_ports=st.sampled_from(PORT_RANGES),
)
prefix_sets = st.lists(st.sampled_from(POLICY_PREFIXES), max_size=3).map(tuple)


@st.composite
def security_policies(draw: st.DrawFn) -> list[SecurityPolicy]:
    kinds = draw(
        st.lists(
            st.sampled_from(["scope-A", "scope-A", "scope-B", "deny", "reject", "permit"]),
            min_size=1,
            max_size=6,
        )
    )
    policies = []
    for number, kind in enumerate(kinds):
        scope = kind.startswith("scope")
        policies.append(
            SecurityPolicy(
                name=f"pol{number}",
                from_zone=(context := draw(st.sampled_from(CONTEXTS)))[0],
                to_zone=context[1],
                sources=draw(prefix_sets),
                destinations=draw(prefix_sets),
                applications=tuple(draw(st.lists(applications, max_size=2))),
                action="permit" if scope else kind,  # type: ignore[arg-type]
                group_vpn=kind[-1] if scope else None,
            )
        )
    return policies


group_policy_lists = st.lists(
    st.builds(
        GroupPolicy,
        name=st.just(""),
        source=st.sampled_from(SMALL_PREFIXES),
        destination=st.sampled_from(SMALL_PREFIXES),
        source_port=st.sampled_from(GROUP_PORTS),
        destination_port=st.sampled_from(GROUP_PORTS),
        protocol=st.sampled_from([0, 6, 17]),
    ),
    min_size=1,
    max_size=4,
).map(
    lambda groups: [
        GroupPolicy(f"g{i}", g.source, g.destination, g.source_port, g.destination_port, g.protocol)
        for i, g in enumerate(groups)
    ]
)


def _in_context(
    policies: Sequence[SecurityPolicy], context: tuple[str, str]
) -> list[SecurityPolicy]:
    return [p for p in policies if p.context == context]


def _matched(policies: Sequence[SecurityPolicy]) -> dict[str, set[RefPacket]]:
    """Every universe packet each policy matches, by policy name.

    The same sets as testing ``model_policy_matches`` on each packet of the
    universe (``test_matched_sets_are_the_brute_force_sets`` checks it), built
    faster: the fields are independent, so each is enumerated on its own.
    """
    matched = {}
    for policy in policies:
        # The same policy with all but one field set to any.
        by_source = SecurityPolicy("sources", "a", "b", sources=policy.sources)
        by_destination = SecurityPolicy("destinations", "a", "b", destinations=policy.destinations)
        applications = SecurityPolicy("applications", "a", "b", applications=policy.applications)
        sources = [a for a in ADDRESSES if model_policy_matches(by_source, (a, BASE, 1, 0, 0))]
        destinations = [
            a for a in ADDRESSES if model_policy_matches(by_destination, (BASE, a, 1, 0, 0))
        ]
        services = [
            service
            for service in product(PROTOCOLS, PORTS, PORTS)
            if model_policy_matches(applications, (BASE, BASE, *service))
        ]
        matched[policy.name] = {
            (source, destination, *service)
            for source in sources
            for destination in destinations
            for service in services
        }
    return matched


@settings(max_examples=30, deadline=None)
@given(policies=security_policies())
def test_matched_sets_are_the_brute_force_sets(policies: list[SecurityPolicy]) -> None:
    assert _matched(policies) == {
        p.name: {packet for packet in UNIVERSE if model_policy_matches(p, packet)} for p in policies
    }


def _checked_decisions(
    groups: Sequence[GroupPolicy],
    policies: Sequence[SecurityPolicy],
    matched: dict[str, set[RefPacket]],
) -> Iterator[InstallDecision]:
    for vpn in VPNS:
        decisions = decide(groups, policies, vpn)
        scoped = [c for c in CONTEXTS if any(p.group_vpn == vpn for p in _in_context(policies, c))]
        assert sorted({d.context for d in decisions}) == sorted(scoped)
        assert len(decisions) == len(scoped) * len(groups)
        for decision in decisions:
            ordered = _in_context(policies, decision.context)
            expected = model_decide(decision.group_policy, ordered, vpn, matched)
            assert decision.installed == expected.installed, decision
            if decision.installed:
                assert decision.scope_policy == expected.first_covering
                assert decision.partially_shadowed_by == expected.partial
                # Without partial shadows, every packet reaches the scope policy first or
                # passes only through other scope policies on the way (which hand it on
                # when none of their dynamic policies matches).
                if not decision.partially_shadowed_by:
                    for packet in model_packets(decision.group_policy):
                        first = next(
                            p
                            for p in ordered
                            if packet in matched[p.name]
                            and (p.group_vpn is None or p.name == decision.scope_policy)
                        )
                        assert first.name == decision.scope_policy
            elif expected.first_covering is not None:
                assert decision.reason == f"shadowed by policy {expected.first_covering}"
            else:
                assert decision.reason.startswith("outside scope policy ")
            yield decision


@settings(max_examples=200, deadline=None)
@given(groups=group_policy_lists, policies=security_policies())
def test_decide_agrees_with_the_brute_force_model(
    groups: list[GroupPolicy], policies: list[SecurityPolicy]
) -> None:
    for _ in _checked_decisions(groups, policies, _matched(policies)):
        pass


@settings(max_examples=100, deadline=None)
@given(
    groups=group_policy_lists,
    policies=security_policies(),
    sample=st.randoms(use_true_random=False),
)
def test_lookup_agrees_with_a_linear_scan(
    groups: list[GroupPolicy], policies: list[SecurityPolicy], sample: Random
) -> None:
    matched = _matched(policies)
    decisions = [d for vpn in VPNS for d in decide(groups, policies, vpn)]
    dynamic = dynamic_policies(decisions, policies)
    table = PolicyLookup(policies, dynamic)
    # A sample of the universe keeps each example cheap, so a failure shrinks quickly.
    packets = sample.sample(range(len(UNIVERSE)), 300)
    for context in CONTEXTS:
        ordered = _in_context(policies, context)
        for number in packets:
            packet = UNIVERSE[number]
            expected = model_lookup(ordered, dynamic, matched, packet)
            match = table.lookup(*context, CONCRETE[number])
            assert match.rule == expected, (context, packet)
            if expected is None:
                assert match.action == "deny"
            elif isinstance(expected, DynamicPolicy):
                assert (match.action, match.vpn) == ("permit", expected.vpn)
            else:
                assert match.action == expected.action
