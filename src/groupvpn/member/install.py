"""Which downloaded group SAs a member installs, as dynamic policies under its scope policies.

"The key associated with an SA is accepted by a group member only if there is
a matching scope policy configured on the member.  An accepted key is installed
for the group VPN, whereas a rejected key is discarded."  The decision itself
is :mod:`groupvpn.policy`; this module maps group SAs onto it and produces the
`show security dynamic-policies` view, rejected keys included with reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network
from typing import Any, Protocol, TypeVar

from groupvpn.policy import GroupPolicy, SecurityPolicy, decide, dynamic_policies

JsonDict = dict[str, Any]


class Selected(Protocol):
    """What the install rule looks at: an SA TEK's SPI and selectors (a GroupSa, say)."""

    @property
    def spi(self) -> bytes: ...
    @property
    def source(self) -> IPv4Network: ...
    @property
    def destination(self) -> IPv4Network: ...
    @property
    def source_port(self) -> int: ...
    @property
    def destination_port(self) -> int: ...
    @property
    def protocol(self) -> int: ...


S = TypeVar("S", bound=Selected)


class PolicyFilter(Protocol):
    """Given one VPN's group SAs: the ones to install, and the dynamic-policy view."""

    def __call__(self, vpn: str, sas: list[S]) -> tuple[list[S], list[JsonDict]]: ...


def install_all(vpn: str, sas: list[S]) -> tuple[list[S], list[JsonDict]]:
    """No scope policies known: install every group SA, report no dynamic policies."""
    return list(sas), []


def group_policy_of(sa: Selected) -> GroupPolicy:
    """The group policy an SA TEK describes, named by its SPI (unique in the group)."""
    return GroupPolicy(
        name=f"spi-{sa.spi.hex()}",
        source=sa.source,
        destination=sa.destination,
        source_port=sa.source_port,
        destination_port=sa.destination_port,
        protocol=sa.protocol,
    )


class ScopePolicyFilter:
    """Decides, per registration, which group SAs to keep (a PolicyFilter for the daemon)."""

    def __init__(self, policies: Sequence[SecurityPolicy]) -> None:
        self.policies = tuple(policies)

    def __call__(self, vpn: str, sas: list[S]) -> tuple[list[S], list[JsonDict]]:
        by_name = {group_policy_of(sa).name: sa for sa in sas}
        decisions = decide([group_policy_of(sa) for sa in sas], self.policies, vpn)
        installed = {d.group_policy.name for d in decisions if d.installed}
        view: list[JsonDict] = []
        for dynamic in dynamic_policies(decisions, self.policies):
            view.append(
                {
                    **_selectors(dynamic.group_policy),
                    "name": f"{vpn}-{dynamic.index}",
                    "sequence": dynamic.index,
                    "vpn": vpn,
                    "spi": by_name[dynamic.group_policy.name].spi.hex(),
                    "from-zone": dynamic.from_zone,
                    "to-zone": dynamic.to_zone,
                    "scope-policy": dynamic.scope_policy,
                    "installed": True,
                    "reason": "",
                }
            )
        for decision in decisions:
            if not decision.installed:
                view.append(
                    {
                        **_selectors(decision.group_policy),
                        "name": "",
                        "sequence": None,
                        "vpn": vpn,
                        "spi": by_name[decision.group_policy.name].spi.hex(),
                        "from-zone": decision.context[0],
                        "to-zone": decision.context[1],
                        "scope-policy": decision.scope_policy,
                        "installed": False,
                        "reason": decision.reason,
                    }
                )
        return [sa for sa in sas if group_policy_of(sa).name in installed], view


def _selectors(policy: GroupPolicy) -> JsonDict:
    return {
        "source": str(policy.source),
        "destination": str(policy.destination),
        "source-port": policy.source_port,
        "destination-port": policy.destination_port,
        "protocol": policy.protocol,
    }
