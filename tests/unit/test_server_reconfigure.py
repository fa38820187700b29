"""A configuration reload, group by group: what changed, what needs a rekey, what is kept."""

from __future__ import annotations

from dataclasses import replace

import pytest

from groupvpn.gdoi.pull import PullError
from groupvpn.server.delivery import DeliverySettings
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy
from groupvpn.server.reconfigure import diff_groups
from groupvpn.server.rekey import RekeyReason
from groupvpn.server.signing import SigningKey
from groupvpn.wire.dialect import V1
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa, _offer, _policy

P4 = _policy("p4", "10.1.0.0/16", "10.3.0.0/16")


def test_unchanged_configuration_changes_nothing():
    assert diff_groups({1: SPEC_GROUP}, {1: SPEC_GROUP}) == []


def test_policy_and_gateway_changes_are_named_and_need_a_rekey():
    p1, p2, _p3 = SPEC_GROUP.policies
    changed = replace(
        SPEC_GROUP,
        policies=(replace(p1, lifetime_seconds=1800), p2, P4),
        gateways=frozenset({"gw-member1", "gw-member3"}),
        activation_time_delay=30,
    )
    [change] = diff_groups({1: SPEC_GROUP}, {1: changed})
    assert (change.group, change.group_id, change.kind) == ("g1", 1, "changed")
    assert change.details == (
        "policy p4 added", "policy p3 deleted", "policy p1 changed",
        "ike-gateway gw-member3 added", "ike-gateway gw-member2 removed",
        "activation-time-delay 15 -> 30",
    )  # fmt: skip
    assert change.needs_rekey


def test_an_added_gateway_or_a_new_delay_alone_needs_no_rekey():
    wider = replace(SPEC_GROUP, gateways=SPEC_GROUP.gateways | {"gw-member3"})
    assert not diff_groups({1: SPEC_GROUP}, {1: wider})[0].needs_rekey
    slower = replace(SPEC_GROUP, activation_time_delay=20)
    assert not diff_groups({1: SPEC_GROUP}, {1: slower})[0].needs_rekey


def test_groups_added_and_removed_by_group_id():
    other = replace(SPEC_GROUP, name="g2", group_id=2)
    changes = diff_groups({1: SPEC_GROUP}, {2: other})
    assert [(c.group, c.kind) for c in changes] == [("g1", "removed"), ("g2", "added")]


def test_reconfigure_keeps_unchanged_keys_and_members_and_drops_the_rest():
    server = GroupKeyServer([SPEC_GROUP], V1)
    before = {tek.policy.name: tek.spi for tek in server.current_teks(1, 0.0)}
    server.commit(1, _ike_sa("gw-member1", "198.51.100.11"), 0.0)
    server.commit(1, _ike_sa("gw-member2", "203.0.113.1"), 0.0)
    p1, p2, _p3 = SPEC_GROUP.policies
    changed = replace(
        SPEC_GROUP,
        policies=(replace(p1, lifetime_seconds=1800), p2, P4),
        gateways=frozenset({"gw-member1"}),
    )
    [change] = server.reconfigure([changed])
    assert change.needs_rekey
    after = {tek.policy.name: tek.spi for tek in server.current_teks(1, 10.0)}
    assert sorted(after) == ["p1", "p2", "p4"]
    assert after["p2"] == before["p2"]  # untouched policy: same key
    assert after["p1"] != before["p1"]  # changed policy: a new key
    assert [m.address for m in server.members()] == ["198.51.100.11"]  # gw-member2 left
    # New registrations get the new policy set; the removed gateway is refused.
    offer = _offer(server, now=10.0)
    assert len(offer.sa.teks) == 3
    assert isinstance(server.admit(1, _ike_sa("gw-member2"), 10.0), PullError)


def test_a_refused_reconfiguration_changes_nothing():
    server = GroupKeyServer([SPEC_GROUP], V1)
    before = server.current_teks(1, 0.0)
    duplicate = replace(SPEC_GROUP, name="g1-again", policies=(P4,))
    with pytest.raises(ValueError, match="group-id 1 configured twice"):
        server.reconfigure([replace(SPEC_GROUP, policies=(P4,)), duplicate])
    assert server.definitions() == [SPEC_GROUP]
    assert server.current_teks(1, 0.0) == before


def test_each_change_says_which_rekey_it_needs():
    p1, p2, _p3 = SPEC_GROUP.policies
    policies = replace(SPEC_GROUP, policies=(p1, p2, P4))
    [change] = diff_groups({1: SPEC_GROUP}, {1: policies})
    assert change.reasons == (RekeyReason.POLICY_CHANGE,)
    fewer = replace(SPEC_GROUP, gateways=frozenset({"gw-member1"}))
    [change] = diff_groups({1: SPEC_GROUP}, {1: fewer})
    assert change.reasons == (RekeyReason.MEMBER_REMOVAL,)
    both = replace(policies, gateways=frozenset({"gw-member1"}))
    [change] = diff_groups({1: SPEC_GROUP}, {1: both})
    assert change.reasons == (RekeyReason.POLICY_CHANGE, RekeyReason.MEMBER_REMOVAL)
    # The anti-replay window goes with the next keys (every SA TEK carries it): no rekey.
    window = replace(SPEC_GROUP, anti_replay_time_window=None)
    [change] = diff_groups({1: SPEC_GROUP}, {1: window})
    assert change.details == ("anti-replay-time-window 100s -> off (from the next keys on)",)
    assert not change.needs_rekey
    # A gateway added needs no rekey: its members register.
    more = replace(SPEC_GROUP, gateways=SPEC_GROUP.gateways | {"gw-member3"})
    [change] = diff_groups({1: SPEC_GROUP}, {1: more})
    assert change.reasons == () and not change.needs_rekey
    # Retransmission timers and the multicast interface apply without a rekey.
    timers = replace(SPEC_GROUP, delivery=DeliverySettings(3, 5.0))
    [change] = diff_groups({1: SPEC_GROUP}, {1: timers})
    assert change.details == ("retransmissions 2x10s -> 3x5s",)
    assert not change.needs_rekey and change.reasons == ()


def test_configuring_server_member_communication_clears_the_member_list():
    server = GroupKeyServer([SPEC_GROUP], V1, signing_key=SigningKey.generate(1024))
    server.commit(1, _ike_sa("gw-member1", "198.51.100.11"), 0.0)
    kek = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha1"], acks_requested=True)
    [change] = server.reconfigure([replace(SPEC_GROUP, kek=kek)])
    assert change.reasons == (RekeyReason.MEMBERSHIP_CHANGE,)
    assert server.members() == []  # the spec: "the group membership list is cleared"
