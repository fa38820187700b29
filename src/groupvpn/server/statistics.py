"""The key server's counters for `show security group-vpn server statistics` and /metrics.

They are fed by the events the cores already emit (the daemon hands each one to
:meth:`ServerStatistics.on_event`), so counting adds no hook to the protocol code
and the numbers agree with the log lines by construction.  Every label value
comes from a small fixed set (our reason enums, Notify names we chose to send,
configured group names), never from peer text, so a hostile peer cannot grow
the tables or the metrics without bound.

Counts start when the daemon starts and go back to zero on `clear security
group-vpn server statistics`; ``since`` says when that was.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from groupvpn.ike.events import IkeSaFailed
from groupvpn.server.core import MemberRegistered, RegistrationDropped, RegistrationRefused
from groupvpn.server.rekey_events import (
    AckDropped,
    AckReceived,
    HeartbeatSent,
    MemberInactive,
    RekeyCompleted,
    RekeyRetransmitted,
    RekeySent,
)
from groupvpn.wire.constants import notify_name

JsonDict = dict[str, Any]

#: Why a registration failed, when the event names no Notify we sent.
MALFORMED = "malformed"  # a GROUPKEY-PULL message that did not decode
PHASE1_FAILED = "phase1-failed"  # the IKE SA before GROUPKEY-PULL did not come up
#: Why a member left the group: it never ACKed a unicast rekey.
REMOVED_INACTIVE = "inactive"


@dataclass
class GroupCounters:
    """What happened in one group since the counters started."""

    registrations: int = 0
    #: Signed GROUPKEY-PUSH messages with new keys or deletes (one per SEQ).
    rekeys: int = 0
    #: Per reason; a rekey with two reasons counts under both.
    rekey_reasons: Counter[str] = field(default_factory=Counter)
    heartbeats: int = 0
    #: First copies of rekeys and heartbeats: one per member (unicast) or one (multicast).
    copies: int = 0
    retransmissions: int = 0
    #: Rekey ACKs that opened and verified, by what they meant (delivery.AckResult).
    acks: Counter[str] = field(default_factory=Counter)
    #: Unicast rekeys every member ACKed, was removed from, or moved on from.
    rekeys_completed: int = 0
    removed: Counter[str] = field(default_factory=Counter)


class ServerStatistics:
    """Counters of one key server daemon; ``now`` values are monotonic seconds."""

    def __init__(self, now: float) -> None:
        self.since = now
        self.groups: dict[str, GroupCounters] = {}
        #: Registrations refused or broken, by reason (not per group: a refused
        #: registration may name a group that does not exist).
        self.registration_failures: Counter[str] = Counter()
        #: Rekey ACKs that did not open (push_ack.AckRejection values).
        self.acks_dropped: Counter[str] = Counter()
        #: The IKE endpoints' own Phase 1 drop counts (by guard.Drop value) when the
        #: counters were last cleared: the endpoints count every drop, also the
        #: ones a flood keeps out of the log, and never reset theirs.
        self._phase1_drops_at_clear: Counter[str] = Counter()

    def clear(self, now: float, phase1_drops: Mapping[str, int]) -> None:
        """Every count back to zero (`clear security group-vpn server statistics`).

        ``phase1_drops``: the endpoints' drop counts now, which become the new zero.
        """
        self.since = now
        self.groups.clear()
        self.registration_failures.clear()
        self.acks_dropped.clear()
        self._phase1_drops_at_clear = Counter(phase1_drops)

    def phase1_drops(self, counted: Mapping[str, int]) -> dict[str, int]:
        """Phase 1 datagrams dropped since the counters started, by reason.

        A reload that closed an address takes its endpoint's counts with it, so a
        count can fall below its zero: it shows 0 then, never a negative.
        """
        since = Counter(counted)
        since.subtract(self._phase1_drops_at_clear)
        return {reason: max(0, count) for reason, count in sorted(since.items())}

    def group(self, name: str) -> GroupCounters:
        counters = self.groups.get(name)
        if counters is None:
            counters = self.groups[name] = GroupCounters()
        return counters

    def on_event(self, event: object) -> None:
        """Count one core event; events that are not counted are ignored."""
        if isinstance(event, MemberRegistered):
            self.group(event.member.group).registrations += 1
        elif isinstance(event, RegistrationRefused):
            reason = MALFORMED if event.notify is None else notify_name(event.notify).lower()
            self.registration_failures[reason] += 1
        elif isinstance(event, RegistrationDropped):
            self.registration_failures[MALFORMED] += 1
        elif isinstance(event, IkeSaFailed):
            if event.role == "responder":  # a member's phase 1 towards us
                self.registration_failures[PHASE1_FAILED] += 1
        elif isinstance(event, RekeySent):
            counters = self.group(event.group)
            counters.rekeys += 1
            counters.rekey_reasons.update(event.reasons)
            counters.copies += 1 if event.members is None else event.members
        elif isinstance(event, HeartbeatSent):
            counters = self.group(event.group)
            counters.heartbeats += 1
            counters.copies += 1 if event.members is None else event.members
        elif isinstance(event, RekeyRetransmitted):
            self.group(event.group).retransmissions += 1
        elif isinstance(event, AckReceived):
            self.group(event.group).acks[event.result] += 1
        elif isinstance(event, AckDropped):
            # Reported at a bounded rate: one event stands for itself and the
            # ones suppressed since the last report.
            self.acks_dropped[event.reason] += 1 + event.suppressed
        elif isinstance(event, MemberInactive):
            self.group(event.group).removed[REMOVED_INACTIVE] += 1
        elif isinstance(event, RekeyCompleted):
            self.group(event.group).rekeys_completed += 1

    def view(
        self,
        configured: Iterable[tuple[str, int]],
        members: dict[str, int],
        now: float,
        since_utc: str,
        phase1_drops: Mapping[str, int],
    ) -> JsonDict:
        """The JSON of `show security group-vpn server statistics` (docs/operations.md).

        ``configured``: (name, group-id) of each group now configured; a group
        that was removed by a reload but counted before is still shown, without
        a group-id.  ``members``: members registered now, per group name.
        ``phase1_drops``: the IKE endpoints' drop counts, by reason.
        """
        ids = dict(configured)
        names = list(ids) + sorted(set(self.groups) - set(ids))
        rows = [_group_view(name, ids.get(name), self.group(name), members.get(name, 0))
                for name in names]  # fmt: skip
        total = GroupCounters()
        for name in names:
            _add(total, self.group(name))
        totals = _group_view(None, None, total, sum(members.get(name, 0) for name in names))
        failures = dict(sorted(self.registration_failures.items()))
        totals["registrations-failed"] = sum(failures.values())
        return {
            "since": since_utc,
            "seconds": max(0, int(now - self.since)),
            "groups": rows,
            "total": totals,
            "registration-failures": failures,
            "acks-dropped": dict(sorted(self.acks_dropped.items())),
            "phase1-drops": self.phase1_drops(phase1_drops),
        }


def _group_view(
    name: str | None, group_id: int | None, counters: GroupCounters, members: int
) -> JsonDict:
    view: JsonDict = {} if name is None else {"group": name, "group-id": group_id}
    view.update(
        {
            "members": members,
            "registrations": counters.registrations,
            "rekeys-sent": counters.rekeys,
            "rekeys-by-reason": dict(sorted(counters.rekey_reasons.items())),
            "heartbeats-sent": counters.heartbeats,
            "push-copies-sent": counters.copies,
            "retransmissions": counters.retransmissions,
            "acks-received": sum(counters.acks.values()),
            "acks-by-result": dict(sorted(counters.acks.items())),
            "rekeys-completed": counters.rekeys_completed,
            "members-removed": sum(counters.removed.values()),
            "members-removed-by-reason": dict(sorted(counters.removed.items())),
        }
    )
    return view


def _add(total: GroupCounters, counters: GroupCounters) -> None:
    total.registrations += counters.registrations
    total.rekeys += counters.rekeys
    total.rekey_reasons.update(counters.rekey_reasons)
    total.heartbeats += counters.heartbeats
    total.copies += counters.copies
    total.retransmissions += counters.retransmissions
    total.acks.update(counters.acks)
    total.rekeys_completed += counters.rekeys_completed
    total.removed.update(counters.removed)
