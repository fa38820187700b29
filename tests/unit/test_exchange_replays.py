"""Replayed, truncated and late messages of every exchange of a registration.

A member registers with our key server in memory (phase 1 Main Mode, then
GROUPKEY-PULL 1-4).  Before each message is delivered, every message of the
exchange so far is delivered again to whoever received it (late repeats, the
reordering UDP can cause), and so are truncated copies of the message itself.
The registration must still finish at once, without a retry, exactly once,
with no internal error; afterwards the whole exchange replayed changes nothing.
Pushes, ACKs and Informationals are replayed in the rekey and phase 1 tests
(test_member_rekeys, test_server_rekeying, test_ike_phase1); the push case is
repeated here end to end.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.ike.events import InternalError
from groupvpn.member.core import Registered
from groupvpn.server.core import MemberRegistered
from groupvpn.wire.dialect import V1, V2, Dialect
from tests.unit.member_rekey_net import MEMBER_IP, PORT, SERVER, RekeyNet, rekey_net
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)
CUTS = (1, 27, 28, 29, -8, -1)  # inside and just past the header, inside the last block


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _deliver(net: RekeyNet, sender: str, data: bytes) -> None:
    if sender == "member":
        net.server.receive_datagram(data, (MEMBER_IP, PORT), net.now)
    else:
        net.member.receive_datagram(data, SERVER, net.now)


def _errors(net: RekeyNet) -> list[InternalError]:
    return [e for _, e in net.events if isinstance(e, InternalError)] + [
        e for e in net.server_events if isinstance(e, InternalError)
    ]


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_late_repeats_and_truncated_copies_at_every_step_change_nothing(
    private_key: rsa.RSAPrivateKey, dialect: Dialect
):
    net = rekey_net(GROUP, dialect, private_key, register=False)
    wire: list[tuple[str, bytes]] = []
    for _ in range(40):
        queued = [("member", d) for d, _ in net.member.datagrams_to_send()]
        queued += [("server", d) for d, _ in net.server.datagrams_to_send()]
        if not queued:
            break
        for sender, data in queued:
            for old_sender, old in list(wire):
                _deliver(net, old_sender, old)
            for cut in CUTS:
                _deliver(net, sender, data[:cut])
            # The repeats may have made the peers answer again; those answers are
            # repeats too and are dropped here with the rest of the noise.
            net.member.datagrams_to_send()
            net.server.datagrams_to_send()
            wire.append((sender, data))
            _deliver(net, sender, data)
        net._collect()
    assert len(wire) == 10, [s for s, _ in wire]  # MM1-MM6, PULL 1-4: nothing was retried
    assert [t for t, _ in net.at(Registered)] == [0.0]
    assert len([e for e in net.server_events if isinstance(e, MemberRegistered)]) == 1
    assert len(net.server.ike.established()) == 1 and len(net.member.ike.established()) == 1
    assert not _errors(net)
    # The whole exchange again, after the fact: no new SA, member or registration.
    for sender, data in wire:
        _deliver(net, sender, data)
    # (Before 3 heartbeat intervals: this harness holds the server's heartbeats back.)
    net.run(until=20.0)
    assert len(net.of(Registered)) == 1
    assert len([e for e in net.server_events if isinstance(e, MemberRegistered)]) == 1
    assert len(net.server.ike.established()) == 1 and not _errors(net)


def test_a_replayed_or_truncated_push_installs_nothing_again(private_key: rsa.RSAPrivateKey):
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=100.0)
    push = net.rekey(1, net.new_teks())
    net.deliver(push)
    assert len(net.acks) == 1
    held = sorted(key.spi for key in net.held())
    # A copy of the push: the server retransmits when our ACK was lost, so the
    # copy is acknowledged again, but nothing is installed twice.
    net.deliver(push)
    assert len(net.acks) == 2 and sorted(key.spi for key in net.held()) == held
    for cut in CUTS:
        net.deliver(push[:cut])
    assert len(net.acks) == 2 and sorted(key.spi for key in net.held()) == held
    assert not _errors(net)


def test_a_replayed_or_truncated_ack_changes_nothing_at_the_key_server():
    from groupvpn.gdoi.push_ack import build_ack
    from groupvpn.server.rekey_events import AckDropped, AckReceived
    from groupvpn.server.signing import SigningKey
    from groupvpn.wire.payloads import IdPayload
    from tests.unit import test_server_rekeying as rekeying

    net = rekeying.Net([rekeying.GROUP], SigningKey.generate(1024))
    member = net.register(rekeying.M1)
    member.acks = False
    net.run(until=3540.0)  # the first rekey goes out; we hold its ACK
    copy = net.datagrams[-1]
    sequence = rekeying._seq_of(copy, member)
    ack = build_ack(copy[:16], sequence, IdPayload.ipv4(rekeying.M1), member.ack_key)
    source = (rekeying.M1, 848)
    net.rekeying.receive_ack(ack, source, net.now)
    net.flush()
    status = net.rekeying.member_statuses(1)[rekeying.M1]
    for late in (ack, ack, *(ack[:cut] for cut in CUTS)):
        net.rekeying.receive_ack(late, source, net.now + 1)
    net.flush()
    assert net.rekeying.member_statuses(1)[rekeying.M1] == status
    results = [e.result for e in net.of(AckReceived)]
    assert results[0] == "accepted" and "accepted" not in results[1:]
    assert net.of(AckDropped)  # the truncated copies, reported (once per reason and minute)
