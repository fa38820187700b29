"""Member-side policy: selectors, ordered security policy lookup, dynamic policies.

Pure logic.  The configuration layer maps Junos address books, applications and
`security policies` onto ``SecurityPolicy``; the member core maps downloaded SA
TEK selectors onto ``GroupPolicy``, asks ``decide`` which to install, and gives
the data plane a ``PolicyLookup``.
"""

from groupvpn.policy.dynamic import (
    DynamicPolicy,
    InstallDecision,
    accepted_group_policies,
    contexts_in_order,
    decide,
    dynamic_policies,
    explain,
    policies_in_context,
)
from groupvpn.policy.lookup import DEFAULT_DENY, Match, PolicyLookup, lookup
from groupvpn.policy.security import (
    Action,
    Context,
    SecurityPolicy,
    coverage_gap,
    covers,
    overlaps,
)
from groupvpn.policy.selectors import (
    ANY_APPLICATION,
    ANY_PORT,
    Application,
    GroupPolicy,
    Packet,
    PortRange,
)

__all__ = [
    "ANY_APPLICATION",
    "ANY_PORT",
    "DEFAULT_DENY",
    "Action",
    "Application",
    "Context",
    "DynamicPolicy",
    "GroupPolicy",
    "InstallDecision",
    "Match",
    "Packet",
    "PolicyLookup",
    "PortRange",
    "SecurityPolicy",
    "accepted_group_policies",
    "contexts_in_order",
    "coverage_gap",
    "covers",
    "decide",
    "dynamic_policies",
    "explain",
    "lookup",
    "overlaps",
    "policies_in_context",
]
