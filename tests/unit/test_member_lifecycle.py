"""When a member registers again on its own, at exact fake-clock times.

* `heartbeat-threshold` heartbeats missed (with half an interval of grace): the
  key server is gone or restarted, so the member registers again over a fresh
  phase 1;
* a heartbeat that lists a current key the member lacks (of a policy its scope
  policies accept): it missed a rekey;
* no newer key by lifetime - 3 x activation-time-delay (the TEKs' or the KEK's).

The member registered at time 0 with TEKs and a KEK of 3600 s; the server's
heartbeat interval is 10 s unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import IkeSaEstablished
from groupvpn.member.core import Registered, RegistrationFailed, Reregistering
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.member.rekeys import HeartbeatReceived
from groupvpn.server.core import KeyServerCore
from groupvpn.server.signing import SigningKey
from groupvpn.wire.dialect import V1, V2
from tests.ikepair import peer
from tests.unit.member_rekey_net import (
    MEMBER_IP,
    SERVER_IP,
    RekeyKeyServer,
    RekeyNet,
    kek_attributes,
    rekey_net,
)
from tests.unit.test_member_install import MEMBER1
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)
NO_HEARTBEATS = kek_attributes(heartbeat=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _reregistered(net: RekeyNet) -> list[tuple[float, str]]:
    return [(t, e.reason) for t, e in net.at(Reregistering)]


def _registered_at(net: RekeyNet) -> list[float]:
    return [t for t, _ in net.at(Registered)]


# -- heartbeats --------------------------------------------------------------------------


def test_threshold_missed_heartbeats_mean_registering_again_at_the_exact_time(
    private_key: rsa.RSAPrivateKey,
):
    net = rekey_net(GROUP, V1, private_key)  # interval 10, threshold 3, grace 5
    assert _registered_at(net) == [0.0]
    net.run(until=10.0)
    net.deliver(net.heartbeat(1))
    phase1s = len(net.of(IkeSaEstablished))
    net.run(until=44.999)  # 10 + 3 x 10 + 5
    assert _reregistered(net) == []
    net.run(until=45.0)
    assert _reregistered(net) == [(45.0, "3 heartbeats missed (heartbeat-threshold 3)")]
    # The server may have lost our IKE SA: a fresh phase 1, then the pull.
    assert len(net.of(IkeSaEstablished)) == phase1s + 1
    assert _registered_at(net) == [0.0, 45.0]
    [status] = net.member.rekey_status(net.now)
    assert status.watching and status.heartbeats_missed == 0 and status.last_heard == 45.0


def test_a_non_default_threshold_and_interval(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key, threshold=5, added=kek_attributes(heartbeat=20))
    assert net.member.keks()[0].heartbeat_interval == 20
    net.run(until=109.999)  # 0 + 5 x 20 + 10
    assert _reregistered(net) == []
    net.run(until=110.0)
    assert _reregistered(net) == [(110.0, "5 heartbeats missed (heartbeat-threshold 5)")]


def test_any_verified_push_resets_the_count(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=30.0)
    net.deliver(net.rekey(1, net.new_teks(["p1"])))
    net.run(until=64.999)
    assert _reregistered(net) == []
    net.run(until=65.0)
    assert [t for t, _ in _reregistered(net)] == [65.0]


def test_a_replayed_heartbeat_does_not_count(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=10.0)
    beat = net.heartbeat(1)
    net.deliver(beat)
    net.run(until=40.0)
    net.deliver(beat)
    assert net.member.push_drops.counts["replayed-seq"] == 1
    net.run(until=45.0)
    assert [t for t, _ in _reregistered(net)] == [45.0]


def test_threshold_0_turns_detection_off(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key, threshold=0)
    [status] = net.member.rekey_status(net.now)
    assert not status.watching and status.heartbeat_threshold == 0
    net.run(until=1000.0)
    # Even a heartbeat that shows a missed rekey: "heartbeat detection disabled".
    net.deliver(net.heartbeat(1, teks=net.new_teks(["p1"])))
    net.run(until=2000.0)
    assert _reregistered(net) == [] and _registered_at(net) == [0.0]


def test_no_heartbeat_interval_from_the_server_means_nothing_to_watch(
    private_key: rsa.RSAPrivateKey,
):
    net = rekey_net(GROUP, V1, private_key, added=NO_HEARTBEATS)
    assert net.member.keks()[0].heartbeat_interval is None
    net.run(until=3000.0)
    assert _reregistered(net) == []


def test_a_heartbeat_listing_a_key_we_lack_means_a_missed_rekey(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=20.0)
    # The server rekeyed p1 (we missed it) and lists the new key with the others.
    [new] = net.new_teks(["p1"])
    current = [tek for tek in net.groups.current_teks(1, net.now) if tek.policy.name != "p1"]
    phase1s = len(net.of(IkeSaEstablished))
    net.deliver(net.heartbeat(1, teks=[new, *current]))
    [beat] = net.of(HeartbeatReceived)
    assert beat.missing == (new.spi,)
    assert _reregistered(net) == [(20.0, "heartbeat SEQ 1 lists keys this member lacks")]
    assert _registered_at(net) == [0.0, 20.0]
    assert len(net.of(IkeSaEstablished)) == phase1s + 1
    assert net.acks == []  # heartbeats are never ACKed


def test_a_listed_key_our_scope_policies_refuse_is_not_missing(private_key: rsa.RSAPrivateKey):
    scope = ScopePolicyFilter([replace(p, group_vpn="vpn1") for p in MEMBER1])
    net = rekey_net(GROUP, V1, private_key, policy_filter=scope)
    assert len(net.held()) == 2  # p3 refused at registration
    net.run(until=20.0)
    [p3] = net.new_teks(["p3"])
    kept = [tek for tek in net.groups.current_teks(1, net.now) if tek.policy.name != "p3"]
    net.deliver(net.heartbeat(1, teks=[*kept, p3]))
    [beat] = net.of(HeartbeatReceived)
    assert beat.missing == ()
    net.run(until=40.0)
    assert _reregistered(net) == []


def test_a_restarted_key_server_is_found_again_through_missed_heartbeats(
    private_key: rsa.RSAPrivateKey,
):
    net = rekey_net(GROUP, V1, private_key)
    old_kek = net.kek().spi
    net.run(until=10.0)
    net.deliver(net.heartbeat(1))
    # The server restarts: same signing key, but no IKE SA, no member, a new KEK.
    groups = RekeyKeyServer([GROUP], V1, signing_key=SigningKey(private_key))
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk")])
    net.groups, net.server = groups, KeyServerCore(server_ike, groups)
    net.run(until=30.0)
    net.deliver(net.heartbeat(1))  # under its new KEK: unknown to the member
    assert net.member.push_drops.counts["unknown-kek"] == 1
    net.run(until=45.0)
    assert [t for t, _ in _reregistered(net)] == [45.0]
    assert _registered_at(net) == [0.0, 45.0]
    [kek] = net.member.keks()
    assert kek.spi == net.kek().spi != old_kek and kek.sequence == 0
    assert [m.address for m in groups.members()] == [MEMBER_IP]


# -- no newer key by lifetime - 3 x ATD --------------------------------------------------------


@pytest.mark.parametrize(("dialect", "atd"), [(V1, 15), (V2, 15), (V2, 20)])
def test_without_a_newer_key_the_member_pulls_at_lifetime_minus_3_atd(
    private_key: rsa.RSAPrivateKey, dialect: object, atd: int
):
    group = replace(GROUP, activation_time_delay=atd)
    net = rekey_net(group, dialect, private_key, added=NO_HEARTBEATS)  # type: ignore[arg-type]
    assert {key.expires_at for key in net.held()} == {3600.0}
    refresh = 3600.0 - 3 * atd
    net.run(until=refresh - 0.001)
    assert _reregistered(net) == []
    net.run(until=refresh)
    assert _reregistered(net) == [
        (refresh, "no newer key by its lifetime - 3 x activation-time-delay")
    ]
    assert _registered_at(net) == [0.0, refresh]
    # The server had no newer key either: the same keys, pulled again when they end.
    net.run(until=3600.0)
    assert [t for t, _ in _reregistered(net)] == [refresh, 3600.0]
    assert _registered_at(net) == [0.0, refresh, 3600.0]
    assert {key.expires_at for key in net.held()} == {7200.0}


def test_a_pushed_newer_key_moves_the_refresh(private_key: rsa.RSAPrivateKey):
    kek = replace(GROUP.kek, lifetime_seconds=7200)  # type: ignore[type-var]
    net = rekey_net(replace(GROUP, kek=kek), V1, private_key, added=NO_HEARTBEATS)
    net.run(until=3540.0)  # the server's rekey time: lifetime - 4 x ATD
    net.deliver(net.rekey(1, net.new_teks()))
    net.run(until=3540.0 + 3600.0 - 45.0 - 0.001)
    assert _reregistered(net) == []  # not at 3555, when the registration's keys were due
    net.run(until=3540.0 + 3600.0 - 45.0)
    assert [t for t, _ in _reregistered(net)] == [3540.0 + 3600.0 - 45.0]


def test_the_kek_too_is_refreshed_when_no_rollover_came(private_key: rsa.RSAPrivateKey):
    kek = replace(GROUP.kek, lifetime_seconds=1000)  # type: ignore[type-var]
    net = rekey_net(replace(GROUP, kek=kek), V1, private_key, added=NO_HEARTBEATS)
    net.run(until=954.999)
    assert _reregistered(net) == []
    net.run(until=955.0)
    assert _reregistered(net) == [(955.0, "no new KEK by its lifetime - 3 x activation-time-delay")]


def test_a_pull_the_server_never_answers_is_retried_over_a_fresh_phase_1(
    private_key: rsa.RSAPrivateKey,
):
    net = rekey_net(GROUP, V1, private_key, added=NO_HEARTBEATS)
    # The server restarts unnoticed (no heartbeats): our IKE SA means nothing to it.
    groups = RekeyKeyServer([GROUP], V1, signing_key=SigningKey(private_key))
    groups.added = NO_HEARTBEATS
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk")])
    net.groups, net.server = groups, KeyServerCore(server_ike, groups)
    phase1s = len(net.of(IkeSaEstablished))
    net.run(until=3555.0 + 200.0)
    [failure] = net.of(RegistrationFailed)
    assert failure.reason.startswith("no answer from the key server to GROUPKEY-PULL")
    assert len(net.of(IkeSaEstablished)) == phase1s + 1
    assert len(_registered_at(net)) == 2 and [m.address for m in groups.members()] == [MEMBER_IP]


def test_keys_expire_and_encrypt_on_while_registering_again(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key, added=NO_HEARTBEATS)
    # The server goes away for good: the member keeps trying, keys end at their lifetime.
    net.server = KeyServerCore(
        IkeEndpoint(SERVER_IP, []), RekeyKeyServer([], V1, signing_key=SigningKey(private_key))
    )
    net.run(until=3599.0)
    assert len(net.held()) == 3 and all(key.state.value == "active" for key in net.held())
    net.run(until=3600.0)
    assert net.held() == []
