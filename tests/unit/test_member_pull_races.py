"""A rekey that overtakes the answer to a GROUPKEY-PULL, at the member core, on a fake clock.

The key server counts a member from HASH(3) on, so a rekey it pushes right
after answering reaches the member too, and a lost answer (message 4) is
resent from the server's cache after that rekey: the member then holds newer
keys and a newer KEK than the answer it finally gets.  The pushes are built
with the key server's own pieces as in test_member_rekeys.py.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.gdoi.push_ack import AckOpened, open_ack
from groupvpn.member.rekeys import RekeyApplied
from groupvpn.member.vpn import Registered, Reregistering
from groupvpn.wire.constants import ExchangeType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.message import pull_header
from tests.unit.member_rekey_net import RekeyNet, fresh_kek, rekey_net
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


class PullAnswerLoss:
    """Loses the key server's answers to the member's pull (message 4) while ``on``."""

    def __init__(self, net: RekeyNet) -> None:
        self.on = False
        self.lost: list[bytes] = []
        self._pull_messages = 0
        receive = net.member.receive_datagram

        def lossy(data, addr, now):
            if pull_header(data).exchange_type == ExchangeType.GROUPKEY_PULL:
                self._pull_messages += 1
                if self.on and self._pull_messages % 2 == 0:  # 2 and 4 of each pull
                    self.lost.append(data)
                    return
            receive(data, addr, now)

        net.member.receive_datagram = lossy  # type: ignore[method-assign]


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_an_answer_older_than_an_applied_rollover_does_not_put_the_member_back(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    net = rekey_net(GROUP, dialect, private_key)
    loss = PullAnswerLoss(net)  # installed after the first registration
    old = net.kek()
    # No heartbeat reaches the member: after 3 it registers again (interval 10 s).
    loss.on = True
    net.run(until=35.0)
    [again] = net.of(Reregistering)
    assert "heartbeats missed" in again.reason
    assert loss.lost, "the server's answer to the pull was lost"
    # Before the member's retransmission gets the (cached, older) answer, the key
    # server rolls over: TEKs and KEK, under the KEK the member still holds.
    loss.on = False
    new, teks = fresh_kek(net), net.new_teks()
    net.deliver(net.push(net.rekey_content(2, teks, new_kek=new), kek=old))
    [applied] = net.of(RekeyApplied)
    assert applied.new_kek == new.spi and applied.acked
    net.run(until=50.0)  # the member retransmits; the old answer arrives now
    registered = net.of(Registered)
    assert len(registered) == 2 and registered[-1].kek.spi == old.spi  # the stale answer
    # The member stays on the rollover's KEK and keys, not the answer's.
    [kek] = net.member.keks()
    assert (kek.spi, kek.sequence) == (new.spi, 2)
    assert {tek.spi for tek in teks} <= set(net.by_spi())
    # The next push under the new KEK is applied and ACKed with the new phase 1's key.
    net.deliver(net.push(net.rekey_content(3, net.new_teks(["p1"])), kek=new))
    assert [a.sequence for a in net.of(RekeyApplied)] == [2, 3]
    ack, _ = net.acks[-1]
    key = net.ack_key()
    opened = open_ack(ack, lambda spi, identity: key)
    assert isinstance(opened, AckOpened) and (opened.kek_spi, opened.sequence) == (new.spi, 3)
    # It names the member by the phase 1 identity of the SA it registered under.
    sa = net.member.ike.established_with("gw1")
    assert sa is not None and opened.identity == sa.local_id


def test_an_answer_after_only_heartbeats_is_taken_whole(private_key: rsa.RSAPrivateKey):
    """A newer SEQ from a heartbeat is not a newer key state: the answer's keys count."""
    net = rekey_net(GROUP, V1, private_key)
    loss = PullAnswerLoss(net)
    loss.on = True
    net.run(until=35.0)
    assert net.of(Reregistering) and loss.lost
    loss.on = False
    net.deliver(net.heartbeat(2))  # the server's current keys: nothing missed
    net.run(until=50.0)
    assert len(net.of(Registered)) == 2
    [kek] = net.member.keks()
    assert kek.spi == net.kek().spi and kek.sequence == 2  # not back to the answer's 0
    current = {tek.spi for tek in net.groups.current_teks(1, net.now)}
    assert current <= set(net.by_spi())
