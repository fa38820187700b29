"""What a configuration reload changes in the key server's groups.

The server compares the groups it runs with the groups of the new
configuration, group by group (matched by group-id), and says in operator
words what changed.  A change of group policies (added, deleted, changed) or of
membership (an IKE gateway removed from the group, the KEK policy) means the
members hold keys or policies that are no longer right: the group needs a
rekey (issue 4, point 7), and the change says which kind: a policy change
renews the keys of the changed policies, a KEK change every TEK and the KEK
(``server.rekey.RENEWED_BY_REQUEST``), and a removed gateway evicts its members
(``server.rekeying``).  Other changes take effect at the
next registration, or (timers of `server-member-communication`) at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from groupvpn.server.rekey import RekeyReason

if TYPE_CHECKING:  # groups.py imports this module
    from groupvpn.server.groups import GroupDefinition


@dataclass(frozen=True, slots=True)
class GroupChange:
    group: str
    group_id: int
    kind: str  # "added", "removed" or "changed"
    details: tuple[str, ...]
    #: The members must get new keys or policies: push a rekey.
    needs_rekey: bool
    #: Why, for the rekey: a policy change and/or a membership change.
    reasons: tuple[RekeyReason, ...] = ()


def diff_groups(
    running: Mapping[int, GroupDefinition], wanted: Mapping[int, GroupDefinition]
) -> list[GroupChange]:
    """Every group that is added, removed or changed, in group-id order."""
    changes = []
    for group_id in sorted(running.keys() | wanted.keys()):
        old, new = running.get(group_id), wanted.get(group_id)
        if old is None and new is not None:
            changes.append(GroupChange(new.name, group_id, "added", (), False))
        elif new is None and old is not None:
            changes.append(GroupChange(old.name, group_id, "removed", (), False))
        elif old is not None and new is not None and old != new:
            details, reasons = _group_details(old, new)
            changes.append(
                GroupChange(new.name, group_id, "changed", details, bool(reasons), reasons)
            )
    return changes


def _group_details(
    old: GroupDefinition, new: GroupDefinition
) -> tuple[tuple[str, ...], tuple[RekeyReason, ...]]:
    details: list[str] = []
    old_policies = {policy.name: policy for policy in old.policies}
    new_policies = {policy.name: policy for policy in new.policies}
    for name in sorted(new_policies.keys() - old_policies.keys()):
        details.append(f"policy {name} added")
    for name in sorted(old_policies.keys() - new_policies.keys()):
        details.append(f"policy {name} deleted")
    for name in sorted(old_policies.keys() & new_policies.keys()):
        if old_policies[name] != new_policies[name]:
            details.append(f"policy {name} changed")
    policies_changed = bool(details)
    removed_gateways = old.gateways - new.gateways
    for gateway in sorted(new.gateways - old.gateways):
        details.append(f"ike-gateway {gateway} added")
    for gateway in sorted(removed_gateways):
        details.append(f"ike-gateway {gateway} removed")
    if old.kek != new.kek:
        details.append("server-member-communication changed")
    if old.delivery != new.delivery:
        details.append(
            f"retransmissions {old.delivery.number_of_retransmission}x"
            f"{old.delivery.retransmission_period:g}s -> "
            f"{new.delivery.number_of_retransmission}x{new.delivery.retransmission_period:g}s"
        )
    if old.multicast_interface_address != new.multicast_interface_address:
        details.append(f"multicast-outgoing-interface -> {new.multicast_interface or 'none'}")
    if old.activation_time_delay != new.activation_time_delay:
        details.append(
            f"activation-time-delay {old.activation_time_delay} -> {new.activation_time_delay}"
        )
    if old.anti_replay_time_window != new.anti_replay_time_window:
        details.append(
            f"anti-replay-time-window {_window(old.anti_replay_time_window)} -> "
            f"{_window(new.anti_replay_time_window)} (from the next keys on)"
        )
    if old.server_address != new.server_address:
        details.append("server-address changed")
    if old.name != new.name:
        details.append(f"renamed from {old.name}")
    reasons: list[RekeyReason] = []
    if policies_changed:
        reasons.append(RekeyReason.POLICY_CHANGE)
    # New KEK attributes (cipher, heartbeat, communication type, ...) reach members
    # only with a new KEK: every TEK and the KEK are renewed.  A member whose gateway
    # left must lose the keys: it is evicted (server.rekeying).
    if old.kek != new.kek:
        reasons.append(RekeyReason.MEMBERSHIP_CHANGE)
    if removed_gateways:
        reasons.append(RekeyReason.MEMBER_REMOVAL)
    return tuple(details), tuple(reasons)


def _window(seconds: int | None) -> str:
    return "off" if seconds is None else f"{seconds}s"
