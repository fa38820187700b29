"""Which downloaded group policies a member installs, and where: dynamic policies.

The spec ("Understanding Dynamic Policies for Group VPNv1") gives two rules:

* a group policy is installed only under a scope policy whose addresses contain
  the group policy's addresses and whose ports and protocol match it;
* the scope policy sits in an ordered list of policies for one (from-zone,
  to-zone) context, and "if the incoming packet matches a security policy
  before the scope policy is considered, dynamic policy lookup does not occur".

We read them together as one rule per context: walk the context's policies in
order and take the first one that *covers* the group policy (every packet the
group policy describes would match it).  The group policy is installed in that
context if and only if that first covering policy is a scope policy for the
group policy's VPN.  Otherwise:

* an earlier covering policy (deny, reject, an ordinary permit, or a scope
  policy for another VPN) *shadows* it: "shadowed by policy deny2";
* if nothing covers it, the reason names the first scope policy for the VPN in
  the context and the first field outside it:
  "outside scope policy scope1 (destination 239.1.1.1/32 not within 10.0.0.0/8)".

Policies that catch only *some* of the group policy's packets do not stop the
installation: packets they catch stop there (lookup order guarantees it), the
rest reach the dynamic policy.  Earlier non-scope policies that do overlap are
listed in ``InstallDecision.partially_shadowed_by`` so an operator can see why
part of the traffic never reaches the group VPN.  Earlier scope policies that
overlap are not listed: a packet that finds no dynamic policy under them
continues down the list.  A covering scope policy for another VPN still counts
as a shadow, so the decision for one VPN never depends on another VPN's keys.

The spec's worked example is inconsistent about p2 (defined as
10.2.0.0/16 -> 10.1.0.0/16, later described as "for traffic from 10.1.0.0/16 to
10.2.0.0/16"); docs/dynamic-policies.md works it through under this rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from groupvpn.policy.security import Context, SecurityPolicy, coverage_gap, overlaps
from groupvpn.policy.selectors import GroupPolicy


@dataclass(frozen=True, slots=True)
class DynamicPolicy:
    """A group policy installed under a scope policy in one context."""

    group_policy: GroupPolicy
    vpn: str
    from_zone: str
    to_zone: str
    scope_policy: str
    #: The scope policy's position in its context's ordered list (0 = first).
    scope_position: int
    #: 1-based position in the list ``dynamic_policies`` returned, for display.
    index: int

    @property
    def context(self) -> Context:
        return (self.from_zone, self.to_zone)


@dataclass(frozen=True, slots=True)
class InstallDecision:
    """Whether one group policy is installed in one context, and why."""

    group_policy: GroupPolicy
    vpn: str
    context: Context
    installed: bool
    #: The scope policy it is installed under, or (when not installed) the one
    #: the reason says it falls outside of; ``None`` when shadowed or absent.
    scope_policy: str | None
    reason: str
    #: Earlier non-scope policies that take some of its packets first.
    partially_shadowed_by: tuple[str, ...] = ()


def contexts_in_order(policies: Iterable[SecurityPolicy]) -> list[Context]:
    """Every context, in the order its first policy appears (configuration order)."""
    return list(dict.fromkeys(policy.context for policy in policies))


def policies_in_context(
    policies: Iterable[SecurityPolicy], from_zone: str, to_zone: str
) -> list[SecurityPolicy]:
    return [p for p in policies if p.from_zone == from_zone and p.to_zone == to_zone]


def explain(
    group_policy: GroupPolicy,
    policies: Sequence[SecurityPolicy],
    vpn: str,
    from_zone: str,
    to_zone: str,
) -> InstallDecision:
    """Decide one group policy in one context (any context, even one without scope policy)."""
    context = (from_zone, to_zone)
    ordered = policies_in_context(policies, from_zone, to_zone)

    def decision(
        installed: bool, scope: str | None, reason: str, partial: Sequence[str] = ()
    ) -> InstallDecision:
        return InstallDecision(group_policy, vpn, context, installed, scope, reason, tuple(partial))

    partial: list[str] = []
    first_scope_gap: tuple[str, str] | None = None
    for policy in ordered:
        gap = coverage_gap(policy, group_policy)
        if gap is None:
            if not policy.is_scope_policy_for(vpn):
                return decision(False, None, f"shadowed by policy {policy.name}")
            reason = f"within scope policy {policy.name}"
            if partial:
                reason += f" (partly shadowed by policy {', '.join(partial)})"
            return decision(True, policy.name, reason, partial)
        if policy.is_scope_policy_for(vpn):
            if first_scope_gap is None:
                first_scope_gap = (policy.name, gap)
        elif not policy.is_scope_policy and overlaps(policy, group_policy):
            partial.append(policy.name)
    if first_scope_gap is None:
        return decision(False, None, f"no scope policy for VPN {vpn} in this context")
    name, gap = first_scope_gap
    return decision(False, name, f"outside scope policy {name} ({gap})")


def decide(
    group_policies: Sequence[GroupPolicy], policies: Sequence[SecurityPolicy], vpn: str
) -> list[InstallDecision]:
    """One decision per group policy for every context that has a scope policy for ``vpn``.

    Ordered by context (configuration order), then group-policy order.
    """
    scoped = {p.context for p in policies if p.is_scope_policy_for(vpn)}
    return [
        explain(group_policy, policies, vpn, from_zone, to_zone)
        for from_zone, to_zone in contexts_in_order(policies)
        if (from_zone, to_zone) in scoped
        for group_policy in group_policies
    ]


def dynamic_policies(
    decisions: Iterable[InstallDecision], policies: Sequence[SecurityPolicy]
) -> list[DynamicPolicy]:
    """The installed decisions as dynamic policies, in lookup order.

    Decisions for several VPNs may be mixed.  The order is: context (as
    configured), then the scope policy's position in it, then the order of the
    decisions (the group-policy order ``decide`` produces); ``index`` numbers the
    result from 1.
    """
    context_rank = {context: rank for rank, context in enumerate(contexts_in_order(policies))}
    positions: dict[tuple[Context, str], int] = {}
    for context in context_rank:
        for position, policy in enumerate(policies_in_context(policies, *context)):
            positions.setdefault((context, policy.name), position)
    installed = []
    for order, decision in enumerate(decisions):
        if not decision.installed:
            continue
        scope = decision.scope_policy
        assert scope is not None  # an installed decision always names its scope policy
        key = (decision.context, scope)
        if key not in positions:
            raise ValueError(
                f"group policy {decision.group_policy.name} was installed under "
                f"{scope}, which is not a policy in "
                f"{decision.context[0]} -> {decision.context[1]}"
            )
        installed.append((context_rank[decision.context], positions[key], order, scope, decision))
    installed.sort(key=lambda entry: entry[:3])
    return [
        DynamicPolicy(
            group_policy=decision.group_policy,
            vpn=decision.vpn,
            from_zone=decision.context[0],
            to_zone=decision.context[1],
            scope_policy=scope,
            scope_position=position,
            index=index,
        )
        for index, (_, position, _, scope, decision) in enumerate(installed, start=1)
    ]


def accepted_group_policies(decisions: Iterable[InstallDecision]) -> set[str]:
    """Names of the group policies installed in at least one context.

    "An accepted key is installed for the group VPN, whereas a rejected key is
    discarded": the member core keeps TEKs only for these.
    """
    return {decision.group_policy.name for decision in decisions if decision.installed}
