"""GROUPKEY-PUSH at the member core, on a fake clock: rekeys, ACKs, drops, rollover, multicast.

Every push here is built with the key server's own pieces (its KEK, TEKs and
signing key; gdoi/push.py) under the KEK the member got at registration, and
delivered through :class:`MemberCore` as the daemon would.  The member
registered at time 0; the group's TEKs then have 3600 s left.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.gdoi.pull import GroupOffer
from groupvpn.gdoi.push import stamp_group_clock
from groupvpn.gdoi.push_ack import AckOpened, open_ack
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.member.keyring import ChangeKind, KeyChange, KeyState
from groupvpn.member.push_inbox import REPORT_INTERVAL, PushDropped
from groupvpn.member.rekeys import HeartbeatReceived, RekeyApplied
from groupvpn.server.groups import GroupDefinition
from groupvpn.server.kek import KekPolicy
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.payloads import IdPayload
from tests.unit.member_rekey_net import (
    MEMBER_IP,
    SERVER,
    RekeyKeyServer,
    RekeyNet,
    fresh_kek,
    kek_attributes,
    rekey_net,
)
from tests.unit.test_member_install import MEMBER1
from tests.unit.test_server_kek import KEK_GROUP

DIALECTS = pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
GROUP = replace(KEK_GROUP, server_address=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _net(private_key: rsa.RSAPrivateKey, dialect: Dialect = V1, **options: object) -> RekeyNet:
    net = rekey_net(GROUP, dialect, private_key, **options)  # type: ignore[arg-type]
    assert len(net.held()) == 3 and len(net.member.keks()) == 1, net.events
    return net


# -- the KEK's attributes ---------------------------------------------------------------------


def test_the_kek_says_whether_to_ack_and_how_often_heartbeats_come(
    private_key: rsa.RSAPrivateKey,
):
    # A private-use attribute we do not know (32003) changes nothing.
    unknown = DataAttribute.basic(32003, 7)
    net = _net(private_key, added=kek_attributes(acks=True, heartbeat=300, extra=[unknown]))
    [kek] = net.member.keks()
    assert (kek.acks_requested, kek.heartbeat_interval) == (True, 300)
    net = _net(private_key, added=kek_attributes(acks=False, heartbeat=None))
    [kek] = net.member.keks()
    assert (kek.acks_requested, kek.heartbeat_interval) == (False, None)
    net = _net(private_key, added=kek_attributes(acks=False, heartbeat=0))
    assert net.member.keks()[0].heartbeat_interval is None  # 0 s is no schedule


def test_the_registration_sets_the_group_clock(private_key: rsa.RSAPrivateKey):
    def stamp(groups: RekeyKeyServer) -> None:
        admit = groups.admit

        def admit_stamped(*args: Any, **kwargs: Any) -> Any:
            offer = admit(*args, **kwargs)
            assert isinstance(offer, GroupOffer)
            return replace(offer, sa=stamp_group_clock(offer.sa, 5_000, V1))

        groups.admit = admit_stamped  # type: ignore[method-assign]

    net = rekey_net(GROUP, V1, private_key, tamper=stamp)
    net.run(until=2.5)
    [status] = net.member.rekey_status(net.now)
    assert status.group_time == 5.0 + 2.5


# -- a rekey ------------------------------------------------------------------------------


@DIALECTS
def test_a_rekey_installs_keys_that_encrypt_2_atd_later_and_is_acked(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    net = _net(private_key, dialect)
    old = {key.selectors: key.spi for key in net.held()}
    net.run(until=100.0)
    teks = net.new_teks()
    net.deliver(net.rekey(1, teks))

    [applied] = net.of(RekeyApplied)
    assert (applied.vpn, applied.sequence, applied.installed, applied.acked) == ("vpn1", 1, 3, True)
    keys = net.by_spi()
    for tek in teks:
        key = keys[tek.spi]
        assert key.state is KeyState.PENDING and key.activates_at == 100.0 + 2 * 15
        assert key.expires_at == 100.0 + 3600 and key.delivery.value == "push"
    assert all(keys[spi].state is KeyState.ACTIVE for spi in old.values())
    assert net.member.keks()[0].sequence == 1

    net.run(until=129.999)
    assert net.by_spi()[teks[0].spi].state is KeyState.PENDING
    net.run(until=130.0)
    keys = net.by_spi()
    assert all(keys[tek.spi].state is KeyState.ACTIVE for tek in teks)
    assert all(keys[spi].state is KeyState.RETIRING for spi in old.values())
    activated = [(t, e.spi) for t, e in net.at(KeyChange) if e.kind is ChangeKind.ACTIVATED]
    assert {spi for t, spi in activated if t == 130.0} == {tek.spi for tek in teks}

    # One ACK, to where the push came from, that the key server can verify.
    [(ack, destination)] = net.acks
    assert destination == SERVER
    ack_key = net.ack_key()
    kek_spi = net.kek().spi
    opened = open_ack(ack, lambda spi, identity: ack_key if spi == kek_spi else None)
    assert isinstance(opened, AckOpened)
    assert (opened.kek_spi, opened.sequence) == (kek_spi, 1)
    assert opened.identity == IdPayload.ipv4(MEMBER_IP)


def test_the_activation_delay_comes_from_the_gap_in_v2(private_key: rsa.RSAPrivateKey):
    net = rekey_net(replace(GROUP, activation_time_delay=40), V2, private_key)
    net.run(until=10.0)
    [tek] = net.new_teks(["p1"])
    net.deliver(net.rekey(1, [tek]))
    assert net.by_spi()[tek.spi].activates_at == 10.0 + 80
    net.run(until=90.0)
    assert net.by_spi()[tek.spi].state is KeyState.ACTIVE


def test_v1_assumes_the_default_activation_delay(private_key: rsa.RSAPrivateKey):
    # RFC 3547 cannot carry it: a v1 member uses the Junos default (15 s).
    net = rekey_net(replace(GROUP, activation_time_delay=40), V1, private_key)
    net.run(until=10.0)
    [tek] = net.new_teks(["p1"])
    net.deliver(net.rekey(1, [tek]))
    assert net.by_spi()[tek.spi].activates_at == 10.0 + 30


def test_without_ack_requested_no_ack_goes_out(private_key: rsa.RSAPrivateKey):
    net = _net(private_key, added=kek_attributes(acks=False))
    assert not net.member.keks()[0].acks_requested
    net.deliver(net.rekey(1, net.new_teks(["p1"])))
    [applied] = net.of(RekeyApplied)
    assert applied.installed == 1 and not applied.acked
    assert net.acks == []


def test_keys_no_scope_policy_accepts_are_discarded_from_rekeys_too(
    private_key: rsa.RSAPrivateKey,
):
    # The spec's member1: p3 (to 239.1.1.1) is outside its scope policies.
    scope = ScopePolicyFilter([replace(p, group_vpn="vpn1") for p in MEMBER1])
    net = rekey_net(GROUP, V1, private_key, policy_filter=scope)
    assert len(net.held()) == 2
    teks = net.new_teks()
    net.deliver(net.rekey(1, teks))
    [applied] = net.of(RekeyApplied)
    assert (applied.installed, applied.rejected) == (2, 1)
    p3 = next(tek for tek in teks if tek.policy.name == "p3")
    assert p3.spi not in net.by_spi() and len(net.held()) == 4
    view = net.member.dynamic_policies()
    refused = [p for p in view if not p["installed"]]
    assert {p["spi"] for p in refused} == {p3.spi.hex()}
    assert all("outside scope policy" in p["reason"] for p in refused)
    # Dynamic policies name the key that encrypts: still the registration's.
    installed = {p["spi"] for p in view if p["installed"]}
    registered = {key.spi.hex() for key in net.held() if key.state is KeyState.ACTIVE}
    assert installed == registered


def test_deletes_remove_keys_and_the_group_clock_is_followed(private_key: rsa.RSAPrivateKey):
    net = _net(private_key, V2)
    victim = net.held()[0].spi
    net.run(until=50.0)
    [tek] = net.new_teks(["p1"])
    net.deliver(net.rekey(1, [tek], deletes=[victim], group_clock=7_000_000))
    [applied] = net.of(RekeyApplied)
    assert applied.deleted == 1 and victim not in net.by_spi()
    removed = [e for e in net.of(KeyChange) if e.kind is ChangeKind.REMOVED]
    assert [(e.spi, e.reason) for e in removed] == [(victim, "deleted by the key server")]
    [status] = net.member.rekey_status(net.now)
    assert status.group_time == 7000.0  # milliseconds on the wire
    net.run(until=60.0)
    [status] = net.member.rekey_status(net.now)
    assert status.group_time == 7010.0


def test_a_push_with_a_key_it_cannot_use_is_dropped_whole(private_key: rsa.RSAPrivateKey):
    net = _net(private_key)
    teks = net.new_teks(["p1", "p2"])
    content = net.rekey_content(1, teks)
    assert content.key_download is not None
    # The key packet of the second TEK is missing: nothing of the push is applied.
    kd = replace(content.key_download, packets=content.key_download.packets[:1])
    before = net.by_spi()
    net.deliver(net.push(replace(content, key_download=kd)))
    assert net.of(RekeyApplied) == [] and net.acks == []
    assert net.by_spi().keys() == before.keys()
    assert net.member.keks()[0].sequence == 0
    assert net.member.push_drops.counts["malformed"] == 1
    [drop] = net.of(PushDropped)
    assert drop.reason == "malformed" and drop.detail.startswith("unusable: no key for SPI")


# -- drops ----------------------------------------------------------------------------------


def test_replays_forgeries_and_unknown_keks_are_dropped_and_counted(
    private_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey
):
    net = _net(private_key)
    first = net.rekey(1, net.new_teks(["p1"]))
    net.deliver(first)
    keys = net.by_spi()

    net.deliver(first)  # the same push again
    forged = net.rekey_content(2, net.new_teks(["p2"]))
    net.deliver(net.push(forged, signer=other_key))
    net.deliver(net.push(forged, kek=fresh_kek(net)))  # a KEK we never got
    net.deliver(b"\x00" * 40)  # not even a push: the IKE endpoint has it
    net.deliver(first[:18] + bytes([33]) + first[19:40])  # exchange 33, but truncated

    assert net.by_spi() == keys and len(net.of(RekeyApplied)) == 1
    assert net.member.keks()[0].sequence == 1
    # The copy was ACKed again (the server sends one only when our ACK was lost).
    assert len(net.acks) == 2 and net.acks[0] == net.acks[1]
    assert net.member.push_drops.counts == {
        "malformed": 1, "unknown-kek": 1, "bad-signature": 1, "replayed-seq": 1,
    }  # fmt: skip
    drops = {drop.reason: drop for drop in net.of(PushDropped)}
    assert drops["replayed-seq"].detail == "a copy of a push already accepted, ACKed again"
    assert drops["replayed-seq"].vpn == drops["bad-signature"].vpn == "vpn1"
    assert drops["unknown-kek"].vpn is None and drops["unknown-kek"].peer == SERVER
    for drop in drops.values():
        assert net.kek().key.hex() not in drop.detail


def test_an_older_authentic_push_is_a_replay_and_not_acked(private_key: rsa.RSAPrivateKey):
    net = _net(private_key)
    older = net.rekey(1, net.new_teks(["p1"]))
    net.deliver(net.rekey(2, net.new_teks(["p2"])))
    net.deliver(older)  # signed by the server, never seen, but SEQ 1 < 2
    assert [a.sequence for a in net.of(RekeyApplied)] == [2] and len(net.acks) == 1
    [drop] = net.of(PushDropped)
    assert (drop.reason, drop.detail) == ("replayed-seq", "SEQ 1, last accepted 2")


def test_a_retransmitted_rollover_is_acked_again_under_the_replaced_kek(
    private_key: rsa.RSAPrivateKey,
):
    net = _net(private_key)
    old, new = net.kek(), fresh_kek(net)
    rollover = net.push(net.rekey_content(1, net.new_teks(["p1"]), new_kek=new), kek=old)
    net.deliver(rollover)
    net.deliver(rollover)  # our ACK was lost: the server sends the same octets again
    assert net.member.keks()[0].spi == new.spi and len(net.of(RekeyApplied)) == 1
    assert len(net.acks) == 2 and net.acks[0] == net.acks[1]
    assert net.member.push_drops.counts["unknown-kek"] == 0
    [status] = net.member.rekey_status(net.now)
    assert (status.rekeys, status.acks_sent) == (1, 2)


def test_each_reason_is_reported_once_per_interval_with_what_it_left_out(
    private_key: rsa.RSAPrivateKey,
):
    net = _net(private_key)
    stranger = fresh_kek(net)
    for n in range(1, 6):
        net.deliver(net.push(net.rekey_content(n, net.new_teks(["p1"])), kek=stranger))
    assert net.member.push_drops.counts["unknown-kek"] == 5
    [first] = net.of(PushDropped)
    assert (first.count, first.suppressed) == (1, 0)
    net.run(until=net.now + REPORT_INTERVAL)
    net.deliver(net.push(net.rekey_content(6, net.new_teks(["p1"])), kek=stranger))
    reported = net.of(PushDropped)
    assert [(d.count, d.suppressed) for d in reported] == [(1, 0), (6, 4)]


# -- KEK rollover and multicast ----------------------------------------------------------------


@DIALECTS
def test_after_a_kek_rollover_the_next_push_comes_under_the_new_kek(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    net = _net(private_key, dialect)
    net.run(until=200.0)
    old, new = net.kek(), fresh_kek(net)
    [tek] = net.new_teks(["p1"])
    net.deliver(net.push(net.rekey_content(1, [tek], new_kek=new), kek=old))
    [applied] = net.of(RekeyApplied)
    assert applied.new_kek == new.spi and applied.installed == 1
    [kek] = net.member.keks()
    assert (kek.spi, kek.key, kek.iv, kek.sequence) == (new.spi, new.key, new.iv, 1)
    assert kek.expires_at == 200.0 + 3600 and kek.acks_requested
    # The rollover itself is ACKed under the KEK it came with.
    [(ack, _)] = net.acks
    key = net.ack_key()
    opened = open_ack(ack, lambda spi, identity: key)
    assert isinstance(opened, AckOpened) and opened.kek_spi == old.spi

    [tek2] = net.new_teks(["p2"])
    net.deliver(net.push(net.rekey_content(2, [tek2]), kek=new))
    assert [a.sequence for a in net.of(RekeyApplied)] == [1, 2]
    net.deliver(net.push(net.rekey_content(3, net.new_teks(["p3"])), kek=old))
    assert net.member.push_drops.counts["unknown-kek"] == 1


def test_a_multicast_kek_is_recognised_and_its_pushes_taken_from_the_group(
    private_key: rsa.RSAPrivateKey,
):
    assert GROUP.kek is not None
    policy: KekPolicy = replace(GROUP.kek, multicast_group=IPv4Address("226.1.1.1"))
    group: GroupDefinition = replace(GROUP, kek=policy)
    net = rekey_net(group, V1, private_key, added=kek_attributes(acks=False))
    [kek] = net.member.keks()
    assert kek.multicast_group == (IPv4Address("226.1.1.1"), 848)
    assert net.member.holds_kek(kek.spi)
    [tek] = net.new_teks(["p2"])
    net.deliver(net.rekey(1, [tek]), multicast=True)
    assert net.by_spi()[tek.spi].state is KeyState.PENDING
    assert net.acks == []  # multicast rekeys are not ACKed
    net.deliver(b"not a push", multicast=True)
    assert net.member.push_drops.counts["malformed"] == 1


def test_a_unicast_kek_has_no_multicast_group(private_key: rsa.RSAPrivateKey):
    [kek] = _net(private_key).member.keks()
    assert kek.multicast_group is None


def test_clear_forgets_the_kek_so_its_pushes_are_unknown(private_key: rsa.RSAPrivateKey):
    net = _net(private_key)
    kek = net.kek()
    net.member.clear(net.now)
    assert net.member.keks() == [] and net.held() == []
    push = net.push(net.rekey_content(1, net.new_teks(["p1"])), kek=kek)
    net.member.receive_datagram(push, SERVER, net.now)  # before it registered again
    assert net.member.push_drops.counts["unknown-kek"] == 1
    net.run(until=net.now + 1)
    assert [kek.spi for kek in net.member.keks()] == [kek.spi]  # the group's KEK again
    net.deliver(push)
    assert len(net.of(RekeyApplied)) == 1


# -- heartbeats ------------------------------------------------------------------------------


def test_a_heartbeat_is_not_acked_and_counts_as_heard(private_key: rsa.RSAPrivateKey):
    net = _net(private_key)
    net.run(until=25.0)
    [status] = net.member.rekey_status(net.now)
    assert status.heartbeats_missed == 2 and status.watching
    net.deliver(net.heartbeat(1, clock=123_456))
    [beat] = net.of(HeartbeatReceived)
    assert (beat.sequence, beat.missing) == (1, ())
    assert net.acks == []
    [status] = net.member.rekey_status(net.now)
    assert (status.heartbeats_missed, status.heartbeats, status.last_heard) == (0, 1, 25.0)
    assert status.kek.sequence == 1 and status.group_time == 123.456
    assert net.member.keks()[0].sequence == 1


def test_a_rollover_to_unicast_rekeys_is_acked_and_the_heartbeat_watch_follows_the_new_kek(
    private_key: rsa.RSAPrivateKey,
):
    # Registered under a KEK that asks for no ACKs and announces 10 s heartbeats (a
    # multicast group, say); the operator switches to unicast with 60 s heartbeats.
    net = rekey_net(GROUP, V1, private_key, added=kek_attributes(acks=False, heartbeat=10))
    net.run(until=5.0)
    old = net.kek()
    net.groups.added = kek_attributes(acks=True, heartbeat=60)
    new = fresh_kek(net)
    [tek] = net.new_teks(["p1"])
    net.deliver(net.push(net.rekey_content(1, [tek], new_kek=new), kek=old))
    [applied] = net.of(RekeyApplied)
    assert applied.new_kek == new.spi and applied.acked
    # The server expects an ACK of the switching push under the KEK it came with.
    [(ack, _)] = net.acks
    key = net.ack_key()
    opened = open_ack(ack, lambda spi, identity: key)
    assert isinstance(opened, AckOpened) and opened.kek_spi == old.spi
    [status] = net.member.rekey_status(net.now)
    assert status.kek.heartbeat_interval == 60
    # Watched at the new interval: nothing missed at 10 s intervals any more.
    net.run(until=net.now + 45.0)
    [status] = net.member.rekey_status(net.now)
    assert status.heartbeats_missed == 0
    assert not [e for _, e in net.events if type(e).__name__ == "Reregistering"]
