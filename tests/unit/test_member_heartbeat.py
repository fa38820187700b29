"""The member's heartbeat watch and group clock on a fake clock.

Spec ../shared/seeds/000_c0cdc3497280ad89.txt, "Understanding Group VPNv1 Heartbeat
Messages": members "reregister with the server if the specified number of heartbeats
is not received"; "By comparing the information in the heartbeats, a member can detect
whether it has missed ... rekey messages"; "heartbeat detection can be disabled".
`heartbeat-threshold` is 0-10, default 3 (../shared/reference/junos-group-vpn.md §2.2);
the server's `heartbeat` interval defaults to 300 s.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from groupvpn.member.group_clock import GroupClock
from groupvpn.member.heartbeat import HeartbeatMonitor


def test_defaults_reregister_after_three_missed_heartbeats():
    """300 s interval, threshold 3, half an interval of grace: 3 * 300 + 150 = 1050 s."""
    monitor = HeartbeatMonitor()
    assert (monitor.interval, monitor.threshold, monitor.grace) == (300, 3, 150)
    monitor.start(0)
    assert monitor.deadline() == 1050
    assert monitor.missed(449.999) == 0
    assert monitor.missed(450) == 1  # the heartbeat due at 300 is 150 s late
    assert monitor.missed(750) == 2
    assert not monitor.expired(1049.999)
    assert monitor.expired(1050)
    assert monitor.reason(1050) == "3 heartbeats missed (heartbeat-threshold 3)"


def test_each_heartbeat_heard_moves_the_deadline():
    monitor = HeartbeatMonitor()
    monitor.start(0, sequence=0)
    assert monitor.heard(301.5, 1)
    assert monitor.deadline() == 1351.5
    assert monitor.heard(600, 2)
    assert monitor.deadline() == 1650
    assert not monitor.expired(1649)


@pytest.mark.parametrize(
    ("interval", "threshold", "grace", "deadline"),
    [(60, 1, 0, 60), (60, 10, None, 630), (3600, 2, 10, 7210)],
)
def test_non_default_intervals_and_thresholds(interval, threshold, grace, deadline):
    monitor = HeartbeatMonitor(interval, threshold, grace=grace)
    monitor.start(0)
    assert monitor.deadline() == deadline
    assert not monitor.expired(deadline - 0.001)
    assert monitor.expired(deadline)


def test_threshold_zero_turns_detection_off():
    """Spec: "heartbeat detection can be disabled on the member"; neither silence nor a
    heartbeat that shows a missed rekey makes the member register again."""
    monitor = HeartbeatMonitor(300, 0)
    monitor.start(0, sequence=0)
    assert not monitor.enabled
    assert monitor.deadline() is None
    assert not monitor.expired(1_000_000)
    monitor.heard(300, 1, keys_known=False)
    assert monitor.reason(300) is None


def test_a_heartbeat_that_shows_a_missed_rekey_means_register_now():
    """Spec: "a member can detect whether it has missed ... rekey messages"."""
    monitor = HeartbeatMonitor()
    monitor.start(0, sequence=4)
    assert monitor.heard(300, 5, keys_known=False)
    assert monitor.expired(300)
    assert monitor.deadline() == 300
    assert monitor.reason(300) == "heartbeat SEQ 5 lists keys this member lacks"
    monitor.start(310, sequence=6)  # registered again
    assert not monitor.expired(310) and monitor.deadline() == 1360


def test_an_old_sequence_number_does_not_move_the_watch():
    monitor = HeartbeatMonitor()
    monitor.start(0, sequence=7)
    assert not monitor.heard(100, 7)
    assert not monitor.heard(100, 3, keys_known=False)
    assert monitor.deadline() == 1050 and not monitor.expired(100)


def test_nothing_is_watched_before_registration_or_after_stop():
    monitor = HeartbeatMonitor()
    assert monitor.deadline() is None and not monitor.expired(10_000)
    assert not monitor.heard(5, 1)
    monitor.start(0)
    monitor.stop()
    assert monitor.deadline() is None and monitor.missed(10_000) == 0


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="interval"):
        HeartbeatMonitor(0, 3)
    with pytest.raises(ValueError, match="negative"):
        HeartbeatMonitor(300, -1)


@given(
    threshold=st.integers(1, 10),
    interval=st.integers(60, 3600),
    heard=st.lists(st.floats(0, 20_000, allow_nan=False), max_size=8),
    now=st.floats(0, 40_000, allow_nan=False),
)
def test_expired_exactly_from_the_deadline(threshold, interval, heard, now):
    monitor = HeartbeatMonitor(interval, threshold)
    monitor.start(0, sequence=0)
    for sequence, at in enumerate(sorted(heard), start=1):
        if at <= now:
            monitor.heard(at, sequence)
    deadline = monitor.deadline()
    assert deadline is not None
    assert monitor.expired(now) == (now >= deadline)


# -- the group clock ------------------------------------------------------------------


def test_two_members_with_skewed_clocks_agree_on_the_group_time():
    """Anti-replay needs one group time although every member's clock differs."""
    first, second = GroupClock(), GroupClock()
    assert first.group_time(0) is None
    first.synchronize(group_time=1_000_000, now=50)  # this member booted 50 s ago
    second.synchronize(group_time=1_000_000, now=86_450)  # this one a day ago
    assert first.offset == 999_950
    assert first.group_time(60) == second.group_time(86_460) == 1_000_010


def test_the_newest_group_time_wins_and_forget_clears_it():
    clock = GroupClock()
    clock.synchronize(500, 10)
    clock.synchronize(100, 20)  # a restarted key server with a new group clock
    assert clock.group_time(30) == 110
    assert clock.synchronized_at == 20
    clock.forget()
    assert clock.group_time(30) is None and clock.offset is None
