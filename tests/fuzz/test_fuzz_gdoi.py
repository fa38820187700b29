"""Fuzzing the GDOI entry points: the key server's and the member's receive_datagram at
every step of a registration (phase 1 then GROUPKEY-PULL 1-4), the member's push
receiver (unicast and multicast), the key server's ACK receiver, and the wire
decoders, all fed mutations of the seed corpus.

Whatever arrives: no exception, no InternalError, and the exchange in progress
(or a retry of it) still completes: the member registers, a genuine rekey still
installs, a genuine ACK is still accepted.
"""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupvpn.gdoi.push_ack import build_ack
from groupvpn.ike.events import InternalError
from groupvpn.member.core import Registered
from groupvpn.member.rekeys import RekeyApplied
from groupvpn.server.rekey_events import AckDropped, AckReceived, RekeyCompleted
from groupvpn.server.signing import SigningKey
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.message import decode_message, decode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, IdPayload
from tests.fuzz.corpus import adopt, encrypt_under, examples, mutated, seeds
from tests.fuzz.make_corpus import GROUP
from tests.unit import test_server_rekeying as server_rekeying
from tests.unit.member_rekey_net import MEMBER_IP, PORT, SERVER, RekeyNet, rekey_net

PRIVATE_KEY = rsa.generate_private_key(65537, 1024)
DIALECTS = {"v1": V1, "v2": V2}
#: Phase 1 (6) and GROUPKEY-PULL (4).
REGISTRATION_MESSAGES = 10
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _registration(dialect: Dialect, upto: int) -> tuple[RekeyNet, list[bytes]]:
    """A member and key server that have exchanged the first ``upto`` messages."""
    net = rekey_net(GROUP, dialect, PRIVATE_KEY, register=False)
    wire: list[bytes] = []
    for _ in range(50):
        moved = False
        for data, _ in net.member.datagrams_to_send():
            moved = True
            wire.append(data)
            if len(wire) <= upto:
                net.server.receive_datagram(data, (MEMBER_IP, PORT), net.now)
        for data, _ in net.server.datagrams_to_send():
            moved = True
            wire.append(data)
            if len(wire) <= upto:
                net.member.receive_datagram(data, SERVER, net.now)
        if not moved:
            break
    net._collect()
    return net, wire


def _internal_errors(net: RekeyNet) -> list[InternalError]:
    return [e for _, e in net.events if isinstance(e, InternalError)] + [
        e for e in net.server_events if isinstance(e, InternalError)
    ]


@st.composite
def registration_cases(draw: st.DrawFn) -> tuple[str, int, str, str, bytes]:
    dialect = draw(st.sampled_from(sorted(DIALECTS)))
    upto = draw(st.integers(0, REGISTRATION_MESSAGES))
    target = draw(st.sampled_from(["server", "member"]))
    how = draw(st.sampled_from(["as-is", "adopt", "encrypt"]))
    pool = ("pull-plain",) if how == "encrypt" else ("pull", "phase1-main", "informational")
    return dialect, upto, target, how, draw(mutated(seeds(*pool)))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=SLOW)
@given(registration_cases(), st.integers(1, 2**32 - 1))
def test_registration_survives_any_datagram_at_any_step(
    case: tuple[str, int, str, str, bytes], message_id: int
) -> None:
    dialect, upto, target, how, data = case
    net, wire = _registration(DIALECTS[dialect], upto)
    core = net.server if target == "server" else net.member
    source = (MEMBER_IP, PORT) if target == "server" else SERVER
    sas = list(core.ike._table)
    if how != "as-is" and sas:
        sa = sas[0]
        pulls = [
            d for d in wire[:upto] if pull_header(d).exchange_type == ExchangeType.GROUPKEY_PULL
        ]
        live_id = int.from_bytes(pulls[-1][20:24], "big") if pulls else message_id
        data = adopt(data, sa.initiator_cookie + sa.responder_cookie, live_id)
        if how == "encrypt":
            data = encrypt_under(sa, data)
    core.receive_datagram(data, source, net.now)
    net._collect()
    assert not _internal_errors(net)
    # Whatever it did, the registration (or the member's retry) still completes.
    net.run(until=600.0)
    assert not _internal_errors(net)
    assert net.of(Registered), [e for _, e in net.events][-5:]


@pytest.fixture(scope="module")
def registered() -> dict[str, tuple[RekeyNet, bytes, bytes]]:
    """Per dialect: a registered member, and a rekey and heartbeat of its group (seeds)."""
    nets = {}
    for name, dialect in DIALECTS.items():
        net, _ = _registration(dialect, REGISTRATION_MESSAGES)
        net.run(until=100.0)
        nets[name] = (net, net.rekey(1, net.new_teks()), net.heartbeat(1))
    return nets


@settings(max_examples=examples(150), deadline=None, suppress_health_check=SLOW)
@given(
    st.sampled_from(sorted(DIALECTS)),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_member_push_receiver_survives_mutated_pushes(
    registered: dict[str, tuple[RekeyNet, bytes, bytes]],
    dialect: str,
    multicast: bool,
    adopt_kek: bool,
    data: st.DataObject,
) -> None:
    _net, rekey, heartbeat = registered[dialect]
    fresh, _ = _registration(DIALECTS[dialect], REGISTRATION_MESSAGES)
    fresh.run(until=100.0)
    pool = (*seeds("push", "ack"), rekey, heartbeat)
    datagram = data.draw(mutated(pool))
    if adopt_kek:
        datagram = adopt(datagram, fresh.member.keks()[0].spi)
    if multicast:
        fresh.member.receive_multicast(datagram, SERVER, fresh.now)
    else:
        fresh.member.receive_datagram(datagram, SERVER, fresh.now)
    fresh._collect()
    assert not _internal_errors(fresh)
    # A genuine rekey from this member's own key server still applies.
    applied_before = len(fresh.of(RekeyApplied))
    fresh.deliver(fresh.rekey(1_000, fresh.new_teks()))
    assert len(fresh.of(RekeyApplied)) == applied_before + 1


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey(PRIVATE_KEY)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=SLOW)
@given(st.data())
def test_server_ack_receiver_survives_mutated_acks(signing_key: SigningKey, data: st.DataObject):
    net = server_rekeying.Net([server_rekeying.GROUP], signing_key)
    address = server_rekeying.M1
    member = net.register(address)
    member.acks = False  # the first rekey goes out unacknowledged: its ACK is ours to send
    net.run(until=3540.0)
    copy = net.datagrams[-1]
    sequence = server_rekeying._seq_of(copy, member)
    ack = build_ack(copy[:16], sequence, IdPayload.ipv4(address), member.ack_key)
    forged = data.draw(mutated((*seeds("ack"), ack)))
    source = data.draw(st.sampled_from([(address, 848), ("203.0.113.1", 848)]))
    seen = len(net.events)
    net.rekeying.receive_ack(forged, source, net.now)
    net.flush()
    assert all(isinstance(e, AckDropped | AckReceived | RekeyCompleted) for e in net.events[seen:])
    # The genuine ACK is still taken (unless the input was that very ACK).
    net.rekeying.receive_ack(ack, (address, 848), net.now)
    net.flush()
    assert net.rekeying.member_statuses(1)[address].last_acked_seq == sequence


@settings(max_examples=examples(400), deadline=None, suppress_health_check=SLOW)
@given(
    mutated(seeds("phase1-main", "phase1-aggressive", "informational", "pull", "push", "ack")),
    st.sampled_from(sorted(DIALECTS)),
)
def test_wire_decoders_only_raise_decode_error_on_corpus_mutations(data: bytes, dialect: str):
    with contextlib.suppress(DecodeError):
        decode_message(data, DIALECTS[dialect])


@settings(max_examples=examples(400), deadline=None, suppress_health_check=SLOW)
@given(
    mutated(seeds("pull-plain", "phase1-main-plain", "phase1-aggressive-plain")),
    st.sampled_from(sorted(DIALECTS)),
)
def test_payload_decoders_only_raise_decode_error_on_mutated_plaintexts(data: bytes, dialect: str):
    if len(data) < HEADER_LENGTH:
        return
    ctx = DecodeContext(data[18], DIALECTS[dialect])
    with contextlib.suppress(DecodeError):
        decode_payloads(data, data[16], ctx, HEADER_LENGTH, allow_trailing=True)
