"""Who gets which copy of a GROUPKEY-PUSH, and when: unicast fan-out with ACKs, multicast.

Pure state, no I/O and no clock: the key server core builds and signs one
push per SEQ (rekey or heartbeat), hands the SEQ here, and sends the one
datagram of that SEQ to every destination :meth:`transmissions` names.

Unicast (spec, "Types of Rekey Messages"): every member gets a copy of each
rekey and must ACK that SEQ.  A member that has not ACKed gets the same copy
again every ``retransmission_period`` seconds, counted from when its previous
copy actually went out, up to ``number_of_retransmission`` times.  One more
period after its last copy a member that still has not ACKed is inactive: it
is removed (a :class:`MemberRemoved` event; the core deletes its record) and
gets nothing more.  An ACK counts only if it arrives strictly before that
removal deadline, whatever order the shell delivers the ACK and the timer in.

Decisions the spec leaves open, with the reasons:

- **A newer push supersedes an older one, per member.**  Members accept a
  push only with a SEQ above the last they took, so a copy of SEQ 5 sent
  after SEQ 6 would be dropped as a replay.  Every rekey carries the group's
  whole current key state, so SEQ 6 holds all SEQ 5 did: a new rekey stops
  the retransmissions of the previous one and gets its own 1 + N copies.
  A late ACK of SEQ 5 then changes nothing (:attr:`AckResult.STALE`): it shows
  the member was alive, not that it has the keys it must have now.
- **Heartbeats** (one copy per member, no ACK, no retransmission, no removal)
  skip a member still owing the ACK of a rekey: the heartbeat's higher SEQ
  would make the pending retransmissions useless, and the rekey copies tell
  that member the server is alive anyway.
- **A member that registers** while a push is in flight is not added to it: its
  GROUPKEY-PULL already gave it the keys and SEQ the push carries.  Registering
  again clears what it owed, for the same reason.  (Unless its pull carried an
  older SEQ than a rekey still in flight: see :meth:`UnicastDelivery.add_member`.)
- **Completion**: a :class:`PushCompleted` event says when a push needs nothing
  more (every ACK in, member removed or superseded; every heartbeat copy out),
  so the shell knows when to drop the datagram it built for that SEQ.
- **Pacing**: a call returns at most ``burst`` datagrams, and after a call that
  returned any, the next copies wait ``burst_interval`` (500 per 10 ms by
  default), so 8,000 copies leave in 16 bursts while the shell drains its
  socket in between.  Retransmissions are paced the same way; removals are not.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from groupvpn.ike.timers import DeadlineHeap


class PushKind(StrEnum):
    REKEY = "rekey"
    HEARTBEAT = "heartbeat"


class DeliveryState(StrEnum):
    """A member's state as `show security group-vpn server registered-members` gives it."""

    #: Nothing outstanding: it ACKed the last rekey sent to it (or none was sent).
    ACTIVE = "active"
    #: Its copy of a rekey is queued or sent and not yet ACKed, no retransmission yet.
    WAITING_FOR_ACK = "waiting-for-ack"
    #: At least one retransmission of the pending rekey went out.
    RETRANSMITTING = "retransmitting"
    #: No ACK after the last retransmission: no longer a member.
    REMOVED = "removed"
    #: Multicast: registered after the configuration; nothing says whether it is alive.
    REGISTERED = "registered"


class AckResult(StrEnum):
    ACCEPTED = "accepted"
    #: The SEQ it last ACKed, again (a retransmission crossed its first ACK).
    DUPLICATE = "duplicate"
    #: An older rekey than the one it owes or last ACKed; it changes nothing.
    STALE = "stale"
    #: The right SEQ, at or after the removal deadline: the member is being removed.
    TOO_LATE = "too-late"
    #: A SEQ this member was never asked to ACK (a heartbeat's, a future one, an unsent copy).
    UNEXPECTED = "unexpected"
    NOT_A_MEMBER = "not-a-member"


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    #: `number-of-retransmission` (Junos 0-60, default 2): copies after the first.
    number_of_retransmission: int = 2
    #: `retransmission-period` (Junos 2-60 s, default 10).
    retransmission_period: float = 10.0
    #: At most this many datagrams per call of :meth:`UnicastDelivery.transmissions` ...
    burst: int = 500
    #: ... and this many seconds between calls that return datagrams.
    burst_interval: float = 0.01

    def __post_init__(self) -> None:
        if self.number_of_retransmission < 0:
            raise ValueError("number_of_retransmission must be >= 0")
        if self.retransmission_period <= 0 or self.burst_interval <= 0:
            raise ValueError("retransmission_period and burst_interval must be > 0")
        if self.burst < 1:
            raise ValueError("burst must be >= 1")


@dataclass(frozen=True, slots=True)
class Transmission:
    """Send the push of ``seq`` to ``destination`` (a member, or the multicast group)."""

    seq: int
    kind: PushKind
    destination: str
    #: 1 for the first copy, 2 .. 1 + N for retransmissions.
    copy: int


@dataclass(frozen=True, slots=True)
class MemberDeliveryStatus:
    address: str
    state: DeliveryState
    #: The rekey it owes an ACK for, if any.
    pending_seq: int | None
    #: Retransmissions of ``pending_seq`` sent so far, and the most there will be.
    retransmissions: int
    retransmission_limit: int
    #: The last rekey it ACKed in time, and when.
    last_acked_seq: int | None
    last_ack_at: float | None

    @property
    def state_text(self) -> str:
        """`retransmitting (1/2)`, or the state's name."""
        if self.state is DeliveryState.RETRANSMITTING:
            return f"{self.state} ({self.retransmissions}/{self.retransmission_limit})"
        return str(self.state)


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    """A unicast member did not ACK ``seq`` after ``copies`` copies: delete it, log it."""

    group: str
    address: str
    seq: int
    copies: int
    #: The removal deadline (last copy + retransmission period), not when it was noticed.
    at: float


@dataclass(frozen=True, slots=True)
class PushCompleted:
    """Push ``seq`` needs nothing more: the shell may forget its datagram.

    For a rekey no member owes its ACK any more; for a heartbeat every copy
    has left.  Every member the push was fanned out to is counted once.
    """

    group: str
    seq: int
    kind: PushKind
    started_at: float
    completed_at: float
    #: Rekey: members that ACKed in time.
    acked: int
    #: Rekey: members removed for not ACKing.
    removed: int
    #: Members it no longer concerned: a newer push, a new registration, deleted by the core.
    withdrawn: int
    #: Heartbeat (or multicast): copies sent, no ACK expected.
    sent: int = 0


DeliveryEvent = MemberRemoved | PushCompleted


class PushDelivery(Protocol):
    """What the server core drives, for either communication type."""

    def add_member(self, address: str, now: float, sequence: int | None = None) -> None: ...
    def remove_member(self, address: str, now: float) -> None: ...
    def add_push(self, seq: int, kind: PushKind, now: float) -> None: ...
    def acked(self, address: str, seq: int, now: float) -> AckResult: ...
    def transmissions(self, now: float) -> list[Transmission]: ...
    def next_deadline(self) -> float | None: ...
    def events(self) -> list[DeliveryEvent]: ...
    def statuses(self) -> list[MemberDeliveryStatus]: ...


class _SendQueue:
    """Members whose next copy is due, earliest first, handed out a burst at a time.

    The deadlines live in the project's :class:`~groupvpn.ike.timers.DeadlineHeap`
    (one current deadline per address, stale entries skipped).  A paced caller
    takes at most a burst, so what is due but not yet handed out waits here in
    FIFO order, still cancellable: a member that ACKs or is superseded while it
    waits for its burst gets no copy.
    """

    def __init__(self) -> None:
        self._heap: DeadlineHeap[str] = DeadlineHeap()
        #: Due, waiting for a burst: address -> the time it was found due.
        self._ready: OrderedDict[str, float] = OrderedDict()

    def schedule(self, address: str, deadline: float) -> None:
        self._ready.pop(address, None)
        self._heap.schedule(address, deadline)

    def cancel(self, address: str) -> None:
        self._ready.pop(address, None)
        self._heap.cancel(address)

    def next_deadline(self) -> float | None:
        if self._ready:
            # Everything ready was due no later than the heap's next deadline.
            return next(iter(self._ready.values()))
        return self._heap.next_deadline()

    def pop_due(self, now: float, limit: int) -> list[str]:
        """At most ``limit`` addresses due by ``now``, earliest first; they are unscheduled."""
        for address in self._heap.pop_due(now):
            self._ready[address] = now
        ready = self._ready
        return [ready.popitem(last=False)[0] for _ in range(min(limit, len(ready)))]


@dataclass(slots=True)
class _Owed:
    """The one push a member still has to be sent or to ACK."""

    seq: int
    kind: PushKind
    copies: int = 0
    #: Set once the last copy is out: an ACK at or after this is too late.
    removal_at: float | None = None


@dataclass(slots=True)
class _Member:
    address: str
    owed: _Owed | None = None
    last_acked_seq: int | None = None
    last_ack_at: float | None = None
    #: The newest rekey fanned out to it since it became a member: it is never
    #: enrolled in one twice, so no membership gets more than 1 + N copies of a SEQ.
    newest_rekey: int | None = None


@dataclass(slots=True)
class _PushProgress:
    kind: PushKind
    started_at: float
    outstanding: int = 0
    acked: int = 0
    removed: int = 0
    withdrawn: int = 0
    sent: int = 0


class UnicastDelivery:
    def __init__(self, group: str, settings: DeliverySettings | None = None) -> None:
        self.group = group
        #: Applies to copies scheduled from now on; a new value may be set at any time.
        self.settings = settings or DeliverySettings()
        self._members: dict[str, _Member] = {}
        self._sends = _SendQueue()
        self._removals: DeadlineHeap[str] = DeadlineHeap()
        self._pushes: dict[int, _PushProgress] = {}
        self._last_seq: int | None = None
        self._quiet_until = float("-inf")
        self._events: list[DeliveryEvent] = []

    # -- membership ------------------------------------------------------------------

    def add_member(self, address: str, now: float, sequence: int | None = None) -> None:
        """A member registered (again), its GROUPKEY-PULL carrying SEQ ``sequence``.

        It has the keys of that SEQ and owes nothing for older pushes.  A pull
        answered before a rekey and confirmed after it carries an older SEQ than
        that rekey: if the rekey is still in flight the member joins it (a first
        copy now, ACK and retransmissions as for everyone); if it is done, the
        member learns from the next heartbeat that it missed one and pulls again.
        """
        member = self._members.get(address)
        if member is None:
            member = self._members[address] = _Member(address)
        rekeys = [seq for seq, push in self._pushes.items() if push.kind is PushKind.REKEY]
        newest = max(rekeys, default=None)
        if sequence is None or newest is None or newest <= sequence:
            self._withdraw(member, now)
            return
        if member.newest_rekey is not None and member.newest_rekey >= newest:
            return  # it owes or has ACKed that rekey already: its copies go on as they were
        self._withdraw(member, now)  # a heartbeat not yet sent, at most
        self._pushes[newest].outstanding += 1
        member.owed = _Owed(newest, PushKind.REKEY)
        member.newest_rekey = newest
        self._sends.schedule(address, now)

    def remove_member(self, address: str, now: float) -> None:
        """The core deleted the member (e.g. `clear`): no more copies, no event."""
        member = self._members.pop(address, None)
        if member is not None:
            self._withdraw(member, now)

    # -- pushes and ACKs --------------------------------------------------------------

    def add_push(self, seq: int, kind: PushKind, now: float) -> None:
        """Fan the push of ``seq`` out to every current member, first copies due ``now``."""
        if self._last_seq is not None and seq <= self._last_seq:
            raise ValueError(f"SEQ {seq} after SEQ {self._last_seq}: SEQ must increase")
        self._last_seq = seq
        progress = self._pushes[seq] = _PushProgress(kind, now)
        for member in self._members.values():
            owed = member.owed
            if owed is not None and owed.kind is PushKind.REKEY and kind is PushKind.HEARTBEAT:
                continue  # a heartbeat would turn the pending retransmissions into replays
            self._withdraw(member, now)
            member.owed = _Owed(seq, kind)
            if kind is PushKind.REKEY:
                member.newest_rekey = seq
            self._sends.schedule(member.address, now)
            progress.outstanding += 1
        self._complete_if_done(seq, now)

    def acked(self, address: str, seq: int, now: float) -> AckResult:
        member = self._members.get(address)
        if member is None:
            return AckResult.NOT_A_MEMBER
        owed = member.owed
        if owed is not None and owed.kind is PushKind.REKEY and seq == owed.seq:
            if owed.copies == 0:
                return AckResult.UNEXPECTED  # nothing sent yet: not an answer to us
            if owed.removal_at is not None and now >= owed.removal_at:
                return AckResult.TOO_LATE
            self._sends.cancel(address)
            self._removals.cancel(address)
            member.owed = None
            member.last_acked_seq, member.last_ack_at = seq, now
            self._pushes[seq].acked += 1
            self._leave(seq, now)
            return AckResult.ACCEPTED
        if seq == member.last_acked_seq:
            return AckResult.DUPLICATE
        newest = max(
            owed.seq if owed is not None and owed.kind is PushKind.REKEY else -1,
            member.last_acked_seq if member.last_acked_seq is not None else -1,
        )
        return AckResult.STALE if seq < newest else AckResult.UNEXPECTED

    # -- the timer --------------------------------------------------------------------

    def transmissions(self, now: float) -> list[Transmission]:
        """Copies due by ``now``, at most ``burst``; removes members whose time is up."""
        self._remove_inactive(now)
        if now < self._quiet_until:
            return []
        due = self._sends.pop_due(now, self.settings.burst)
        sent = [self._send(self._members[address], now) for address in due]
        if sent:
            self._quiet_until = now + self.settings.burst_interval
        return sent

    def next_deadline(self) -> float | None:
        """When :meth:`transmissions` has something to do next."""
        times = []
        send = self._sends.next_deadline()
        if send is not None:
            times.append(max(send, self._quiet_until))
        removal = self._removals.next_deadline()
        if removal is not None:
            times.append(removal)
        return min(times, default=None)

    def events(self) -> list[DeliveryEvent]:
        events, self._events = self._events, []
        return events

    # -- show ---------------------------------------------------------------------------

    def statuses(self) -> list[MemberDeliveryStatus]:
        """Every current member, in registration order."""
        return [self._status(member) for member in self._members.values()]

    def status(self, address: str) -> MemberDeliveryStatus | None:
        member = self._members.get(address)
        return None if member is None else self._status(member)

    # -- internals ------------------------------------------------------------------------

    def _send(self, member: _Member, now: float) -> Transmission:
        owed = member.owed
        assert owed is not None  # only members that owe something are scheduled
        owed.copies += 1
        sent = Transmission(owed.seq, owed.kind, member.address, owed.copies)
        settings = self.settings
        if owed.kind is PushKind.HEARTBEAT:
            member.owed = None
            self._pushes[owed.seq].sent += 1
            self._leave(owed.seq, now)
        elif owed.copies <= settings.number_of_retransmission:
            self._sends.schedule(member.address, now + settings.retransmission_period)
        else:
            owed.removal_at = now + settings.retransmission_period
            self._removals.schedule(member.address, owed.removal_at)
        return sent

    def _remove_inactive(self, now: float) -> None:
        for address in self._removals.pop_due(now):
            member = self._members.pop(address)
            owed = member.owed
            assert owed is not None and owed.kind is PushKind.REKEY
            assert owed.removal_at is not None  # set with the removal deadline
            deadline = owed.removal_at
            self._events.append(
                MemberRemoved(self.group, member.address, owed.seq, owed.copies, deadline)
            )
            self._pushes[owed.seq].removed += 1
            self._leave(owed.seq, deadline)

    def _withdraw(self, member: _Member, now: float) -> None:
        """Forget what the member owes (superseded, registered again, or deleted)."""
        owed = member.owed
        if owed is None:
            return
        self._sends.cancel(member.address)
        self._removals.cancel(member.address)
        member.owed = None
        self._pushes[owed.seq].withdrawn += 1
        self._leave(owed.seq, now)

    def _leave(self, seq: int, now: float) -> None:
        self._pushes[seq].outstanding -= 1
        self._complete_if_done(seq, now)

    def _complete_if_done(self, seq: int, now: float) -> None:
        progress = self._pushes[seq]
        if progress.outstanding == 0:
            del self._pushes[seq]
            self._events.append(
                PushCompleted(self.group, seq, progress.kind, progress.started_at, now,
                              progress.acked, progress.removed, progress.withdrawn, progress.sent)
            )  # fmt: skip

    def _status(self, member: _Member) -> MemberDeliveryStatus:
        owed = member.owed
        pending = owed if owed is not None and owed.kind is PushKind.REKEY else None
        retransmissions = max(0, pending.copies - 1) if pending is not None else 0
        if pending is None:
            state = DeliveryState.ACTIVE
        elif retransmissions == 0:
            state = DeliveryState.WAITING_FOR_ACK
        else:
            state = DeliveryState.RETRANSMITTING
        return MemberDeliveryStatus(
            member.address,
            state,
            pending.seq if pending is not None else None,
            retransmissions,
            self.settings.number_of_retransmission,
            member.last_acked_seq,
            member.last_ack_at,
        )


class MulticastDelivery:
    """One copy of each push to the group address; no ACKs, no retransmissions, no removals.

    The member list is everyone who registered since the configuration was
    made; whether they still listen is unknown (state ``registered``).
    """

    def __init__(self, group: str, destination: str) -> None:
        self.group = group
        self.destination = destination
        self._members: dict[str, float] = {}
        self._queued: list[tuple[float, Transmission]] = []
        self._last_seq: int | None = None
        self._events: list[DeliveryEvent] = []

    def add_member(self, address: str, now: float, sequence: int | None = None) -> None:
        # A copy missed before registering is not sent again: no copy is ever repeated.
        self._members.setdefault(address, now)

    def remove_member(self, address: str, now: float) -> None:
        self._members.pop(address, None)

    def add_push(self, seq: int, kind: PushKind, now: float) -> None:
        if self._last_seq is not None and seq <= self._last_seq:
            raise ValueError(f"SEQ {seq} after SEQ {self._last_seq}: SEQ must increase")
        self._last_seq = seq
        self._queued.append((now, Transmission(seq, kind, self.destination, 1)))

    def acked(self, address: str, seq: int, now: float) -> AckResult:
        return AckResult.UNEXPECTED if address in self._members else AckResult.NOT_A_MEMBER

    def transmissions(self, now: float) -> list[Transmission]:
        due = [(queued_at, sent) for queued_at, sent in self._queued if queued_at <= now]
        self._queued = [entry for entry in self._queued if entry[0] > now]
        for queued_at, sent in due:
            self._events.append(
                PushCompleted(self.group, sent.seq, sent.kind, queued_at, now, 0, 0, 0, sent=1)
            )
        return [sent for _, sent in due]

    def next_deadline(self) -> float | None:
        return min((queued_at for queued_at, _ in self._queued), default=None)

    def events(self) -> list[DeliveryEvent]:
        events, self._events = self._events, []
        return events

    def statuses(self) -> list[MemberDeliveryStatus]:
        return [
            MemberDeliveryStatus(address, DeliveryState.REGISTERED, None, 0, 0, None, None)
            for address in self._members
        ]
