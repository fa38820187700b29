"""Unicast rekey delivery under random loss and ACK timing, driven like the asyncio shell.

Each member answers every copy it receives, unless the copy or its ACK is lost,
after a random delay.  Whatever happens: a member is removed iff none of its
ACKs arrived before its removal deadline (its last allowed copy + the
retransmission period), nobody gets more than 1 + N copies of a SEQ, no call
sends more than a burst, and a member never gets a lower SEQ after a higher one.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.server.delivery import (
    AckResult,
    DeliverySettings,
    MemberRemoved,
    PushCompleted,
    PushKind,
    Transmission,
    UnicastDelivery,
)

#: Per copy: None (the copy or its ACK is lost) or the ACK's delay in quarter seconds.
ACK_PLANS = st.lists(st.one_of(st.none(), st.integers(0, 100)), min_size=8, max_size=8)
DELIVERY_SETTINGS = st.builds(
    DeliverySettings,
    number_of_retransmission=st.integers(0, 4),
    retransmission_period=st.integers(2, 20).map(float),
    burst=st.integers(1, 6),
    burst_interval=st.sampled_from([0.25, 0.5, 1.0]),
)


@dataclass
class Harness:
    """The shell: a fake clock, the delivery, and members that ACK after a delay."""

    delivery: UnicastDelivery
    plans: dict[str, list[int | None]]
    now: float = 0.0
    acks: list[tuple[float, int, str, int]] = field(default_factory=list)
    #: Copies and SEQs received, per membership: a removed member that registers
    #: again is a new member (``address#2``).
    copies: dict[tuple[str, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    received: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    memberships: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: Each removal with the copies that membership had of the SEQ it did not ACK.
    removals: list[tuple[MemberRemoved, list[float]]] = field(default_factory=list)
    results: dict[str, list[tuple[float, int, AckResult]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    events: list[object] = field(default_factory=list)
    bursts: list[int] = field(default_factory=list)
    _order: int = 0

    def run_until(self, until: float | None = None) -> None:
        while True:
            times = [t for t in (self.delivery.next_deadline(),) if t is not None]
            if self.acks:
                times.append(self.acks[0][0])
            if not times or (until is not None and min(times) > until):
                self.now = until if until is not None else self.now
                # Registrations and pushes also end rekeys (withdrawn copies).
                self.drain_events()
                return
            self.now = min(times)
            self.step()

    def step(self) -> None:
        # ACKs first at equal times: an ACK at a retransmission's deadline saves it.
        while self.acks and self.acks[0][0] <= self.now:
            at, _, member, seq = heapq.heappop(self.acks)
            self.results[member].append((at, seq, self.delivery.acked(member, seq, at)))
        batch = self.delivery.transmissions(self.now)
        self.bursts.append(len(batch))
        for sent in batch:
            self.receive(sent)
        self.drain_events()

    def membership(self, address: str) -> str:
        number = self.memberships[address]
        return address if number == 0 else f"{address}#{number + 1}"

    def drain_events(self) -> None:
        for event in self.delivery.events():
            self.events.append(event)
            if isinstance(event, MemberRemoved):
                copies = self.copies[self.membership(event.address), event.seq]
                self.removals.append((event, copies))
                self.memberships[event.address] += 1

    def receive(self, sent: Transmission) -> None:
        copies = self.copies[self.membership(sent.destination), sent.seq]
        copies.append(self.now)
        self.received[self.membership(sent.destination)].append(sent.seq)
        if sent.kind is not PushKind.REKEY:
            return
        plan = self.plans[sent.destination]
        delay = plan[(len(copies) - 1) % len(plan)]
        if delay is not None:
            self._order += 1
            ack = (self.now + delay / 4, self._order, sent.destination, sent.seq)
            heapq.heappush(self.acks, ack)


@settings(max_examples=300, deadline=None)
@given(DELIVERY_SETTINGS, st.lists(ACK_PLANS, min_size=1, max_size=12))
def test_a_member_is_removed_iff_no_ack_arrived_before_its_deadline(
    delivery_settings: DeliverySettings, plans: list[list[int | None]]
):
    members = [f"10.0.0.{n}" for n in range(len(plans))]
    delivery = UnicastDelivery("g", delivery_settings)
    for member in members:
        delivery.add_member(member, 0.0)
    harness = Harness(delivery, dict(zip(members, plans, strict=True)))
    delivery.add_push(1, PushKind.REKEY, 0.0)
    harness.run_until()

    limit = 1 + delivery_settings.number_of_retransmission
    period = delivery_settings.retransmission_period
    removed = {e.address: e for e in harness.events if isinstance(e, MemberRemoved)}
    for member in members:
        copies = harness.copies[member, 1]
        assert 1 <= len(copies) <= limit
        assert all(later - earlier >= period for earlier, later in itertools.pairwise(copies))
        ack_times = [at for at, _, _ in harness.results[member]]
        accepted = [r for r in harness.results[member] if r[2] is AckResult.ACCEPTED]
        # The model: its removal deadline exists only once every allowed copy left.
        deadline = copies[-1] + period if len(copies) == limit else float("inf")
        in_time = [at for at in ack_times if at < deadline]
        if in_time:
            assert member not in removed
            assert [at for at, _, _ in accepted] == [min(in_time)]
            status = delivery.status(member)
            assert status is not None and status.last_ack_at == min(in_time)
        else:
            assert len(copies) == limit
            assert removed[member] == MemberRemoved("g", member, 1, limit, deadline)
            assert delivery.status(member) is None
            assert accepted == []
    assert all(count <= delivery_settings.burst for count in harness.bursts)
    completed = [e for e in harness.events if isinstance(e, PushCompleted)]
    assert len(completed) == 1
    assert (completed[0].acked, completed[0].removed) == (len(members) - len(removed), len(removed))


# -- several pushes: rekeys, heartbeats and registrations at random times ------------------

PUSHES = st.lists(
    st.tuples(st.integers(0, 200).map(lambda q: q / 4), st.sampled_from(PushKind)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(
    DELIVERY_SETTINGS,
    st.lists(ACK_PLANS, min_size=1, max_size=8),
    PUSHES,
    st.lists(
        st.tuples(
            st.integers(0, 7),
            st.integers(0, 200).map(lambda q: q / 4),
            st.one_of(st.none(), st.integers(0, 2)),
        ),
        max_size=4,
    ),
)
def test_copies_seqs_and_accounting_hold_for_any_sequence_of_pushes(
    delivery_settings: DeliverySettings,
    plans: list[list[int | None]],
    pushes: list[tuple[float, PushKind]],
    registrations: list[tuple[int, float, int | None]],
):
    """Registrations carry the SEQ of their pull: current, or ``lag`` pushes old (None: unknown)."""
    members = [f"10.0.0.{n}" for n in range(len(plans))]
    delivery = UnicastDelivery("g", delivery_settings)
    for member in members:
        delivery.add_member(member, 0.0)
    harness = Harness(delivery, dict(zip(members, plans, strict=True)))
    timeline: list[tuple[float, int, str, int, int | None]] = [
        (at, 0, "register", index % len(members), lag) for index, at, lag in registrations
    ]
    timeline += [(at, 1, kind, 0, None) for at, kind in pushes]
    fanned_out: dict[int, int] = {}
    rekeys: set[int] = set()
    #: The model of who was sent which rekey: the newest per current membership.
    enrolled: dict[str, int] = {}
    seq = 0
    for at, _, what, index, lag in sorted(timeline, key=lambda entry: entry[:2]):
        harness.run_until(at)
        if what == "register":
            pulled = None if lag is None else max(0, seq - lag)
            finished = {e.seq for e in harness.events if isinstance(e, PushCompleted)}
            in_flight = [r for r in rekeys if r not in finished]
            address = harness.membership(members[index])
            newest = max(in_flight, default=None)
            if (
                pulled is not None
                and newest is not None
                and pulled < newest
                and enrolled.get(address, -1) < newest
            ):
                fanned_out[newest] += 1  # its pull predates the newest rekey in flight: it joins
                enrolled[address] = newest
            delivery.add_member(members[index], at, pulled)
        else:
            seq += 1
            statuses = delivery.statuses()
            if what == PushKind.REKEY:
                rekeys.add(seq)
                fanned_out[seq] = len(statuses)
                enrolled.update((harness.membership(s.address), seq) for s in statuses)
            else:  # members owing a rekey ACK are skipped
                fanned_out[seq] = sum(s.pending_seq is None for s in statuses)
            delivery.add_push(seq, PushKind(what), at)
    harness.run_until()

    limit = 1 + delivery_settings.number_of_retransmission
    for (_, pushed_seq), copies in harness.copies.items():
        assert len(copies) <= (limit if pushed_seq in rekeys else 1)
    for seqs in harness.received.values():
        assert seqs == sorted(seqs)  # never a lower SEQ after a higher one
    for event, copies in harness.removals:
        assert all(t <= event.at for t in copies)
        assert len(copies) == limit
        assert event.at == copies[-1] + delivery_settings.retransmission_period
    completed = {e.seq: e for e in harness.events if isinstance(e, PushCompleted)}
    assert set(completed) == set(fanned_out)  # every push completes exactly once
    for pushed_seq, count in fanned_out.items():
        done = completed[pushed_seq]
        assert done.acked + done.removed + done.withdrawn + done.sent == count
        if pushed_seq in rekeys:
            assert done.sent == 0
        else:
            assert done.acked == done.removed == 0
    assert delivery.next_deadline() is None
    assert all(count <= delivery_settings.burst for count in harness.bursts)
