"""Who gets which GROUPKEY-PUSH copy when: unicast ACKs, retransmission, removal, pacing."""

from __future__ import annotations

import pytest

from groupvpn.server.delivery import (
    AckResult,
    DeliverySettings,
    DeliveryState,
    MemberDeliveryStatus,
    MemberRemoved,
    MulticastDelivery,
    PushCompleted,
    PushDelivery,
    PushKind,
    Transmission,
    UnicastDelivery,
)

REKEY, HEARTBEAT = PushKind.REKEY, PushKind.HEARTBEAT
A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


def unicast(*members: str, settings: DeliverySettings | None = None) -> UnicastDelivery:
    delivery = UnicastDelivery("g1", settings)
    for member in members:
        delivery.add_member(member, 0.0)
    return delivery


def sent(delivery: PushDelivery, now: float) -> list[tuple[str, int, int]]:
    return [(t.destination, t.seq, t.copy) for t in delivery.transmissions(now)]


def state(delivery: UnicastDelivery, address: str) -> str:
    status = delivery.status(address)
    assert status is not None
    return status.state_text


# -- unicast: ACK, retransmission, removal ------------------------------------------------


def test_defaults_retransmit_at_10_and_20_and_remove_at_30():
    delivery = unicast(A, B, C)
    delivery.add_push(1, REKEY, 0.0)
    assert delivery.next_deadline() == 0.0
    assert sent(delivery, 0.0) == [(A, 1, 1), (B, 1, 1), (C, 1, 1)]
    assert state(delivery, B) == "waiting-for-ack"
    assert delivery.acked(A, 1, 5.0) is AckResult.ACCEPTED
    assert delivery.next_deadline() == 10.0
    assert sent(delivery, 9.999) == []
    assert sent(delivery, 10.0) == [(B, 1, 2), (C, 1, 2)]
    assert state(delivery, B) == "retransmitting (1/2)"
    assert delivery.next_deadline() == 20.0
    assert sent(delivery, 20.0) == [(B, 1, 3), (C, 1, 3)]
    assert state(delivery, B) == "retransmitting (2/2)"
    # The last copy went out at 20: one more period to ACK, then removal at exactly 30.
    assert delivery.next_deadline() == 30.0
    assert sent(delivery, 29.999) == [] and delivery.events() == []
    assert delivery.acked(C, 1, 29.999) is AckResult.ACCEPTED
    # An ACK at the deadline itself is too late, whether it comes before the timer ...
    assert delivery.acked(B, 1, 30.0) is AckResult.TOO_LATE
    assert sent(delivery, 30.0) == []
    assert delivery.events() == [
        MemberRemoved("g1", B, 1, copies=3, at=30.0),
        PushCompleted("g1", 1, REKEY, 0.0, 30.0, acked=2, removed=1, withdrawn=0),
    ]
    # ... or after it (the member is gone).
    assert delivery.acked(B, 1, 30.0) is AckResult.NOT_A_MEMBER
    assert delivery.next_deadline() is None
    assert delivery.statuses() == [
        MemberDeliveryStatus(A, DeliveryState.ACTIVE, None, 0, 2, 1, 5.0),
        MemberDeliveryStatus(C, DeliveryState.ACTIVE, None, 0, 2, 1, 29.999),
    ]
    # A removed member gets no more rekeys.
    delivery.add_push(2, REKEY, 40.0)
    assert sent(delivery, 40.0) == [(A, 2, 1), (C, 2, 1)]


def test_a_removal_noticed_late_is_dated_at_its_deadline():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    for now in (0.0, 10.0, 20.0):
        sent(delivery, now)
    assert sent(delivery, 45.0) == []
    assert delivery.events()[0] == MemberRemoved("g1", A, 1, copies=3, at=30.0)


@pytest.mark.parametrize(
    ("retransmissions", "period", "copies_at", "removed_at"),
    [
        (0, 10.0, [0.0], 10.0),
        (1, 2.0, [0.0, 2.0], 4.0),
        (3, 5.0, [0.0, 5.0, 10.0, 15.0], 20.0),
        (2, 60.0, [0.0, 60.0, 120.0], 180.0),
    ],
)
def test_other_retransmission_settings(
    retransmissions: int, period: float, copies_at: list[float], removed_at: float
):
    delivery = unicast(A, settings=DeliverySettings(retransmissions, period))
    delivery.add_push(7, REKEY, 0.0)
    times = []
    while (now := delivery.next_deadline()) is not None:
        if delivery.transmissions(now):
            times.append(now)
    assert times == copies_at
    assert [e for e in delivery.events() if isinstance(e, MemberRemoved)] == [
        MemberRemoved("g1", A, 7, copies=retransmissions + 1, at=removed_at)
    ]
    assert delivery.statuses() == []


def test_retransmissions_count_from_when_each_copy_actually_left():
    delivery = unicast(A, B, settings=DeliverySettings(burst=1, burst_interval=0.5))
    delivery.add_push(1, REKEY, 0.0)
    assert sent(delivery, 0.0) == [(A, 1, 1)]
    assert delivery.next_deadline() == 0.5
    assert sent(delivery, 0.5) == [(B, 1, 1)]
    assert delivery.next_deadline() == 10.0
    assert sent(delivery, 10.0) == [(A, 1, 2)]
    assert delivery.next_deadline() == 10.5
    assert sent(delivery, 10.5) == [(B, 1, 2)]


def test_an_ack_between_copies_stops_the_retransmissions():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    sent(delivery, 10.0)
    assert delivery.acked(A, 1, 12.0) is AckResult.ACCEPTED
    assert delivery.next_deadline() is None
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 0.0, 12.0, 1, 0, 0)]


# -- odd ACKs -------------------------------------------------------------------------------


def test_duplicate_acks_change_nothing():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    sent(delivery, 10.0)
    assert delivery.acked(A, 1, 10.2) is AckResult.ACCEPTED
    assert delivery.acked(A, 1, 10.3) is AckResult.DUPLICATE  # it answered both copies
    assert delivery.status(A) == MemberDeliveryStatus(A, DeliveryState.ACTIVE, None, 0, 2, 1, 10.2)


def test_an_ack_from_a_non_member_is_ignored_and_leaves_no_state():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    assert delivery.acked(B, 1, 1.0) is AckResult.NOT_A_MEMBER
    assert [s.address for s in delivery.statuses()] == [A]


def test_acks_for_heartbeats_future_seqs_and_unsent_copies_are_unexpected():
    delivery = unicast(A, B, settings=DeliverySettings(burst=1))
    delivery.add_push(1, HEARTBEAT, 0.0)
    sent(delivery, 0.0)
    assert delivery.acked(A, 1, 0.1) is AckResult.UNEXPECTED
    delivery.add_push(2, REKEY, 1.0)
    assert sent(delivery, 1.0) == [(A, 2, 1)]
    assert delivery.acked(A, 3, 1.1) is AckResult.UNEXPECTED
    assert delivery.acked(B, 2, 1.001) is AckResult.UNEXPECTED  # its copy is not out yet
    assert delivery.acked(A, 2, 1.2) is AckResult.ACCEPTED


def test_a_newer_rekey_supersedes_the_older_and_a_late_ack_of_the_older_does_not_count():
    delivery = unicast(A, B)
    delivery.add_push(5, REKEY, 0.0)
    sent(delivery, 0.0)
    assert delivery.acked(A, 5, 1.0) is AckResult.ACCEPTED
    assert sent(delivery, 10.0) == [(B, 5, 2)]
    delivery.add_push(6, REKEY, 15.0)
    assert delivery.events() == [PushCompleted("g1", 5, REKEY, 0.0, 15.0, 1, 0, withdrawn=1)]
    # No more copies of 5 to B: it would drop them as replays after 6.
    assert sent(delivery, 15.0) == [(A, 6, 1), (B, 6, 1)]
    assert state(delivery, B) == "waiting-for-ack"
    assert delivery.acked(B, 5, 16.0) is AckResult.STALE
    assert delivery.status(B) == MemberDeliveryStatus(
        B, DeliveryState.WAITING_FOR_ACK, 6, 0, 2, None, None
    )
    assert delivery.acked(A, 5, 16.0) is AckResult.DUPLICATE  # its ACK of 5, again
    # 6 gets its own three copies: 15, 25, 35, and B is removed at 45.
    assert sent(delivery, 25.0) == [(A, 6, 2), (B, 6, 2)]
    assert delivery.acked(A, 6, 26.0) is AckResult.ACCEPTED
    assert delivery.acked(A, 5, 27.0) is AckResult.STALE
    assert sent(delivery, 35.0) == [(B, 6, 3)]
    assert delivery.next_deadline() == 45.0
    sent(delivery, 45.0)
    assert delivery.events() == [
        MemberRemoved("g1", B, 6, 3, 45.0),
        PushCompleted("g1", 6, REKEY, 15.0, 45.0, acked=1, removed=1, withdrawn=0),
    ]


# -- membership while a push is in flight -----------------------------------------------------


def test_a_member_that_registers_during_a_push_is_not_sent_it():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    delivery.add_member(B, 3.0)  # its pull gave it what SEQ 1 carries
    assert state(delivery, B) == "active"
    assert sent(delivery, 10.0) == [(A, 1, 2)]
    assert delivery.acked(B, 1, 11.0) is AckResult.UNEXPECTED
    delivery.add_push(2, REKEY, 12.0)
    assert sent(delivery, 12.0) == [(A, 2, 1), (B, 2, 1)]


def test_a_member_whose_pull_predates_a_rekey_in_flight_joins_it():
    delivery = unicast(A)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    # B's pull was answered before rekey 1 (SEQ 0 and the old keys), confirmed at 3.
    delivery.add_member(B, 3.0, sequence=0)
    assert state(delivery, B) == "waiting-for-ack"
    assert sent(delivery, 3.0) == [(B, 1, 1)]
    delivery.add_member(C, 4.0, sequence=1)  # pulled after the rekey: nothing to send
    delivery.acked(A, 1, 5.0)
    assert sent(delivery, 10.0) == []
    assert sent(delivery, 13.0) == [(B, 1, 2)]
    assert delivery.acked(B, 1, 14.0) is AckResult.ACCEPTED
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 0.0, 14.0, 2, 0, 0)]
    delivery.add_member(D, 15.0, sequence=0)  # too late for rekey 1: heartbeats will tell it
    assert sent(delivery, 15.0) == [] and delivery.next_deadline() is None


def test_a_member_never_joins_the_same_rekey_twice():
    delivery = unicast(A, B)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    delivery.acked(A, 1, 1.0)
    delivery.add_member(A, 2.0, sequence=0)  # acked 1 already: nothing to send again
    delivery.add_member(B, 2.0, sequence=0)  # owes 1: its copies go on, 1 + N in all
    assert [sent(delivery, t) for t in (2.0, 10.0, 20.0)] == [[], [(B, 1, 2)], [(B, 1, 3)]]
    assert delivery.next_deadline() == 30.0


def test_registering_again_clears_what_the_member_owed():
    delivery = unicast(A, B)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    delivery.acked(A, 1, 1.0)
    delivery.add_member(B, 12.0)  # it missed the rekey and pulled the keys
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 0.0, 12.0, 1, 0, withdrawn=1)]
    assert delivery.next_deadline() is None
    assert state(delivery, B) == "active"


def test_a_member_the_core_deletes_gets_nothing_more_and_is_no_event_of_ours():
    delivery = unicast(A, B)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    delivery.acked(A, 1, 1.0)
    delivery.remove_member(B, 2.0)
    delivery.remove_member(D, 2.0)  # unknown: nothing happens
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 0.0, 2.0, 1, 0, withdrawn=1)]
    assert sent(delivery, 10.0) == [] and delivery.next_deadline() is None


def test_a_push_to_no_member_completes_at_once():
    delivery = unicast()
    delivery.add_push(1, REKEY, 0.0)
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 0.0, 0.0, 0, 0, 0)]
    assert delivery.next_deadline() is None and sent(delivery, 0.0) == []


def test_seq_must_increase():
    delivery = unicast(A)
    delivery.add_push(3, REKEY, 0.0)
    with pytest.raises(ValueError, match="SEQ 3 after SEQ 3"):
        delivery.add_push(3, HEARTBEAT, 0.0)


# -- heartbeats -------------------------------------------------------------------------------


def test_a_unicast_heartbeat_is_one_copy_per_member_never_retransmitted_never_removing():
    delivery = unicast(A, B, C)
    delivery.add_push(1, HEARTBEAT, 300.0)
    assert sent(delivery, 300.0) == [(A, 1, 1), (B, 1, 1), (C, 1, 1)]
    assert delivery.next_deadline() is None
    # Done once every copy has left: the shell may drop the datagram.
    assert delivery.events() == [PushCompleted("g1", 1, HEARTBEAT, 300.0, 300.0, 0, 0, 0, sent=3)]
    assert sent(delivery, 400.0) == [] and delivery.events() == []
    assert [s.state_text for s in delivery.statuses()] == ["active"] * 3


def test_a_heartbeat_skips_members_that_owe_a_rekey_ack():
    delivery = unicast(A, B)
    delivery.add_push(1, REKEY, 0.0)
    sent(delivery, 0.0)
    delivery.acked(A, 1, 1.0)
    delivery.add_push(2, HEARTBEAT, 5.0)
    assert sent(delivery, 5.0) == [(A, 2, 1)]
    assert sent(delivery, 10.0) == [(B, 1, 2)]  # still worth something to B


def test_a_rekey_replaces_a_heartbeat_copy_not_yet_sent():
    delivery = unicast(A, B, settings=DeliverySettings(burst=1, burst_interval=1.0))
    delivery.add_push(1, HEARTBEAT, 0.0)
    assert sent(delivery, 0.0) == [(A, 1, 1)]
    delivery.add_push(2, REKEY, 0.5)
    # B's copy of heartbeat 1 never leaves: the rekey carries the newer state.
    assert sent(delivery, 1.0) == [(A, 2, 1)]
    assert sent(delivery, 2.0) == [(B, 2, 1)]
    assert delivery.next_deadline() == 11.0  # A: its copy at 1.0 + 10


# -- pacing -------------------------------------------------------------------------------------


def test_8000_members_get_one_first_copy_each_in_bursts_of_500_every_10_ms():
    members = [f"10.{n // 256}.{n % 256}.1" for n in range(8000)]
    delivery = unicast(*members)
    delivery.add_push(1, REKEY, 0.0)
    calls: list[tuple[float, int]] = []
    first_copies: list[str] = []
    while (now := delivery.next_deadline()) is not None and now < 5.0:
        batch = delivery.transmissions(now)
        calls.append((now, len(batch)))
        first_copies += [t.destination for t in batch if t.copy == 1]
    assert all(count <= 500 for _, count in calls)
    assert sorted(first_copies) == sorted(members)
    assert [count for _, count in calls] == [500] * 16
    times = [now for now, _ in calls]
    assert times == sorted(set(times))  # deadlines strictly increase
    assert times == pytest.approx([0.01 * n for n in range(16)])
    # Nothing in between: a call before the next burst is due returns nothing.
    assert delivery.transmissions(times[-1] + 0.005) == []
    # Half the members answer; the retransmissions are paced the same way, 10 s after
    # each member's own first copy.
    for address in members[::2]:
        assert delivery.acked(address, 1, 1.0) is AckResult.ACCEPTED
    retransmitted: list[tuple[float, int]] = []
    while (now := delivery.next_deadline()) is not None and now < 15.0:
        retransmitted.append((now, len(delivery.transmissions(now))))
    assert [count for _, count in retransmitted] == [250] * 16
    assert [now for now, _ in retransmitted] == pytest.approx([10 + 0.01 * n for n in range(16)])


def test_pacing_settings_are_checked():
    for bad in (
        {"burst": 0},
        {"burst_interval": 0.0},
        {"retransmission_period": 0.0},
        {"number_of_retransmission": -1},
    ):
        with pytest.raises(ValueError):
            DeliverySettings(**bad)


# -- multicast --------------------------------------------------------------------------------


def test_multicast_sends_one_copy_to_the_group_and_never_removes_anyone():
    delivery = MulticastDelivery("g1", "226.1.1.1")
    for member in (A, B, C):
        delivery.add_member(member, 0.0)
    delivery.add_push(1, REKEY, 100.0)
    assert delivery.next_deadline() == 100.0
    assert delivery.transmissions(100.0) == [Transmission(1, REKEY, "226.1.1.1", 1)]
    assert delivery.next_deadline() is None
    assert delivery.events() == [PushCompleted("g1", 1, REKEY, 100.0, 100.0, 0, 0, 0, sent=1)]
    assert delivery.transmissions(10_000.0) == [] and delivery.events() == []
    delivery.add_push(2, HEARTBEAT, 300.0)
    assert delivery.transmissions(300.0) == [Transmission(2, HEARTBEAT, "226.1.1.1", 1)]
    assert delivery.acked(A, 1, 101.0) is AckResult.UNEXPECTED
    assert delivery.acked(D, 1, 101.0) is AckResult.NOT_A_MEMBER
    assert [(s.address, s.state_text) for s in delivery.statuses()] == [
        (A, "registered"),
        (B, "registered"),
        (C, "registered"),
    ]
    delivery.remove_member(B, 400.0)
    assert [s.address for s in delivery.statuses()] == [A, C]
    with pytest.raises(ValueError):
        delivery.add_push(2, REKEY, 500.0)
