"""The key server's statistics: counted from the cores' events, shown per group and in total."""

from __future__ import annotations

from groupvpn.cli.statistics_tables import server_statistics
from groupvpn.ike.events import IkeSaFailed
from groupvpn.server.core import MemberRegistered, RegistrationDropped, RegistrationRefused
from groupvpn.server.groups import MemberRecord
from groupvpn.server.rekey_events import (
    AckDropped,
    AckReceived,
    HeartbeatSent,
    MemberInactive,
    RekeyCompleted,
    RekeyRetransmitted,
    RekeySent,
)
from groupvpn.server.statistics import ServerStatistics
from groupvpn.wire.constants import NotifyType

PEER = ("192.0.2.7", 848)
CONFIGURED = [("g1", 1), ("g2", 2)]
#: What the IKE endpoints counted (guard.Drop values); none in most tests.
NO_DROPS: dict[str, int] = {}


def registered(group: str, address: str) -> MemberRegistered:
    return MemberRegistered(MemberRecord(group, 1, address, "gw1", 0.0))


def rekey(group: str, seq: int, reasons: tuple[str, ...], members: int | None) -> RekeySent:
    destination = None if members is not None else "239.1.1.1:848"
    return RekeySent(group, 1, seq, reasons, members, destination, ("p1",), False)


def busy_statistics() -> ServerStatistics:
    stats = ServerStatistics(now=100.0)
    for event in (
        registered("g1", "10.0.0.1"),
        registered("g1", "10.0.0.2"),
        registered("g2", "10.0.0.3"),
        RegistrationRefused(PEER, "gw1", "group-id 9 is not configured",
                            NotifyType.INVALID_ID_INFORMATION),
        RegistrationRefused(PEER, "gw1", "HASH(3) does not verify",
                            NotifyType.INVALID_HASH_INFORMATION),
        RegistrationDropped(PEER, "GROUPKEY-PULL: truncated"),
        IkeSaFailed(PEER, "gw1", "responder", "main", "authentication failed"),
        IkeSaFailed(PEER, "gw1", "initiator", "main", "not ours to count"),
        rekey("g1", 1, ("operator-request",), 2),
        rekey("g1", 2, ("tek-lifetime", "kek-lifetime"), 2),
        HeartbeatSent("g1", 1, 3, 2, None),
        rekey("g2", 1, ("policy-change",), None),
        RekeyRetransmitted("g1", "10.0.0.2", 2, 2, 3),
        RekeyRetransmitted("g1", "10.0.0.2", 2, 3, 3),
        AckReceived("g1", "10.0.0.1", 1, "accepted"),
        AckReceived("g1", "10.0.0.2", 1, "accepted"),
        AckReceived("g1", "10.0.0.1", 2, "accepted"),
        AckReceived("g1", "10.0.0.1", 2, "duplicate"),
        AckDropped(PEER, "bad-hash", "HASH does not verify"),
        AckDropped(PEER, "bad-hash", "HASH does not verify", suppressed=4),
        MemberInactive("g1", 1, "10.0.0.2", 2, 3),
        RekeyCompleted("g1", 1, 2, 0, 0, 0.1),
        RekeyCompleted("g1", 2, 1, 1, 0, 9.0),
        object(),  # an event nobody counts changes nothing
    ):  # fmt: skip
        stats.on_event(event)
    return stats


def test_every_counted_event_lands_in_its_group_and_the_total():
    view = busy_statistics().view(
        CONFIGURED, {"g1": 1, "g2": 1}, 160.5, "2026-11-28T04:00:00Z", NO_DROPS
    )
    assert view["since"] == "2026-11-28T04:00:00Z" and view["seconds"] == 60
    g1, g2 = view["groups"]
    assert (g1["group"], g1["group-id"], g2["group"], g2["group-id"]) == ("g1", 1, "g2", 2)
    assert g1 == {
        "group": "g1", "group-id": 1, "members": 1, "registrations": 2,
        "rekeys-sent": 2,
        "rekeys-by-reason": {"kek-lifetime": 1, "operator-request": 1, "tek-lifetime": 1},
        "heartbeats-sent": 1,
        "push-copies-sent": 6,  # two copies for each of two rekeys and a heartbeat
        "retransmissions": 2,
        "acks-received": 4, "acks-by-result": {"accepted": 3, "duplicate": 1},
        "rekeys-completed": 2,
        "members-removed": 1, "members-removed-by-reason": {"inactive": 1},
    }  # fmt: skip
    assert g2["rekeys-sent"] == 1 and g2["push-copies-sent"] == 1  # one multicast copy
    assert g2["rekeys-by-reason"] == {"policy-change": 1} and g2["acks-received"] == 0
    total = view["total"]
    assert "group" not in total
    assert total["members"] == 2 and total["registrations"] == 3 and total["rekeys-sent"] == 3
    assert total["push-copies-sent"] == 7 and total["acks-received"] == 4
    assert total["rekeys-by-reason"]["policy-change"] == 1
    # Failures are not per group: a refused registration may name no real group.
    assert view["registration-failures"] == {
        "invalid-hash-information": 1, "invalid-id-information": 1, "malformed": 1,
        "phase1-failed": 1,
    }  # fmt: skip
    assert total["registrations-failed"] == 4
    # A rate-limited report stands for itself and the drops it suppressed.
    assert view["acks-dropped"] == {"bad-hash": 6}


def test_clear_sets_everything_back_to_zero_and_restarts_the_clock():
    stats = busy_statistics()
    stats.clear(500.0, NO_DROPS)
    view = stats.view(CONFIGURED, {"g1": 1}, 510.0, "later", NO_DROPS)
    assert view["seconds"] == 10
    for row in [*view["groups"], view["total"]]:
        assert row["registrations"] == row["rekeys-sent"] == row["acks-received"] == 0
        assert row["retransmissions"] == row["members-removed"] == 0
        assert row["rekeys-by-reason"] == {} and row["acks-by-result"] == {}
    # Members registered now are state, not a count: clear leaves them.
    assert view["groups"][0]["members"] == 1
    assert view["registration-failures"] == {} and view["acks-dropped"] == {}
    stats.on_event(registered("g1", "10.0.0.9"))
    assert stats.view(CONFIGURED, {}, 511.0, "", NO_DROPS)["groups"][0]["registrations"] == 1


def test_a_group_counted_then_removed_by_a_reload_is_still_shown_without_a_group_id():
    view = busy_statistics().view([("g2", 2)], {}, 100.0, "", NO_DROPS)
    assert [(g["group"], g["group-id"]) for g in view["groups"]] == [("g2", 2), ("g1", None)]
    assert view["total"]["registrations"] == 3


def test_a_configured_group_without_events_shows_zeros():
    view = ServerStatistics(0.0).view([("quiet", 7)], {}, 0.0, "", NO_DROPS)
    [quiet] = view["groups"]
    assert quiet["group-id"] == 7 and quiet["registrations"] == 0 and quiet["members"] == 0


def test_the_table_shows_each_group_the_total_and_the_reasons():
    drops = {"unknown gateway": 12, "malformed": 0}
    view = busy_statistics().view(
        CONFIGURED, {"g1": 1, "g2": 1}, 160.0, "2026-11-28T04:00:00Z", drops
    )
    text = server_statistics(view)
    lines = text.splitlines()
    assert lines[0] == "Group VPN server statistics since 2026-11-28T04:00:00Z (60 seconds)"
    header = lines[2].split()
    assert header[:4] == ["Group", "Group", "ID", "Members"]
    assert header[-3:] == ["Retransmissions", "ACKs", "Removed"]
    assert lines[3].split() == ["g1", "1", "1", "2", "2", "1", "6", "2", "4", "1"]
    assert lines[4].split() == ["g2", "2", "1", "1", "1", "0", "1", "0", "0", "0"]
    assert lines[5].split() == ["Total", "2", "3", "3", "1", "7", "2", "4", "1"]
    assert "Registrations failed: 4" in lines
    assert "  invalid-id-information: 1" in lines and "  phase1-failed: 1" in lines
    block = text.split("Rekeys sent by reason:\n", 1)[1]
    assert block.startswith("  kek-lifetime: 1\n  operator-request: 1\n  policy-change: 1\n")
    assert "ACKs dropped by reason:\n  bad-hash: 6\n" in text
    assert "Members removed by reason:\n  inactive: 1\n" in text
    assert text.endswith("Phase 1 packets dropped by reason:\n  unknown gateway: 12")


def test_the_table_of_a_fresh_server_says_none_for_every_breakdown():
    text = server_statistics(ServerStatistics(0.0).view([("g1", 1)], {}, 0.0, "now", NO_DROPS))
    assert "Registrations failed: 0\n  none\nRekeys sent by reason:\n  none" in text
    assert text.count("  none") == 6


def test_phase1_drops_count_from_the_last_clear_and_never_go_negative():
    """The IKE endpoints count every drop for their lifetime, the ones a flood keeps
    out of the log too; the statistics show them since the counters started."""
    stats = ServerStatistics(0.0)
    counted = {"unknown gateway": 40, "half-open limit: per address": 3}
    assert stats.view(CONFIGURED, {}, 1.0, "", counted)["phase1-drops"] == counted
    stats.clear(2.0, counted)
    assert stats.view(CONFIGURED, {}, 3.0, "", counted)["phase1-drops"] == {
        "half-open limit: per address": 0, "unknown gateway": 0,
    }  # fmt: skip
    later = {"unknown gateway": 45, "half-open limit: per address": 3, "malformed": 2}
    assert stats.view(CONFIGURED, {}, 4.0, "", later)["phase1-drops"] == {
        "half-open limit: per address": 0, "malformed": 2, "unknown gateway": 5,
    }  # fmt: skip
    # A reload closed the address that had counted them: 0, not a negative count.
    after_reload = {"unknown gateway": 1}
    view = stats.view(CONFIGURED, {}, 5.0, "", after_reload)
    assert view["phase1-drops"]["unknown gateway"] == 0
    assert min(view["phase1-drops"].values()) == 0
