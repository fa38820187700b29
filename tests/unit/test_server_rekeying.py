"""The key server's rekeys on a fake clock: scheduled rekeys, copies, ACKs, heartbeats, reloads.

Members are played here, not run: each one holds what its registration gave it
(the SA KEK, the KD KEK packet, the ACK key of its phase 1 SA) and opens what the
server sends with ``open_push``, exactly as a member would, so every push is
checked against the wire rules and the member's own keys.  No member core runs,
so these tests pin the server alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key

from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.gdoi.pull import GroupOffer
from groupvpn.gdoi.push import (
    HEARTBEAT_INTERVAL_ATTRIBUTE,
    KekMaterial,
    PushOpened,
    PushReceiver,
    PushRejected,
    PushRejection,
    open_push,
    read_group_clock,
)
from groupvpn.gdoi.push_ack import AckKey, acks_requested, build_ack, derive_ack_key
from groupvpn.gdoi.push_deletes import deleted_kek_spis, deleted_tek_spis
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.policy import Phase1Peer
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.runtime import server_views, views
from groupvpn.server.core import KeyServerCore
from groupvpn.server.delivery import DeliverySettings, DeliveryState
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy
from groupvpn.server.rekey import RekeyReason
from groupvpn.server.rekey_events import (
    AckDropped,
    AckReceived,
    HeartbeatSent,
    MemberInactive,
    RekeyCompleted,
    RekeyRetransmitted,
    RekeySent,
    describe,
)
from groupvpn.server.rekeying import KeyServerRekeying, MulticastDatagram, RekeyRefused
from groupvpn.server.signing import SigningKey
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import KeyDownloadPayload, SaKekPayload
from groupvpn.wire.gdoi_numbers import KdType, KekAttribute, KekKeyAttribute
from groupvpn.wire.gdoi_sa import GdoiId
from groupvpn.wire.payloads import IdPayload
from tests.ikepair import proposal

E = TypeVar("E")
SERVER = "192.0.2.20"
M1, M2, M3 = "198.51.100.11", "198.51.100.12", "198.51.100.13"
#: Wall clock minus the fake clock: the group clock is wall time in ms.
OFFSET = 1_800_000_000.0


def _policy(name: str, source: str, destination: str, lifetime: int = 3600) -> GroupPolicySpec:
    return GroupPolicySpec(
        name, IPv4Network(source), IPv4Network(destination), 0, 0, 0,
        ESP_CIPHERS["aes-128-cbc"], ESP_INTEGRITY["hmac-sha1-96"], lifetime,
    )  # fmt: skip


P1 = _policy("p1", "10.1.0.0/16", "10.2.0.0/16")
P2 = _policy("p2", "10.2.0.0/16", "10.1.0.0/16")
UNICAST = KekPolicy(
    KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha1"], lifetime_seconds=7200,
    heartbeat=3600, acks_requested=True,
)  # fmt: skip
GROUP = GroupDefinition(
    "g1", 1, frozenset({"gw"}), (P1, P2), activation_time_delay=15,
    server_address=IPv4Address(SERVER), kek=UNICAST,
)  # fmt: skip


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(1024)


def _ike_sa(address: str, port: int = 848, gateway: str = "gw") -> IkeSa:
    peer = Phase1Peer(gateway, (IPv4Address(address),), "main", (proposal(),), b"k")
    octet = int(IPv4Address(address)) & 0xFF
    return IkeSa(
        role=Role.RESPONDER, mode=Mode.MAIN, peer=(address, port), policy=peer,
        initiator_cookie=bytes([octet]) * 8, responder_cookie=b"r" * 8,
        state=SaState.ESTABLISHED, local_id=IdPayload.ipv4(SERVER), created_at=0.0,
        keys=Phase1Keys(b"s" * 20, b"d" * 20, bytes([octet]) * 20, b"e" * 20, b"k" * 24),
    )  # fmt: skip


def _receiver(
    sak: SaKekPayload, kd: KeyDownloadPayload, public_key: RSAPublicKey | None,
    last: int, dialect: Dialect,
) -> PushReceiver:  # fmt: skip
    [packet] = [p for p in kd.find(KdType.KEK) if p.spi == sak.spi]
    material = {a.type: a.as_bytes() for a in packet.attributes}
    der = material[KekKeyAttribute.SIG_ALGORITHM_KEY]
    key = load_der_public_key(der) if public_key is None else public_key
    assert isinstance(key, RSAPublicKey)
    attributes = {a.type: a.as_int() for a in sak.attributes}
    [cipher] = [
        c for c in KEK_CIPHERS.values()
        if c.algorithm == attributes[KekAttribute.KEK_ALGORITHM]
        and c.key_length_attribute == attributes.get(KekAttribute.KEK_KEY_LENGTH)
    ]  # fmt: skip
    iv_key = material[KekKeyAttribute.KEK_ALGORITHM_KEY]
    kek = KekMaterial.named(sak.spi, cipher.name, iv_key[cipher.block_size :],
                            iv_key[: cipher.block_size])  # fmt: skip
    spec = sig_hash(attributes[KekAttribute.SIG_HASH_ALGORITHM])
    return PushReceiver(kek, key, spec, last, dialect)


@dataclass
class Member:
    """What a registered member holds, and everything it received."""

    address: str
    sa: IkeSa
    offer: GroupOffer
    receivers: dict[bytes, PushReceiver]
    ack_key: AckKey
    dialect: Dialect
    opened: list[tuple[float, PushOpened]] = field(default_factory=list)
    rejected: list[PushRejected] = field(default_factory=list)
    acks: bool = True
    #: The phase 1 identity its ACKs name (its address when None).
    identity: IdPayload | None = None

    def receive(self, data: bytes, now: float) -> bytes | None:
        """Open a push like a member; the ACK to send back, if any."""
        result = open_push(data, self.receivers)
        if isinstance(result, PushRejected):
            self.rejected.append(result)
            return None
        self.opened.append((now, result))
        receiver = self.receivers[result.kek_spi]
        for spi, held in self.receivers.items():
            self.receivers[spi] = replace(held, last_sequence=result.sequence)
        if result.new_kek is not None:
            assert result.key_download is not None
            self.receivers[result.new_kek.spi] = _receiver(
                result.new_kek, result.key_download, receiver.public_key, result.sequence,
                self.dialect,
            )  # fmt: skip
        if result.is_heartbeat or not self.acks:
            return None
        identity = self.identity or IdPayload.ipv4(self.address)
        return build_ack(result.kek_spi, result.sequence, identity, self.ack_key)

    def rekeys(self) -> list[PushOpened]:
        return [opened for _, opened in self.opened if not opened.is_heartbeat]


class Net:
    """One key server's rekeying and its members, on a fake clock."""

    def __init__(
        self, groups: list[GroupDefinition], signing_key: SigningKey, dialect: Dialect = V1
    ) -> None:
        self.dialect = dialect
        self.groups = GroupKeyServer(groups, dialect, signing_key=signing_key, clock_offset=OFFSET)
        self.rekeying = KeyServerRekeying(self.groups, 0.0, source_address=SERVER)
        self.members: dict[str, Member] = {}
        self.events: list[object] = []
        self.sent: list[tuple[float, str, int]] = []  # (time, member, SEQ) of unicast copies
        self.datagrams: list[bytes] = []  # every unicast copy, as sent
        self.multicast: list[tuple[float, MulticastDatagram]] = []
        self.now = 0.0
        #: Whether a datagram reaches the member (True) or is lost.
        self.deliver: Callable[[str, float], bool] = lambda address, now: True

    def register(
        self, address: str, group_id: int = 1, now: float | None = None, gateway: str = "gw"
    ) -> Member:
        now = self.now if now is None else now
        sa = _ike_sa(address, gateway=gateway)
        offer = self.groups.admit(group_id, sa, now, SERVER)
        assert isinstance(offer, GroupOffer)
        record = self.groups.commit(group_id, sa, now)
        self.rekeying.member_registered(record, sa.peer, SERVER, offer.sequence, now)
        assert offer.sa.kek is not None and offer.sequence is not None
        receiver = _receiver(offer.sa.kek, offer.key_download, None, offer.sequence, self.dialect)
        spec = sig_hash(receiver.sig_hash.algorithm)
        cookies = sa.initiator_cookie + sa.responder_cookie
        assert sa.keys is not None
        ack_key = derive_ack_key(spec, sa.keys.skeyid_a, cookies)
        member = Member(address, sa, offer, {offer.sa.kek.spi: receiver}, ack_key, self.dialect)
        self.members[address] = member
        return member

    def run(self, until: float) -> None:
        """Fire the rekeying's timer at each deadline up to ``until``; members answer at once."""
        self.flush()
        while (deadline := self.rekeying.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            self.rekeying.handle_timer(self.now)
            self.flush()
        self.now = max(self.now, until)

    def flush(self) -> None:
        for data, peer in self.rekeying.datagrams_from(SERVER):
            member = self.members[peer[0]]
            self.sent.append((self.now, peer[0], _seq_of(data, member)))
            self.datagrams.append(data)
            if not self.deliver(peer[0], self.now):
                continue
            ack = member.receive(data, self.now)
            if ack is not None:
                self.rekeying.receive_ack(ack, peer, self.now)
        self.multicast += [(self.now, d) for d in self.rekeying.multicast_datagrams()]
        while (event := self.rekeying.next_event()) is not None:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def _seq_of(data: bytes, member: Member) -> int:
    """The SEQ of an encrypted push, read with the member's KEKs (no replay check)."""
    spy = {spi: replace(r, last_sequence=0) for spi, r in member.receivers.items()}
    opened = open_push(data, spy)
    assert isinstance(opened, PushOpened), opened
    return opened.sequence


def _offered(member: Member) -> set[bytes]:
    """The TEK SPIs the member's registration gave it."""
    return {sat.ipsec.spi for sat in member.offer.sa.teks if sat.ipsec is not None}


def _spis(opened: PushOpened) -> set[bytes]:
    return set(opened.tek_spis)


# -- the scheduled TEK rekey ------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_tek_rekey_at_lifetime_minus_4_atd_is_one_push_with_a_new_seq_and_new_spis(
    dialect: Dialect, signing_key: SigningKey
):
    net = Net([GROUP], signing_key, dialect)
    m1, m2 = net.register(M1), net.register(M2)
    registered = _offered(m1)
    assert m1.offer.sequence == 0
    net.run(until=3539.999)
    assert net.of(RekeySent) == [] and m1.opened == []
    assert net.rekeying.next_deadline() == 3540.0  # 3600 - 4 x 15
    net.run(until=3540.0)
    [sent] = net.of(RekeySent)
    assert (sent.group, sent.seq, sent.reasons, sent.members) == ("g1", 1, ("tek-lifetime",), 2)
    assert sent.renewed == ("p1", "p2") and not sent.kek_rollover
    # One push, built once: both members got the same octets, opened with their own KEK.
    for member in (m1, m2):
        [(at, push)] = member.opened
        assert at == 3540.0 and push.sequence == 1 and push.carries_new_teks
        assert not _spis(push) & registered and len(_spis(push)) == 2
        assert push.group_clock == int((OFFSET + 3540.0) * 1000)
        assert push.new_kek is None
        assert push.key_download is not None
        assert {p.spi for p in push.key_download.find(KdType.TEK)} == _spis(push)
    assert m1.rejected == m2.rejected == []
    current = {tek.spi for tek in net.groups.current_teks(1, 3540.0)}
    assert current == _spis(m1.opened[0][1]) and net.groups.sequence(1) == 1
    # Both ACKed: nothing is retransmitted, nobody removed; the rekey is complete.
    assert [(s.address, s.state, s.last_acked_seq) for s in
            net.rekeying.member_statuses(1).values()] == [
        (M1, DeliveryState.ACTIVE, 1), (M2, DeliveryState.ACTIVE, 1)
    ]  # fmt: skip
    [complete] = net.of(RekeyCompleted)
    assert (complete.seq, complete.acked, complete.removed) == (1, 2, 0)
    assert [e.result for e in net.of(AckReceived)] == ["accepted", "accepted"]
    # The new keys' own rekey comes lifetime - 4 x ATD after them.
    assert net.rekeying.next_rekey_at(1) == 3540.0 + 3540.0


def test_pull_offers_carry_the_group_clock_and_the_kek_asks_for_acks_and_heartbeats(
    signing_key: SigningKey,
):
    net = Net([GROUP], signing_key)
    member = net.register(M1, now=12.5)
    assert read_group_clock(member.offer.sa) == int((OFFSET + 12.5) * 1000)
    sak = member.offer.sa.kek
    assert sak is not None and acks_requested(sak)
    assert DataAttribute(HEARTBEAT_INTERVAL_ATTRIBUTE, 3600) in sak.attributes
    multicast = replace(UNICAST, multicast_group=IPv4Address("239.1.1.1"), acks_requested=False)
    other = Net([replace(GROUP, kek=multicast)], signing_key).register(M1).offer.sa.kek
    assert other is not None and not acks_requested(other)


# -- copies, retransmissions, removal ---------------------------------------------------------


def test_a_member_that_never_acks_gets_1_plus_n_copies_and_is_removed(signing_key):
    group = replace(GROUP, delivery=DeliverySettings(number_of_retransmission=2,
                                                     retransmission_period=10.0))  # fmt: skip
    net = Net([group], signing_key)
    net.register(M1)
    silent = net.register(M2)
    silent.acks = False
    net.run(until=3540.0)
    assert net.rekeying.member_statuses(1)[M2].state_text == "waiting-for-ack"
    net.run(until=3550.0)
    assert net.rekeying.member_statuses(1)[M2].state_text == "retransmitting (1/2)"
    net.run(until=3600.0)
    # The first copy at 3540 and the burst pacing of 10 ms: M2's copies at 3540 and
    # then every retransmission-period from when the previous one left.
    copies = [(t, seq) for t, address, seq in net.sent if address == M2]
    assert copies == [(3540.0, 1), (3550.0, 1), (3560.0, 1)]
    assert [(t, seq) for t, address, seq in net.sent if address == M1 and t < 3600] == [(3540.0, 1)]
    assert [(e.address, e.seq, e.copy, e.copies_limit) for e in net.of(RekeyRetransmitted)] == [
        (M2, 1, 2, 3), (M2, 1, 3, 3),
    ]  # fmt: skip
    # One period after the last copy it is inactive: removed from the members.
    [removed] = net.of(MemberInactive)
    assert (removed.group, removed.address, removed.seq, removed.copies) == ("g1", M2, 1, 3)
    assert [m.address for m in net.groups.members()] == [M1]
    assert list(net.rekeying.member_statuses(1)) == [M1]
    assert net.groups.ack_key(1, M2) is None
    [complete] = net.of(RekeyCompleted)
    assert (complete.acked, complete.removed, complete.seconds) == (1, 1, 30.0)
    # A removed member gets no more pushes (the next heartbeat goes to M1 only).
    net.run(until=3600.0 + 1)
    assert [address for t, address, _ in net.sent if t >= 3600.0] == [M1]


def test_a_lost_copy_is_retransmitted_and_the_late_ack_keeps_the_member(signing_key):
    net = Net([GROUP], signing_key)
    member = net.register(M1)
    net.deliver = lambda address, now: now != 3540.0  # the first copy is lost
    net.run(until=3600.0)
    assert [(t, seq) for t, _, seq in net.sent if seq == 1] == [(3540.0, 1), (3550.0, 1)]
    assert [opened.sequence for opened in member.rekeys()] == [1]
    status = net.rekeying.member_statuses(1)[M1]
    assert (status.state, status.last_acked_seq, status.last_ack_at) == (
        DeliveryState.ACTIVE, 1, 3550.0,
    )  # fmt: skip
    assert net.of(MemberInactive) == []


def test_a_forged_ack_changes_nothing(signing_key: SigningKey):
    net = Net([GROUP], signing_key)
    honest = net.register(M1)
    victim = net.register(M2)
    victim.acks = False
    net.run(until=3540.0)
    assert victim.offer.sa.kek is not None
    kek_spi = victim.offer.sa.kek.spi
    # M1 knows its own ACK key and the SEQ, but not M2's key: an ACK "from" M2 (M2's
    # source address spoofed, M2's identity) fails.
    forged = build_ack(kek_spi, 1, IdPayload.ipv4(M2), honest.ack_key)
    before = net.rekeying.member_statuses(1)[M2]
    net.rekeying.receive_ack(forged, (M2, 848), 3541.0)
    net.flush()
    assert net.rekeying.member_statuses(1)[M2] == before
    [dropped] = net.of(AckDropped)
    assert dropped.reason == "bad-hash" and dropped.peer == (M2, 848)
    # From its own address, M1's ACK naming M2 is M1's ACK (its key verified it).
    net.rekeying.receive_ack(forged, (M1, 848), 3541.0)
    net.flush()
    assert net.of(AckReceived)[-1].address == M1
    assert net.rekeying.member_statuses(1)[M2] == before
    # An ACK from nobody's address, and the forgery again, are dropped too (reported
    # once per minute per reason).
    net.rekeying.receive_ack(build_ack(kek_spi, 1, IdPayload.ipv4(M3), honest.ack_key),
                             (M3, 848), 3541.0)  # fmt: skip
    net.rekeying.receive_ack(forged, (M2, 848), 3542.0)
    net.flush()
    assert [e.reason for e in net.of(AckDropped)] == ["bad-hash", "unknown-member"]
    net.run(until=3600.0)
    assert [e.address for e in net.of(MemberInactive)] == [M2]
    line = describe(net.of(AckDropped)[0])
    assert line is not None and honest.ack_key.key.hex() not in line[1]


@pytest.mark.parametrize(
    "identity", [IdPayload.ipv4("10.0.0.5"), IdPayload.fqdn("member1.example.net")],
    ids=["private-address", "fqdn"],
)  # fmt: skip
def test_acks_are_matched_by_the_address_the_registration_came_from_not_the_id(
    identity: IdPayload, signing_key: SigningKey
):
    """Behind NAT (or with a name as phase 1 ID) the ACK's ID is not the address the server saw."""
    net = Net([GROUP], signing_key)
    member = net.register(M1)  # the NAT's public address, as the server saw it
    member.identity = identity
    net.run(until=3540.0)
    [received] = net.of(AckReceived)
    assert (received.address, received.result) == (M1, "accepted")
    assert net.rekeying.member_statuses(1)[M1].last_acked_seq == 1 and net.of(AckDropped) == []


def test_a_member_registered_on_an_older_seq_joins_the_rekey_in_flight(signing_key):
    net = Net([GROUP], signing_key)
    net.register(M1).acks = False  # keeps the rekey in flight
    # M2's pull was answered before the rekey (SEQ 0) and confirmed after it.
    sa = _ike_sa(M2)
    offer = net.groups.admit(1, sa, 3539.0, SERVER)
    assert isinstance(offer, GroupOffer) and offer.sequence == 0
    net.run(until=3540.0)
    record = net.groups.commit(1, sa, 3540.5)
    net.rekeying.member_registered(record, sa.peer, SERVER, offer.sequence, 3540.5)
    assert offer.sa.kek is not None
    receiver = _receiver(offer.sa.kek, offer.key_download, None, 0, V1)
    net.members[M2] = Member(M2, sa, offer, {offer.sa.kek.spi: receiver},
                             derive_ack_key(sig_hash(2), b"x" * 20, bytes(16)), V1)  # fmt: skip
    net.run(until=3540.5)
    assert (3540.5, M2, 1) in net.sent
    assert net.rekeying.member_statuses(1)[M2].state is DeliveryState.WAITING_FOR_ACK


# -- heartbeats -------------------------------------------------------------------------------


def test_heartbeats_every_interval_with_the_current_keys_and_the_group_clock(signing_key):
    group = replace(GROUP, kek=replace(UNICAST, heartbeat=300))
    net = Net([group], signing_key)
    member = net.register(M1, now=10.0)
    net.run(until=1200.0)
    beats = [(t, opened) for t, opened in member.opened]
    assert [t for t, _ in beats] == [300.0, 600.0, 900.0, 1200.0]
    assert [opened.sequence for _, opened in beats] == [1, 2, 3, 4]
    assert all(opened.is_heartbeat for _, opened in beats)
    held = _offered(member)
    assert all(_spis(opened) == held for _, opened in beats)
    assert [opened.group_clock for _, opened in beats] == [
        int((OFFSET + t) * 1000) for t in (300.0, 600.0, 900.0, 1200.0)
    ]
    # Not ACKed, not retransmitted, nobody removed.
    assert len(net.sent) == 4 and net.of(AckReceived) == [] and net.of(MemberInactive) == []
    assert [(e.seq, e.members) for e in net.of(HeartbeatSent)] == [(1, 1), (2, 1), (3, 1), (4, 1)]
    assert net.rekeying.member_statuses(1)[M1].state is DeliveryState.ACTIVE


# -- KEK rollover -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_kek_rollover_rides_under_the_old_kek_and_the_next_push_uses_the_new_one(
    dialect: Dialect, signing_key: SigningKey
):
    # KEK 3600 s, TEKs 7200 s: at 3540 only the KEK is due.
    group = replace(GROUP, policies=(replace(P1, lifetime_seconds=7200),),
                    kek=replace(UNICAST, lifetime_seconds=3600, heartbeat=600))  # fmt: skip
    net = Net([group], signing_key, dialect)
    member = net.register(M1)
    old = net.groups.current_kek(1, 0.0)
    assert old is not None
    net.run(until=3540.0)
    [sent] = net.of(RekeySent)
    assert sent.reasons == ("kek-lifetime",) and sent.kek_rollover and sent.renewed == ()
    [(_, rollover)] = [(t, o) for t, o in member.opened if t == 3540.0]
    assert rollover.kek_spi == old.spi  # protected by the KEK the member holds
    new = net.groups.current_kek(1, 3540.0)
    assert new is not None and new.spi != old.spi
    assert rollover.new_kek is not None and rollover.new_kek.spi == new.spi
    # The ACK of the rollover names the old KEK, and still counts.
    assert net.rekeying.member_statuses(1)[M1].last_acked_seq == rollover.sequence
    # The next push (a heartbeat at 3600) is under the new KEK; a member that missed
    # the rollover cannot open it.
    net.run(until=3600.0)
    heartbeat = member.opened[-1][1]
    assert heartbeat.is_heartbeat and heartbeat.kek_spi == new.spi
    stale = {old.spi: member.receivers[old.spi]}
    missed = open_push(_next_datagram(net), stale)
    assert isinstance(missed, PushRejected) and missed.reason is PushRejection.UNKNOWN_KEK
    # A member registering now gets the new KEK.
    late = net.register(M2, now=3600.0)
    assert late.offer.sa.kek is not None and late.offer.sa.kek.spi == new.spi


def _next_datagram(net: Net) -> bytes:
    """The octets of the next push (a heartbeat here), caught on the way out."""
    deadline = net.rekeying.next_deadline()
    assert deadline is not None
    net.rekeying.handle_timer(deadline)
    [(data, _)] = net.rekeying.datagrams_from(SERVER)
    return data


# -- requests: operator and reload ------------------------------------------------------------


def test_an_operator_rekey_gives_every_member_new_spis_now(signing_key: SigningKey):
    net = Net([GROUP], signing_key)
    member = net.register(M1)
    net.now = 100.0
    sent = net.rekeying.request_rekey("g1", RekeyReason.OPERATOR_REQUEST, 100.0)
    assert (sent.seq, sent.reasons, sent.renewed) == (1, ("operator-request",), ("p1", "p2"))
    net.flush()
    [(at, push)] = member.opened
    assert at == 100.0 and not _spis(push) & _offered(member)
    with pytest.raises(RekeyRefused, match="group nope is not configured"):
        net.rekeying.request_rekey("nope", RekeyReason.OPERATOR_REQUEST, 100.0)
    plain = GroupDefinition("g2", 2, frozenset({"gw"}), (P1,))
    other = Net([GROUP, plain], signing_key)
    with pytest.raises(RekeyRefused, match="no server-member-communication"):
        other.rekeying.request_rekey("g2", RekeyReason.OPERATOR_REQUEST, 0.0)


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_reload_with_a_policy_change_pushes_the_new_policy_set(
    dialect: Dialect, signing_key: SigningKey
):
    net = Net([GROUP], signing_key, dialect)
    member = net.register(M1)
    p3 = _policy("p3", "10.3.0.0/16", "10.4.0.0/16")
    held = {tek.policy.name: tek.spi for tek in net.groups.current_teks(1, 0.0)}
    net.now = 50.0
    outcome = net.rekeying.reconfigure([replace(GROUP, policies=(P1, p3))], 50.0)
    [change] = outcome.changes
    assert change.reasons == (RekeyReason.POLICY_CHANGE,)
    sent = outcome.rekeys[1]
    assert (sent.seq, sent.reasons, sent.renewed) == (1, ("policy-change",), ("p3",))
    net.flush()
    [(_, push)] = member.opened
    # The whole current set: p1's unchanged key and p3's new one.
    current = {tek.policy.name: tek.spi for tek in net.groups.current_teks(1, 50.0)}
    assert current["p1"] == held["p1"] and _spis(push) == set(current.values())
    # The withdrawn policy's key is deleted (RFC 6407; RFC 3547 §4.6 alike).
    deleted = {spi for d in push.deletes for spi in d.spis}
    assert deleted == {held["p2"]}
    assert sent.deleted == len(deleted)
    # The new key's own rekey is scheduled; an unchanged reload pushes nothing.
    assert net.rekeying.next_rekey_at(1) == 3540.0
    again = net.rekeying.reconfigure([replace(GROUP, policies=(P1, p3))], 60.0)
    assert again.changes == [] and again.rekeys == {}


def test_a_changed_policy_gets_a_new_key_and_a_delete_for_its_old_one(signing_key: SigningKey):
    net = Net([GROUP], signing_key, V2)
    member = net.register(M1)
    held = {tek.policy.name: tek.spi for tek in net.groups.current_teks(1, 0.0)}
    p2_elsewhere = _policy("p2", "10.3.0.0/16", "10.4.0.0/16")
    net.now = 50.0
    outcome = net.rekeying.reconfigure([replace(GROUP, policies=(P1, p2_elsewhere))], 50.0)
    assert outcome.rekeys[1].renewed == ("p2",)
    net.flush()
    [(_, push)] = member.opened
    current = {tek.policy.name: tek.spi for tek in net.groups.current_teks(1, 50.0)}
    assert current["p2"] != held["p2"]
    # Same name, new selectors: the old key must not keep encrypting the old traffic.
    assert {spi for d in push.deletes for spi in d.spis} == {held["p2"]}


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_removed_gateways_member_is_evicted_and_the_others_get_new_keys_by_registering(
    dialect: Dialect, signing_key: SigningKey
):
    group = replace(GROUP, gateways=frozenset({"gw", "gw2"}))
    net = Net([group], signing_key, dialect)
    stays, leaves = net.register(M1, gateway="gw2"), net.register(M2, gateway="gw")
    old_kek = net.groups.current_kek(1, 0.0)
    assert old_kek is not None
    old_teks = {tek.spi for tek in net.groups.current_teks(1, 0.0)}
    net.now = 20.0
    outcome = net.rekeying.reconfigure([replace(group, gateways=frozenset({"gw2"}))], 20.0)
    net.flush()
    [sent] = outcome.rekeys.values()
    assert sent.reasons == ("member-removal",) and sent.kek_deleted and sent.members == 1
    assert [r.address for r in net.groups.members()] == [M1]
    # One copy, to the member that stays; no key in it, only the Delete of the KEK
    # (RFC 3547 §4.6: protocol-id 0) that the removed member holds as well.
    assert [(to, seq) for _, to, seq in net.sent] == [(M1, 1)]
    [push] = stays.rekeys()
    assert push.sa is None and push.key_download is None
    assert deleted_kek_spis(push.deletes) == {old_kek.spi} and not deleted_tek_spis(push.deletes)
    [complete] = net.of(RekeyCompleted)  # ACKed under the deleted KEK, like any rekey
    assert (complete.seq, complete.acked) == (1, 1)
    # Every key is new at the server, and only a registration hands them out.
    new_kek = net.groups.current_kek(1, 20.0)
    assert new_kek is not None and new_kek.spi != old_kek.spi
    assert not {tek.spi for tek in net.groups.current_teks(1, 20.0)} & old_teks
    refused = net.groups.admit(1, _ike_sa(M2, gateway="gw"), 21.0, SERVER)
    assert not isinstance(refused, GroupOffer)
    again = net.register(M1, now=21.0, gateway="gw2")
    assert again.offer.sa.kek is not None and again.offer.sa.kek.spi == new_kek.spi
    # Once every member could have registered and activated the new keys (2 copies
    # 10 s apart, then 2 x ATD), a push under the new KEK deletes the old TEKs.
    net.run(until=69.999)
    assert len(net.of(RekeySent)) == 1
    net.run(until=70.0)
    deletes = net.of(RekeySent)[1]
    assert (deletes.seq, deletes.reasons, deletes.deleted) == (2, ("member-removal",), 2)
    [(at, cleanup)] = [(at, o) for at, o in again.opened if not o.is_heartbeat]
    assert at == 70.0 and cleanup.kek_spi == new_kek.spi
    assert set(deleted_tek_spis(cleanup.deletes)) == old_teks
    # The removed member was sent nothing.  Had it captured the pushes: the first tells
    # it only that its KEK is gone, the second it cannot open.
    assert leaves.opened == []
    first, second = (open_push(d, leaves.receivers) for d in net.datagrams[-2:])
    assert isinstance(first, PushOpened) and first.key_download is None and first.sa is None
    assert isinstance(second, PushRejected) and second.reason is PushRejection.UNKNOWN_KEK


def test_reload_timings_apply_at_once(signing_key: SigningKey):
    net = Net([GROUP], signing_key)
    silent = net.register(M1)
    silent.acks = False
    slower = replace(GROUP, delivery=DeliverySettings(number_of_retransmission=1,
                                                      retransmission_period=30.0))  # fmt: skip
    outcome = net.rekeying.reconfigure([slower], 0.0)
    assert outcome.changes[0].reasons == () and outcome.rekeys == {}
    net.run(until=3540.0 + 61)
    copies = [t for t, address, _ in net.sent if address == M1]
    assert copies == [3540.0, 3570.0]
    assert [e.address for e in net.of(MemberInactive)] == [M1]


# -- multicast --------------------------------------------------------------------------------


def test_multicast_rekeys_are_one_copy_to_the_group_and_nobody_is_removed(signing_key):
    policy = replace(UNICAST, multicast_group=IPv4Address("239.1.1.1"), acks_requested=False)
    group = replace(GROUP, kek=policy, multicast_interface="ge-0/0/1.0",
                    multicast_interface_address=IPv4Address("192.0.2.1"))  # fmt: skip
    net = Net([group], signing_key)
    members = [net.register(address) for address in (M1, M2, M3)]
    net.run(until=3600.0)
    assert net.sent == []  # no unicast copy at all
    [(at, rekey), (at2, heartbeat)] = net.multicast
    assert (at, at2) == (3540.0, 3600.0)
    assert rekey.destination == ("239.1.1.1", 848) and rekey.group == "g1"
    assert rekey.interface == IPv4Address("192.0.2.1")
    for member in members:  # what a member receives from the group address
        assert member.receive(rekey.data, at) is not None
        assert member.receive(heartbeat.data, at2) is None
        assert [o.sequence for _, o in member.opened] == [1, 2]
    [sent] = net.of(RekeySent)
    assert sent.members is None and sent.destination == "239.1.1.1:848"
    statuses = net.rekeying.member_statuses(1)
    assert [s.state_text for s in statuses.values()] == ["registered"] * 3
    assert len(net.groups.members()) == 3 and net.of(MemberInactive) == []


MULTICAST = replace(UNICAST, multicast_group=IPv4Address("239.1.1.1"), acks_requested=False)
MULTICAST_GROUP = replace(GROUP, kek=MULTICAST, multicast_interface="ge-0/0/1.0",
                          multicast_interface_address=IPv4Address("192.0.2.1"))  # fmt: skip


def test_a_reload_to_multicast_hands_the_rollover_to_unicast_then_pushes_to_the_group(
    signing_key: SigningKey,
):
    """Members learn the multicast group from the rollover's SA KEK: it must reach them unicast."""
    net = Net([GROUP], signing_key)
    m1, m2 = net.register(M1), net.register(M2)
    net.now = 100.0
    outcome = net.rekeying.reconfigure([MULTICAST_GROUP], 100.0)
    net.flush()
    [sent] = outcome.rekeys.values()
    assert sent.kek_rollover and sent.members == 2 and sent.destination is None
    assert net.multicast == []  # nobody has joined the group yet
    assert [(to, seq) for _, to, seq in net.sent] == [(M1, 1), (M2, 1)]
    for member in (m1, m2):
        [push] = member.rekeys()
        assert push.new_kek is not None and push.new_kek.dst == GdoiId.ipv4("239.1.1.1", 848)
        assert not acks_requested(push.new_kek)
    # Both ACKed under the old unicast delivery: the handover is complete.
    [complete] = net.of(RekeyCompleted)
    assert (complete.seq, complete.acked, complete.removed) == (1, 2, 0)
    assert [s.state_text for s in net.rekeying.member_statuses(1).values()] == ["registered"] * 2
    # From now on one copy to the group, under the new KEK, and no unicast copy.
    net.rekeying.request_rekey("g1", RekeyReason.OPERATOR_REQUEST, 200.0)
    net.now = 200.0
    net.flush()
    [(_, rekey)] = net.multicast
    assert rekey.destination == ("239.1.1.1", 848) and len(net.sent) == 2
    for member in (m1, m2):
        member.receive(rekey.data, 200.0)
        assert member.rejected == [] and [p.sequence for p in member.rekeys()] == [1, 2]
        assert member.rekeys()[1].kek_spi == sent_kek_spi(member)


def sent_kek_spi(member: Member) -> bytes:
    """The SPI of the KEK the member's first pushed rekey rolled it over to."""
    new_kek = member.rekeys()[0].new_kek
    assert new_kek is not None
    return new_kek.spi


def test_a_member_that_misses_the_handover_rekey_is_retransmitted_to_and_removed(
    signing_key: SigningKey,
):
    net = Net([replace(GROUP, delivery=DeliverySettings(1, 5.0))], signing_key)
    net.register(M1), net.register(M2)
    net.deliver = lambda address, now: address != M2
    net.now = 100.0
    net.rekeying.reconfigure([replace(MULTICAST_GROUP, delivery=DeliverySettings(1, 5.0))], 100.0)
    net.run(until=109.0)
    statuses = net.rekeying.member_statuses(1)
    assert statuses[M2].state_text == "retransmitting (1/1)"  # still the handover's view
    assert [(at, to) for at, to, _ in net.sent if to == M2] == [(100.0, M2), (105.0, M2)]
    net.run(until=111.0)
    [inactive] = net.of(MemberInactive)
    assert (inactive.address, inactive.seq) == (M2, 1)
    assert [r.address for r in net.groups.members()] == [M1]
    assert list(net.rekeying.member_statuses(1)) == [M1]  # gone from the new delivery too
    assert net.rekeying.member_statuses(1)[M1].state_text == "registered"


def test_a_reload_to_unicast_sends_the_rollover_to_the_group_then_unicast_copies_with_acks(
    signing_key: SigningKey,
):
    net = Net([MULTICAST_GROUP], signing_key)
    m1, m2 = net.register(M1), net.register(M2)
    net.now = 100.0
    net.rekeying.reconfigure([GROUP], 100.0)
    net.flush()
    [(_, rollover)] = net.multicast  # what the members still listen to
    assert rollover.destination == ("239.1.1.1", 848) and net.sent == []
    for member in (m1, m2):
        member.receive(rollover.data, 100.0)
        [push] = member.rekeys()
        assert push.new_kek is not None and acks_requested(push.new_kek)
        assert push.new_kek.dst == GdoiId.ipv4("0.0.0.0", 0)
    assert [s.state_text for s in net.rekeying.member_statuses(1).values()] == ["active"] * 2
    net.rekeying.request_rekey("g1", RekeyReason.OPERATOR_REQUEST, 200.0)
    net.now = 200.0
    net.flush()
    assert len(net.multicast) == 1 and [(to, seq) for _, to, seq in net.sent] == [(M1, 2), (M2, 2)]
    assert [e.result for e in net.of(AckReceived)] == ["accepted", "accepted"]
    assert [s.last_acked_seq for s in net.rekeying.member_statuses(1).values()] == [2, 2]


# -- the core: ACKs reach the rekeying before the IKE endpoint ---------------------------------


def test_the_core_takes_acks_off_its_socket_and_sends_copies_from_its_address(signing_key):
    groups = GroupKeyServer([GROUP], V1, signing_key=signing_key, clock_offset=OFFSET)
    rekeying = KeyServerRekeying(groups, 0.0, source_address=SERVER)
    core = KeyServerCore(IkeEndpoint(SERVER, []), groups, rekeying=rekeying)
    sa = _ike_sa(M1, 4500)
    offer = groups.admit(1, sa, 0.0, SERVER)
    assert isinstance(offer, GroupOffer)
    rekeying.member_registered(groups.commit(1, sa, 0.0), sa.peer, SERVER, 0, 0.0)
    assert core.get_timer() == 3540.0
    core.handle_timer(3540.0)
    [(data, peer)] = core.datagrams_to_send()
    assert peer == (M1, 4500)  # the member's IKE SA port
    cookies = sa.initiator_cookie + sa.responder_cookie
    assert sa.keys is not None
    key = derive_ack_key(sig_hash(2), sa.keys.skeyid_a, cookies)
    ack = build_ack(data[:16], 1, IdPayload.ipv4(M1), key)
    core.receive_datagram(ack, (M1, 4500), 3540.1)
    events = []
    while (event := core.next_event()) is not None:
        events.append(event)
    assert [type(e).__name__ for e in events] == ["RekeySent", "AckReceived", "RekeyCompleted"]
    assert rekeying.member_statuses(1)[M1].last_acked_seq == 1
    assert core.ike.next_event() is None  # the IKE endpoint never saw it


def test_event_lines_name_groups_addresses_and_seqs_only():
    lines = [
        describe(RekeySent("g1", 1, 4, ("policy-change",), 2, None, ("p3",), False, 1)),
        describe(HeartbeatSent("g1", 1, 5, None, "239.1.1.1:848")),
        describe(RekeyRetransmitted("g1", M1, 4, 2, 3)),
        describe(AckReceived("g1", M1, 4, "accepted")),
        describe(MemberInactive("g1", 1, M2, 4, 3)),
    ]
    assert [line[1] if line else None for line in lines] == [
        "rekey sent: group=g1 group-id=1 seq=4 reasons=policy-change members=2 new-teks=p3 "
        "kek=kept deleted-teks=1",
        "heartbeat sent: group=g1 group-id=1 seq=5 multicast=239.1.1.1:848",
        f"rekey retransmitted: group=g1 peer={M1} seq=4 copy=2/3",
        f"rekey ACK received: group=g1 peer={M1} seq=4 result=accepted",
        f"member removed (inactive): group=g1 group-id=1 peer={M2} seq=4 copies=3",
    ]
    assert describe(object()) is None
    # Accepted ACKs (one per member and rekey) only at debug level; the rest is news.
    levels = [describe(AckReceived("g1", M1, 4, result)) for result in ("accepted", "stale")]
    assert [level[0] if level else None for level in levels] == [logging.DEBUG, logging.INFO]


# -- what show says ---------------------------------------------------------------------------


def test_the_views_show_each_members_state_and_the_schedule_and_no_secret(signing_key):
    net = Net([GROUP], signing_key)
    answering = net.register(M1)
    net.register(M2).acks = False
    net.run(until=3550.0)
    clock = views.Clock(3550.0, OFFSET + 3550.0)
    view = server_views.registered_members(net.groups, clock, None, net.rekeying)
    [group] = view["groups"]
    assert group["communication-type"] == "unicast"
    first, second = group["members"]
    assert (first["state"], first["last-acked-sequence"], first["pending-sequence"]) == (
        "active", 1, None,
    )  # fmt: skip
    assert first["last-ack"] == clock.utc(3540.0)
    assert (second["state"], second["last-acked-sequence"], second["last-ack"]) == (
        "retransmitting (1/2)", None, None,
    )  # fmt: skip
    assert second["pending-sequence"] == 1
    kek_view = server_views.kek_security_associations(net.groups, clock, net.rekeying)
    [kek] = kek_view["security-associations"]
    # The new TEKs (made at 3540) are due at 3540 + 3540; the next heartbeat at 3600.
    assert (kek["sequence"], kek["next-rekey-seconds"], kek["next-heartbeat-seconds"]) == (
        1, 3530, 50,
    )  # fmt: skip
    # A group without server-member-communication: everyone registered, no rekey state.
    plain = Net([GroupDefinition("g2", 2, frozenset({"gw"}), (P1,))], signing_key)
    sa = _ike_sa(M3)
    plain.groups.admit(2, sa, 0.0, SERVER)
    plain.groups.commit(2, sa, 0.0)
    [other] = server_views.registered_members(plain.groups, clock, None, plain.rekeying)["groups"]
    assert other["communication-type"] is None
    assert other["members"][0]["state"] == "registered"
    secret = answering.ack_key.key.hex()
    text = json.dumps(view) + json.dumps(kek_view) + repr(net.groups.ack_key(1, M1))
    text += "".join(repr(event) for event in net.events)
    assert secret not in text and net.groups.ack_key(1, M1) == answering.ack_key
