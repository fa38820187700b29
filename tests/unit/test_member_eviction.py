"""A member of a group whose key server evicted another member, at the member core.

The key server's eviction push (``server.rekeying``) deletes the KEK, which the
removed member holds too, and carries no key.  The member must ACK it, stop
using that KEK, register again at once for the new keys, and keep its TEKs
working until the registration brings their successors; a later push under
the new KEK deletes the old TEKs.  The key server here is the real one
(``GroupKeyServer.evict``); the pushes are built with its pieces, as in
test_member_rekeys.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.gdoi.push import PushContent
from groupvpn.gdoi.push_ack import AckOpened, open_ack
from groupvpn.gdoi.push_deletes import kek_delete, tek_delete
from groupvpn.member.push_inbox import PushDropped
from groupvpn.member.rekeys import RekeyApplied
from groupvpn.member.vpn import Registered, Reregistering
from groupvpn.wire.dialect import V1, V2, Dialect
from tests.unit.member_rekey_net import rekey_net
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_deleted_kek_makes_the_member_register_again_and_keeps_traffic_keys_meanwhile(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    net = rekey_net(GROUP, dialect, private_key)
    net.run(until=5.0)
    old_kek = net.kek()
    old_teks = {key.spi for key in net.held()}
    ack_key = net.ack_key()
    eviction = net.groups.evict(1, net.now)  # what the server does when a gateway leaves
    assert eviction.kek.spi == old_kek.spi and set(eviction.tek_spis) == old_teks
    evict = net.push(PushContent(1, deletes=(kek_delete(old_kek.spi),)), kek=old_kek)
    net.deliver(evict)  # and everything it sets in motion: here, a registration
    # Applied and ACKed under the deleted KEK, then a registration at once.
    [applied] = net.of(RekeyApplied)
    assert (applied.sequence, applied.installed, applied.acked) == (1, 0, True)
    [(ack, _)] = net.acks
    opened = open_ack(ack, lambda spi, identity: ack_key)
    assert isinstance(opened, AckOpened) and (opened.kek_spi, opened.sequence) == (old_kek.spi, 1)
    [(at, again)] = net.at(Reregistering)
    assert at == 5.0 and again.reason == "the key server deleted the KEK (a member was removed)"
    assert len(net.of(Registered)) == 2
    # The registration brought the new KEK and TEKs; the old TEKs were never removed
    # (traffic kept its keys) and still decrypt.
    [kek] = net.member.keks()
    assert kek.spi == net.kek().spi != old_kek.spi
    new_teks = {tek.spi for tek in net.groups.current_teks(1, net.now)}
    assert {key.spi for key in net.held()} == old_teks | new_teks
    # A retransmitted copy of the eviction is ACKed again and changes nothing.
    net.deliver(evict)
    assert len(net.of(RekeyApplied)) == 1 and len(net.acks) == 2
    assert len(net.of(Registered)) == 2
    # The key server's second push, under the new KEK, deletes the old TEKs.
    net.deliver(net.push(PushContent(2, deletes=(tek_delete(eviction.tek_spis),)), kek=net.kek()))
    assert [a.deleted for a in net.of(RekeyApplied)] == [0, len(old_teks)]
    assert {key.spi for key in net.held()} == new_teks
    # A push under the deleted KEK is no longer taken.
    net.deliver(net.push(PushContent(3, deletes=(tek_delete(new_teks),)), kek=old_kek))
    assert {key.spi for key in net.held()} == new_teks
    assert [d.reason for d in net.of(PushDropped)][-1] == "unknown-kek"


def test_registering_again_waits_a_random_part_of_the_spread_with_the_keys_kept(
    private_key: rsa.RSAPrivateKey,
):
    """Every member learns of the deleted KEK at once: each waits its own random delay
    (``reregistration_spread``), so the key server is not hit by all in one second."""
    net = rekey_net(GROUP, V1, private_key, reregistration_spread=10.0)
    net.run(until=5.0)
    old_kek = net.kek()
    old_teks = {key.spi for key in net.held()}
    net.groups.evict(1, net.now)
    net.deliver(net.push(PushContent(1, deletes=(kek_delete(old_kek.spi),)), kek=old_kek))
    [(at, again)] = net.at(Reregistering)
    assert at == 5.0 and 0.0 < again.delay <= 10.0
    sent = net.to_server
    net.run(until=5.0 + again.delay - 0.01)
    assert net.to_server == sent and len(net.of(Registered)) == 1  # not yet
    assert {key.spi for key in net.held()} == old_teks  # traffic keeps its keys meanwhile
    net.run(until=5.0 + again.delay + 1.0)
    [_, (registered_at, _)] = net.at(Registered)
    assert 5.0 + again.delay <= registered_at < 5.0 + again.delay + 1.0
    [kek] = net.member.keks()
    assert kek.spi != old_kek.spi
    # Other draws, other delays: members do not move in lockstep.
    delays = set()
    for seed in range(5):
        other = rekey_net(GROUP, V1, private_key, reregistration_spread=10.0, jitter_seed=seed)
        other.run(until=5.0)
        kek_now = other.kek()
        other.groups.evict(1, other.now)
        other.deliver(other.push(PushContent(1, deletes=(kek_delete(kek_now.spi),)), kek=kek_now))
        delays.add(round(other.of(Reregistering)[0].delay, 3))
    assert len(delays) == 5
