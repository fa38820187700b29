"""Ordered security policy lookup with dynamic policies, as Junos does it.

Within a (from-zone, to-zone) context the policies are tried top to bottom:

* an ordinary policy that matches decides: its action is the result;
* a scope policy that matches sends the search into its dynamic policies, in
  order; the first that matches decides (permit, through the group VPN).  If
  none matches, "the search process continues to search the policies below the
  scope policy";
* if nothing matches, the packet is denied (Junos' default policy).

``PolicyLookup`` compiles the policies once into integer masks and ranges per
context, because the data plane calls it for every packet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network

from groupvpn.policy.dynamic import DynamicPolicy
from groupvpn.policy.security import Action, Context, SecurityPolicy
from groupvpn.policy.selectors import Application, Packet


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome of a lookup: the rule that decided and its action.

    ``rule`` is ``None`` for the default deny.
    """

    rule: SecurityPolicy | DynamicPolicy | None
    action: Action

    @property
    def vpn(self) -> str | None:
        """The group VPN that protects the packet, if a dynamic policy matched."""
        return self.rule.vpn if isinstance(self.rule, DynamicPolicy) else None


DEFAULT_DENY = Match(None, "deny")

# Compiled forms.  An address block is (network, netmask) as integers; ``None``
# for a whole field means any.
_Blocks = tuple[tuple[int, int], ...] | None
# (protocol or -1 for any, source low, source high, destination low, destination high)
_AppBounds = tuple[tuple[int, int, int, int, int], ...] | None
# (source network, mask, destination network, mask, protocol, source port,
# destination port) of a group policy; 0 = any for the last three.
_DynamicSelector = tuple[int, int, int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class _CompiledPolicy:
    policy: SecurityPolicy
    sources: _Blocks
    destinations: _Blocks
    applications: _AppBounds
    dynamic: tuple[tuple[_DynamicSelector, DynamicPolicy], ...]


def _blocks(networks: tuple[IPv4Network, ...]) -> _Blocks:
    if not networks:
        return None
    return tuple((int(n.network_address), int(n.netmask)) for n in networks)


def _app_bounds(apps: tuple[Application, ...]) -> _AppBounds:
    if not apps:
        return None
    return tuple(
        (
            -1 if app.protocol is None else app.protocol,
            app.source_ports.low,
            app.source_ports.high,
            app.destination_ports.low,
            app.destination_ports.high,
        )
        for app in apps
    )


def _dynamic_selector(dynamic: DynamicPolicy) -> _DynamicSelector:
    gp = dynamic.group_policy
    return (
        int(gp.source.network_address),
        int(gp.source.netmask),
        int(gp.destination.network_address),
        int(gp.destination.netmask),
        gp.protocol,
        gp.source_port,
        gp.destination_port,
    )


def _in_blocks(blocks: _Blocks, address: int) -> bool:
    return blocks is None or any(address & mask == network for network, mask in blocks)


class PolicyLookup:
    """Policies and dynamic policies compiled for repeated lookups."""

    def __init__(
        self, policies: Sequence[SecurityPolicy], dynamic: Iterable[DynamicPolicy] = ()
    ) -> None:
        by_scope: dict[tuple[Context, str], list[DynamicPolicy]] = {}
        for entry in dynamic:
            by_scope.setdefault((entry.context, entry.scope_policy), []).append(entry)
        contexts: dict[Context, list[_CompiledPolicy]] = {}
        for policy in policies:
            attached = (
                by_scope.pop((policy.context, policy.name), []) if policy.is_scope_policy else []
            )
            contexts.setdefault(policy.context, []).append(
                _CompiledPolicy(
                    policy,
                    _blocks(policy.sources),
                    _blocks(policy.destinations),
                    _app_bounds(policy.applications),
                    tuple((_dynamic_selector(d), d) for d in attached),
                )
            )
        if by_scope:
            (from_zone, to_zone), scope = next(iter(by_scope))
            raise ValueError(
                f"dynamic policy under {scope} in {from_zone} -> {to_zone}: "
                "no scope policy of that name in that context"
            )
        self._contexts = {context: tuple(compiled) for context, compiled in contexts.items()}

    def lookup(self, from_zone: str, to_zone: str, packet: Packet) -> Match:
        source = int(packet.source)
        destination = int(packet.destination)
        protocol = packet.protocol
        source_port = packet.source_port
        destination_port = packet.destination_port
        for compiled in self._contexts.get((from_zone, to_zone), ()):
            if not (
                _in_blocks(compiled.sources, source)
                and _in_blocks(compiled.destinations, destination)
            ):
                continue
            apps = compiled.applications
            if apps is not None and not any(
                app_protocol in (-1, protocol)
                and source_low <= source_port <= source_high
                and destination_low <= destination_port <= destination_high
                for app_protocol, source_low, source_high, destination_low, destination_high in apps
            ):
                continue
            if not compiled.policy.is_scope_policy:
                return Match(compiled.policy, compiled.policy.action)
            for selector, entry in compiled.dynamic:
                src_net, src_mask, dst_net, dst_mask, gp_protocol, gp_sport, gp_dport = selector
                if (
                    source & src_mask == src_net
                    and destination & dst_mask == dst_net
                    and gp_protocol in (0, protocol)
                    and gp_sport in (0, source_port)
                    and gp_dport in (0, destination_port)
                ):
                    return Match(entry, "permit")
            # No dynamic policy under this scope policy: keep searching below it.
        return DEFAULT_DENY


def lookup(
    policies: Sequence[SecurityPolicy],
    dynamic: Iterable[DynamicPolicy],
    from_zone: str,
    to_zone: str,
    packet: Packet,
) -> Match:
    """One-off lookup; build a ``PolicyLookup`` once when looking up many packets."""
    return PolicyLookup(policies, dynamic).lookup(from_zone, to_zone, packet)
