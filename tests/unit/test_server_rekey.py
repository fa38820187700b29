"""The key server's rekey schedule on a fake clock: TEK rekeys, KEK rollovers, heartbeats."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from groupvpn.server.delivery import PushKind
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy, new_kek
from groupvpn.server.rekey import (
    GroupRekeyScheduler,
    RekeyAction,
    RekeyReason,
    ScheduleSettings,
    rekey_time,
)

DEFAULTS = ScheduleSettings()
HEARTBEAT = RekeyAction(PushKind.HEARTBEAT, 0.0)


@dataclass(frozen=True)
class Key:
    created_at: float
    expires_at: float


def key(created_at: float, lifetime: float) -> Key:
    return Key(created_at, created_at + lifetime)


def heartbeat(at: float) -> RekeyAction:
    return RekeyAction(PushKind.HEARTBEAT, at)


def rekeys(actions: list[RekeyAction]) -> list[RekeyAction]:
    return [action for action in actions if action.kind is PushKind.REKEY]


def run(scheduler: GroupRekeyScheduler, until: float) -> list[tuple[float, RekeyAction]]:
    """Call due() at each next_deadline, like the asyncio shell, up to ``until``."""
    fired = []
    while (now := scheduler.next_deadline()) <= until:
        fired += [(now, action) for action in scheduler.due(now)]
    return fired


# -- TEK rekeys: lifetime − 4 × activation-time-delay after creation -------------------


@pytest.mark.parametrize(
    ("lifetime", "activation_time_delay", "expected"),
    [(3600, 15, 3540.0), (600, 30, 480.0), (3600, 5, 3580.0), (28800, 900, 25200.0)],
)
def test_a_tek_is_rekeyed_four_activation_delays_before_it_expires(
    lifetime: int, activation_time_delay: int, expected: float
):
    settings = ScheduleSettings(activation_time_delay=activation_time_delay, heartbeat=3600)
    scheduler = GroupRekeyScheduler(settings, now=0.0)
    scheduler.track_tek("p1", key(0.0, lifetime))
    assert scheduler.next_rekey_at() == expected
    assert scheduler.next_deadline() == min(expected, 3600.0)
    assert rekeys(scheduler.due(expected - 0.001)) == []
    assert rekeys(scheduler.due(expected)) == [
        RekeyAction(PushKind.REKEY, expected, (RekeyReason.TEK_LIFETIME,), ("p1",))
    ]
    # Renewed: no longer tracked until the core hands in the replacement.
    assert scheduler.next_rekey_at() is None
    assert scheduler.due(expected + 1) == []


def test_the_rekey_is_counted_from_the_current_teks_creation():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(100.0, 3600))
    assert scheduler.next_rekey_at() == 3640.0
    assert [a.renew_teks for a in rekeys(scheduler.due(3640.0))] == [("p1",)]
    scheduler.track_tek("p1", key(3640.0, 3600))  # the replacement, made at the rekey
    assert scheduler.next_rekey_at() == 7180.0


def test_each_policy_keeps_its_own_schedule_and_keys_due_together_share_one_rekey():
    scheduler = GroupRekeyScheduler(ScheduleSettings(heartbeat=3600), now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_tek("p2", key(0.0, 7200))
    scheduler.track_tek("p3", key(0.0, 3600))
    assert scheduler.due(3540.0) == [
        RekeyAction(PushKind.REKEY, 3540.0, (RekeyReason.TEK_LIFETIME,), ("p1", "p3"))
    ]
    assert scheduler.next_rekey_at() == 7140.0
    assert [a.renew_teks for a in scheduler.due(7140.0) if a.kind is PushKind.REKEY] == [("p2",)]


def test_a_late_call_still_rekeys_once_and_says_when_it_was_due():
    scheduler = GroupRekeyScheduler(ScheduleSettings(heartbeat=3600), now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    assert scheduler.due(3550.0) == [
        RekeyAction(PushKind.REKEY, 3540.0, (RekeyReason.TEK_LIFETIME,), ("p1",))
    ]


def test_a_lifetime_shorter_than_the_lead_rekeys_at_creation_not_before():
    assert rekey_time(key(50.0, 40), DEFAULTS) == 50.0


# -- KEK rollover: the same lead -----------------------------------------------------------


def test_with_defaults_the_kek_and_teks_made_together_roll_over_in_one_rekey_at_3540():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_tek("p2", key(0.0, 3600))
    scheduler.track_kek(key(0.0, 3600))
    assert rekeys(scheduler.due(3540.0)) == [
        RekeyAction(
            PushKind.REKEY,
            3540.0,
            (RekeyReason.TEK_LIFETIME, RekeyReason.KEK_LIFETIME),
            ("p1", "p2"),
            renew_kek=True,
        )
    ]


def test_a_longer_kek_rolls_over_on_its_own_schedule():
    settings = ScheduleSettings(activation_time_delay=30, heartbeat=3600)
    scheduler = GroupRekeyScheduler(settings, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_kek(key(0.0, 7200))
    fired = [(now, a) for now, a in run(scheduler, 3600) if a.kind is PushKind.REKEY]
    assert [(now, a.reasons, a.renew_kek) for now, a in fired] == [
        (3480.0, (RekeyReason.TEK_LIFETIME,), False)
    ]
    scheduler.track_tek("p1", key(3480.0, 3600))
    assert scheduler.next_rekey_at() == 6960.0  # the TEK's; the KEK's: 7200 − 4 × 30 = 7080
    fired = [(now, a) for now, a in run(scheduler, 7000) if a.kind is PushKind.REKEY]
    assert [(now, a.reasons, a.renew_kek) for now, a in fired] == [
        (6960.0, (RekeyReason.TEK_LIFETIME,), False)
    ]
    scheduler.track_tek("p1", key(6960.0, 3600))
    assert scheduler.next_rekey_at() == 7080.0
    assert rekeys(scheduler.due(7080.0)) == [
        RekeyAction(PushKind.REKEY, 7080.0, (RekeyReason.KEK_LIFETIME,), renew_kek=True)
    ]


def test_the_servers_kek_and_tek_objects_are_what_the_scheduler_tracks():
    policy = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha1"], lifetime_seconds=1800)
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_kek(new_kek(policy, 20.0, set()))
    assert scheduler.next_rekey_at() == 1760.0  # 20 + 1800 − 60


# -- heartbeats ---------------------------------------------------------------------------


def test_heartbeats_every_300_seconds_by_default():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    assert scheduler.next_deadline() == 300.0
    assert scheduler.due(299.999) == []
    assert run(scheduler, 1200) == [
        (300.0, heartbeat(300.0)),
        (600.0, heartbeat(600.0)),
        (900.0, heartbeat(900.0)),
        (1200.0, heartbeat(1200.0)),
    ]


def test_heartbeats_at_another_interval_count_from_the_schedulers_start():
    scheduler = GroupRekeyScheduler(ScheduleSettings(heartbeat=60), now=1000.0)
    assert [now for now, _ in run(scheduler, 1200)] == [1060.0, 1120.0, 1180.0]


def test_a_late_call_sends_one_heartbeat_and_stays_on_the_grid():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    assert scheduler.due(1000.0) == [heartbeat(900.0)]
    assert scheduler.next_deadline() == 1200.0


def test_rekeys_do_not_move_heartbeats_and_come_first_when_both_are_due():
    scheduler = GroupRekeyScheduler(ScheduleSettings(heartbeat=60), now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.request_rekey(RekeyReason.OPERATOR_REQUEST, 30.0)
    fired = run(scheduler, 180)
    assert [(now, a.kind) for now, a in fired] == [
        (30.0, PushKind.REKEY),
        (60.0, PushKind.HEARTBEAT),
        (120.0, PushKind.HEARTBEAT),
        (180.0, PushKind.HEARTBEAT),
    ]
    scheduler.track_tek("p1", key(0.0, 3600))
    # 3540 = 59 × 60: the rekey, then the heartbeat (a higher SEQ, the new key state).
    assert [a.kind for a in scheduler.due(3540.0)] == [PushKind.REKEY, PushKind.HEARTBEAT]


# -- requested rekeys --------------------------------------------------------------------


def test_an_operator_request_is_due_at_once_and_renews_every_tek_but_not_the_kek():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_tek("p2", key(0.0, 3600))
    scheduler.track_kek(key(0.0, 3600))
    scheduler.request_rekey(RekeyReason.OPERATOR_REQUEST, 42.0)
    assert scheduler.next_deadline() == 42.0
    assert scheduler.due(42.0) == [
        RekeyAction(PushKind.REKEY, 42.0, (RekeyReason.OPERATOR_REQUEST,), ("p1", "p2"))
    ]
    assert scheduler.next_rekey_at() == 3540.0  # the KEK's


def test_requests_before_the_next_call_share_one_rekey():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_kek(key(0.0, 3600))
    scheduler.request_rekey(RekeyReason.POLICY_CHANGE, 10.0)
    scheduler.request_rekey(RekeyReason.MEMBERSHIP_CHANGE, 10.5)
    scheduler.request_rekey(RekeyReason.MEMBERSHIP_CHANGE, 11.0)
    assert scheduler.due(11.0) == [
        RekeyAction(
            PushKind.REKEY,
            10.0,
            (RekeyReason.POLICY_CHANGE, RekeyReason.MEMBERSHIP_CHANGE),
            ("p1",),
            renew_kek=True,
        )
    ]
    assert scheduler.due(11.0) == []
    assert scheduler.next_rekey_at() is None


def test_a_policy_change_renews_no_key_by_itself():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.request_rekey(RekeyReason.POLICY_CHANGE, 5.0)
    assert scheduler.due(5.0) == [RekeyAction(PushKind.REKEY, 5.0, (RekeyReason.POLICY_CHANGE,))]
    assert scheduler.next_rekey_at() == 3540.0


def test_a_request_with_a_scheduled_reason_is_refused():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    with pytest.raises(ValueError, match="scheduled"):
        scheduler.request_rekey(RekeyReason.TEK_LIFETIME, 1.0)


def test_a_deleted_policy_is_forgotten():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.forget_tek("p1")
    scheduler.track_kek(None)
    assert scheduler.next_rekey_at() is None
    assert scheduler.next_deadline() == 300.0


# -- a reloaded configuration --------------------------------------------------------------


def test_new_timings_move_the_rekey_at_once_and_the_heartbeat_from_the_last_one():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    assert run(scheduler, 600)[-1] == (600.0, heartbeat(600.0))
    scheduler.reconfigure(ScheduleSettings(activation_time_delay=30, heartbeat=120))
    assert scheduler.next_rekey_at() == 3480.0
    assert scheduler.next_deadline() == 720.0


def test_settings_are_checked():
    with pytest.raises(ValueError):
        ScheduleSettings(heartbeat=0)
    with pytest.raises(ValueError):
        ScheduleSettings(activation_time_delay=-1)


def test_one_hour_with_defaults():
    scheduler = GroupRekeyScheduler(DEFAULTS, now=0.0)
    scheduler.track_tek("p1", key(0.0, 3600))
    scheduler.track_kek(key(0.0, 3600))
    fired = run(scheduler, 3600)
    assert [(now, a.kind) for now, a in fired] == [
        *((300.0 * n, PushKind.HEARTBEAT) for n in range(1, 12)),
        (3540.0, PushKind.REKEY),
        (3600.0, PushKind.HEARTBEAT),
    ]
