"""AES-GCM in a group: sender IDs (RFC 6054) handed out in GROUPKEY-PULL (RFC 6407).

From the wire up: the GCM SA TEK and key packet the key server builds, the SID key
packet, GAP ``SENDER_ID_REQUEST`` in message 3 and the KD SID packet in message 4
(both roles, v2; never in v1), the server's allocation (fresh per registration,
distinct across members, refused when exhausted), the member keeping its SID per
group VPN and refusing GCM without one, and the nonces two members, or one member
before and after a restart, put on the wire never meeting.
"""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from groupvpn.dataplane.antireplay import TimeWindow
from groupvpn.dataplane.drops import Refusal, Refused
from groupvpn.dataplane.esp import EspSa, ipv4_checksum
from groupvpn.dataplane.sadb import suite_of
from groupvpn.gdoi.pull import GroupOffer, PullError, PullInitiator, PullResponder, Registration
from groupvpn.gdoi.sender_ids import (
    SID_BITS,
    SenderId,
    offers_counter_mode,
    requested_sender_ids,
    sender_id_request,
    sender_ids_of,
    sid_key_packet,
)
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.sa import IkeSa
from groupvpn.member.core import GroupVpn, MemberCore, Registered, RegistrationFailed
from groupvpn.member.keys import GroupSa, UnusableTek, group_sas, registration_sender_id
from groupvpn.member.rekeys import GroupKeys
from groupvpn.server.core import KeyServerCore, MemberRegistered, RegistrationRefused
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import ExchangeType, NotifyType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GapPayload, GdoiSaPayload, KeyDownloadPayload, KeyPacket
from groupvpn.wire.gdoi_numbers import (
    EspTransform,
    GapAttribute,
    IpsecAttribute,
    KdType,
    SidAttribute,
    TekKeyAttribute,
)
from groupvpn.wire.message import IsakmpHeader, decode_payloads, encode_payloads
from groupvpn.wire.payloads import DecodeContext
from tests.ikepair import make_pair, peer
from tests.unit.test_registration import MEMBER_IP, SERVER_IP, Net
from tests.unit.test_server_groups import _ike_sa

NOW = 0.0
GROUP_TIME = 1_790_000_000.0


def gcm_policy(name: str = "p1", cipher: str = "aes-128-gcm") -> GroupPolicySpec:
    return GroupPolicySpec(
        name, IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0,
        ESP_CIPHERS[cipher], None, 3600,
    )  # fmt: skip


def cbc_policy(name: str = "c1") -> GroupPolicySpec:
    return GroupPolicySpec(
        name, IPv4Network("10.2.0.0/16"), IPv4Network("10.1.0.0/16"), 0, 0, 0,
        ESP_CIPHERS["aes-128-cbc"], ESP_INTEGRITY["hmac-sha1-96"], 3600,
    )  # fmt: skip


GCM_GROUP = GroupDefinition(
    "g1", 1, frozenset({"gw-member1", "gw-member2"}), (gcm_policy(), cbc_policy())
)
CBC_GROUP = GroupDefinition("g2", 2, frozenset({"gw-member1"}), (cbc_policy(),))


# --- the SA TEK and key packet of an AES-GCM policy ------------------------------------------


@pytest.mark.parametrize(("cipher", "bits", "octets"), [("aes-128-gcm", 128, 20),
                                                          ("aes-256-gcm", 256, 36)])  # fmt: skip
def test_a_gcm_sa_tek_and_key_packet_have_the_rfc_4106_shape(
    cipher: str, bits: int, octets: int
) -> None:
    group = replace(GCM_GROUP, policies=(gcm_policy(cipher=cipher),))
    offer = GroupKeyServer([group], V2).admit(1, _ike_sa("gw-member1"), 100.0)
    assert isinstance(offer, GroupOffer)
    (sat,) = offer.sa.teks
    tek = sat.ipsec
    assert (
        tek is not None
        and tek.transform_id == EspTransform.ESP_AES_GCM_16
        and tek.transform_id == 20
    )
    # Known structure: no AUTHENTICATION_ALGORITHM, KEY_LENGTH in bits.
    assert [(a.type, a.value) for a in tek.attributes[:4]] == [
        (IpsecAttribute.SA_LIFE_TYPE, 1),
        (IpsecAttribute.SA_LIFE_DURATION, 3600),
        (IpsecAttribute.ENCAPSULATION_MODE, 1),
        (IpsecAttribute.KEY_LENGTH, bits),
    ]
    assert IpsecAttribute.AUTHENTICATION_ALGORITHM not in {a.type for a in tek.attributes}
    # KD: TEK_ALGORITHM_KEY = key | 4-octet salt, and no TEK_INTEGRITY_KEY.
    (packet,) = offer.key_download.packets
    assert packet.kd_type == KdType.TEK and packet.spi == tek.spi
    assert [(a.type, len(a.as_bytes())) for a in packet.attributes] == [
        (TekKeyAttribute.TEK_ALGORITHM_KEY, octets)
    ]
    encoded = encode_payloads([offer.key_download])[1]
    # KD header (4) + count/reserved (4) + KD type 1, reserved, length, SPI size 4, SPI,
    # then the one TLV attribute: type 1, length, key | salt.
    length = 5 + 4 + 4 + octets
    assert encoded[8:17] == bytes([1, 0]) + length.to_bytes(2, "big") + b"\x04" + tek.spi
    assert encoded[17:21] == b"\x00\x01" + octets.to_bytes(2, "big")
    # The member reads it back as a GCM group SA without integrity.
    registration = Registration(1, offer.sa, offer.key_download, None)
    (sa,) = group_sas("vpn1", registration, 0.0)
    assert sa.cipher.name == cipher and sa.integrity is None and sa.suite_name == cipher
    assert len(sa.encryption_key) == octets and sa.integrity_key == b""
    assert suite_of(sa).name == cipher


def test_a_gcm_sa_tek_with_an_authentication_algorithm_is_unusable() -> None:
    offer = GroupKeyServer([GCM_GROUP], V2).admit(1, _ike_sa("gw-member1"), 0.0)
    assert isinstance(offer, GroupOffer)
    sat = offer.sa.teks[0]
    assert sat.ipsec is not None
    spoilt = replace(
        sat, spec=replace(sat.ipsec, attributes=(*sat.ipsec.attributes, DataAttribute.basic(5, 2)))
    )
    sa = replace(offer.sa, teks=(spoilt, *offer.sa.teks[1:]))
    with pytest.raises(UnusableTek, match="aes-128-gcm with authentication algorithm"):
        group_sas("vpn1", Registration(1, sa, offer.key_download, None), 0.0)


def test_policies_pair_gcm_with_no_integrity_and_cbc_with_one() -> None:
    with pytest.raises(ValueError, match="aes-128-gcm takes no integrity"):
        replace(gcm_policy(), integrity=ESP_INTEGRITY["hmac-sha1-96"])
    with pytest.raises(ValueError, match="aes-128-cbc takes an integrity"):
        replace(cbc_policy(), integrity=None)


def test_gcm_groups_are_refused_in_the_v1_dialect() -> None:
    with pytest.raises(ValueError, match=r"g1: match-policy p1 uses aes-128-gcm.*--dialect v2"):
        GroupKeyServer([GCM_GROUP], V1)
    server = GroupKeyServer([CBC_GROUP], V1)
    with pytest.raises(ValueError, match="only the v2 dialect"):
        server.reconfigure([CBC_GROUP, GCM_GROUP])
    assert [d.name for d in server.definitions()] == ["g2"]  # the reload changed nothing


# --- the wire: SENDER_ID_REQUEST and the SID key packet ----------------------------------------


def test_the_sid_key_packet_and_the_request_round_trip() -> None:
    ids = (SenderId(0, SID_BITS), SenderId(0xABCDEF, SID_BITS))
    packet = sid_key_packet(ids)
    assert packet.kd_type == 4 and packet.spi == b""
    assert [(a.type, a.value) for a in packet.attributes] == [
        (SidAttribute.NUMBER_OF_SID_BITS, 24),  # basic
        (SidAttribute.SID_VALUE, bytes(4)),  # variable, 4 octets
        (SidAttribute.SID_VALUE, bytes.fromhex("00abcdef")),
    ]
    kd = KeyDownloadPayload((packet,))
    octets = encode_payloads([kd])[1]
    # KD type 4, SPI size 0, NUMBER_OF_SID_BITS as TV 0x8001 0018, SID_VALUE TLV.
    assert octets[8:13] == bytes([4, 0]) + (5 + 4 + 8 + 8).to_bytes(2, "big") + b"\x00"
    assert octets[13:21] == bytes.fromhex("80010018 00020004")
    decoded = decode_payloads(octets, 17, DecodeContext(ExchangeType.GROUPKEY_PULL, V2))
    assert sender_ids_of(decoded.payloads[0]) == ids  # type: ignore[arg-type]
    gap = sender_id_request()
    assert [(a.type, a.value) for a in gap.attributes] == [(GapAttribute.SENDER_ID_REQUEST, 1)]
    assert requested_sender_ids(gap) == 1 and requested_sender_ids(None) == 0
    assert requested_sender_ids(GapPayload((DataAttribute.basic(1, 15),))) == 0


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ((DataAttribute.variable(2, b"\0\0\0\1"),), "0 NUMBER_OF_SID_BITS"),
        ((DataAttribute.basic(1, 24),), "no SID_VALUE"),
        ((DataAttribute.basic(1, 24), DataAttribute.variable(2, b"")), "SID_VALUE of 0 octets"),
        ((DataAttribute.basic(1, 8), DataAttribute.variable(2, b"\x01\x00")), "fit 8 bits"),
        ((DataAttribute.basic(1, 40), DataAttribute.variable(2, b"\x01")), "40 bits"),
        ((DataAttribute.basic(1, 24), DataAttribute.basic(3, 1)), "attribute 3"),
    ],
)
def test_a_malformed_sid_packet_makes_the_registration_unusable(
    attributes: tuple[DataAttribute, ...], message: str
) -> None:
    kd = KeyDownloadPayload((KeyPacket(KdType.SID, b"", attributes),))
    with pytest.raises(ValueError, match=message):
        sender_ids_of(kd)
    registration = Registration(1, GdoiSaPayload(2, 0, gap=sender_id_request()), kd, None, 1)
    with pytest.raises(UnusableTek, match="sender ID"):
        registration_sender_id(registration)


def test_a_sid_value_of_other_lengths_is_read() -> None:
    for octets in (b"\x07", b"\x00\x07", b"\x00\x00\x00\x07", bytes(7) + b"\x07"):
        kd = KeyDownloadPayload(
            (
                KeyPacket(
                    KdType.SID, b"", (DataAttribute.basic(1, 16), DataAttribute.variable(2, octets))
                ),
            )
        )
        assert sender_ids_of(kd) == (SenderId(7, 16),)


# --- GROUPKEY-PULL: both roles -------------------------------------------------------------------


class Pull:
    """One GROUPKEY-PULL between an initiator and a responder over real phase 1 endpoints."""

    def __init__(self, offer: GroupOffer, dialect: Dialect, grant: object = "server") -> None:
        self.pair = make_pair()
        self.pair.initiator.initiate("gw", 0.0)
        self.pair.transfer()
        [info] = self.pair.initiator.established()
        member_sa = self.pair.initiator.find_sa(info.initiator_cookie, info.responder_cookie)
        assert member_sa is not None
        self.granted: list[tuple[int, int]] = []
        self.sent_by_member: list[bytes] = []
        self.results: list[object] = []
        self.refusals: list[PullError] = []
        self.offer = offer

        def server_grant(group_id: int, wanted: int) -> tuple[SenderId, ...] | PullError:
            self.granted.append((group_id, wanted))
            return (SenderId(41 + len(self.granted), SID_BITS),)

        chosen = server_grant if grant == "server" else grant
        responders: dict[int, PullResponder] = {}

        def server_side(sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
            responder = responders.setdefault(
                header.message_id,
                PullResponder(
                    sa, message_id=header.message_id,
                    nonce=b"r" * 16, dialect=dialect, admit=lambda group_id, _sa: offer,
                    grant_sender_ids=chosen,  # type: ignore[arg-type]
                ),
            )  # fmt: skip
            try:
                progress = responder.receive(header, data)
            except PullError as refusal:
                self.refusals.append(refusal)
                return
            if progress.send:
                self.pair.responder.send(sa, progress.send)
            if progress.admitted:
                self.results.append(progress.admitted)

        self.member = PullInitiator(
            member_sa, 7, message_id=0x1234ABCD, nonce=b"i" * 16, dialect=dialect
        )

        def member_side(sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
            progress = self.member.receive(header, data)
            if progress.send:
                self.sent_by_member.append(progress.send)
                self.pair.initiator.send(sa, progress.send)
            if progress.registration:
                self.results.append(progress.registration)

        self.pair.responder.handle_exchange(ExchangeType.GROUPKEY_PULL, server_side)
        self.pair.initiator.handle_exchange(ExchangeType.GROUPKEY_PULL, member_side)
        self.member_sa = member_sa

    def run(self) -> None:
        self.pair.initiator.send(self.member_sa, self.member.first_message())
        self.pair.transfer()

    @property
    def admitted(self) -> GroupOffer:
        (offer,) = [r for r in self.results if isinstance(r, GroupOffer)]
        return offer

    @property
    def registration(self) -> Registration:
        (registration,) = [r for r in self.results if isinstance(r, Registration)]
        return registration


def offer_for(group: GroupDefinition, dialect: Dialect) -> GroupOffer:
    offer = GroupKeyServer([group], dialect).admit(group.group_id, _ike_sa("gw-member1"), 0.0)
    assert isinstance(offer, GroupOffer)
    return offer


def test_a_member_offered_gcm_asks_for_one_sid_and_gets_it_in_message_4() -> None:
    offer = offer_for(GCM_GROUP, V2)
    assert offers_counter_mode(offer.sa)
    pull = Pull(offer, V2)
    pull.run()
    assert pull.granted == [(7, 1)]  # asked for one SID, for the group it pulled
    registration = pull.registration
    assert registration.sender_ids_requested == 1
    # Message 4's KD: the TEK packets, then the SID packet; HASH(4) covered it all.
    kinds = [p.kd_type for p in registration.key_download.packets]
    assert kinds == [KdType.TEK, KdType.TEK, KdType.SID]
    assert registration_sender_id(registration) == SenderId(42, SID_BITS)
    assert pull.admitted.sender_ids == (SenderId(42, SID_BITS),)
    assert pull.admitted.key_download == registration.key_download


def test_the_gap_of_message_3_is_covered_by_hash_3() -> None:
    pull = Pull(offer_for(GCM_GROUP, V2), V2)
    honest = pull.member._hash3
    pull.member._hash3 = lambda after: honest(b"")  # type: ignore[method-assign]
    pull.run()
    (refusal,) = pull.refusals
    assert refusal.notify == NotifyType.INVALID_HASH_INFORMATION
    assert pull.granted == [] and pull.results == []


@pytest.mark.parametrize(
    ("group", "dialect"), [(GCM_GROUP, V1), (CBC_GROUP, V2), (CBC_GROUP, V1)],
    ids=["gcm-v1", "cbc-v2", "cbc-v1"],
)  # fmt: skip
def test_no_sid_is_asked_for_in_v1_or_without_a_counter_mode(
    group: GroupDefinition, dialect: Dialect
) -> None:
    # (A v1 key server refuses GCM groups; the offer is built in v2 and given v1's SA
    # TEK layout, to show what a v1 member does with a GCM offer.)
    offer = offer_for(group, V2)
    if dialect is V1:
        teks = tuple(replace(sat, id_length_octets=1) for sat in offer.sa.teks)
        offer = replace(offer, sa=replace(offer.sa, gap=None, teks=teks))
    pull = Pull(offer, dialect)
    pull.run()
    assert pull.granted == []
    registration = pull.registration
    assert registration.sender_ids_requested == 0
    assert KdType.SID not in {p.kd_type for p in registration.key_download.packets}
    assert registration_sender_id(registration) is None


def test_a_key_server_that_hands_out_none_leaves_the_member_without_a_sid() -> None:
    pull = Pull(offer_for(GCM_GROUP, V2), V2, grant=None)
    pull.run()
    assert pull.registration.sender_ids_requested == 1
    assert registration_sender_id(pull.registration) is None


def test_a_refused_grant_refuses_the_registration_at_message_3() -> None:
    def exhausted(group_id: int, wanted: int) -> PullError:
        return PullError("no sender IDs left", NotifyType.NO_PROPOSAL_CHOSEN)

    pull = Pull(offer_for(GCM_GROUP, V2), V2, grant=exhausted)
    pull.run()
    (refusal,) = pull.refusals
    assert (refusal.reason, refusal.notify) == ("no sender IDs left", 14)
    assert pull.results == []


# --- the key server's allocation ----------------------------------------------------------------


def test_every_registration_gets_a_fresh_sid_and_groups_count_on_their_own() -> None:
    server = GroupKeyServer([GCM_GROUP, replace(GCM_GROUP, name="g3", group_id=3)], V2)
    first = [server.grant_sender_ids(1, 1) for _ in range(3)]
    assert first == [(SenderId(n, SID_BITS),) for n in range(3)]
    assert server.grant_sender_ids(3, 5) == (SenderId(0, SID_BITS),)  # one, whatever asked
    assert server.grant_sender_ids(1, 0) == ()
    assert server.sender_ids_left(1) == (1 << 24) - 3
    # A reload that changes the group keeps its count (its members keep their SIDs).
    server.reconfigure([replace(GCM_GROUP, activation_time_delay=20),
                        replace(GCM_GROUP, name="g3", group_id=3)])  # fmt: skip
    assert server.grant_sender_ids(1, 1) == (SenderId(3, SID_BITS),)


def test_an_exhausted_group_refuses_further_gcm_registrations() -> None:
    server = GroupKeyServer([GCM_GROUP], V2)
    server._groups[1].next_sender_id = (1 << 24) - 1
    assert server.grant_sender_ids(1, 1) == (SenderId((1 << 24) - 1, SID_BITS),)
    assert server.sender_ids_left(1) == 0
    refused = server.grant_sender_ids(1, 1)
    assert isinstance(refused, PullError)
    assert refused.reason == (
        "group g1 has handed out all 16777216 sender IDs: registrations asking for one "
        "(AES-GCM) are refused until the group's stored state is cleared (docs/persistence.md)"
    )
    assert refused.notify == NotifyType.NO_PROPOSAL_CHOSEN
    again = server.grant_sender_ids(1, 1)  # and stays so: nothing is reused
    assert isinstance(again, PullError) and again.reason == refused.reason


# --- members and key server, in memory ----------------------------------------------------------


class MemberNet(Net):
    """test_registration's Net for a member at any address."""

    member_ip: str = MEMBER_IP

    def run(self, until: float = 600.0) -> None:
        while True:
            for _ in range(100):
                moved = False
                for data, _ in self.member.datagrams_to_send():
                    moved = True
                    self.server.receive_datagram(data, (self.member_ip, 848), self.now)
                for data, _ in self.server.datagrams_to_send():
                    moved = True
                    self.member.receive_datagram(data, (SERVER_IP, 848), self.now)
                self._collect()
                if not moved:
                    break
            timers = [t for t in (self.server.get_timer(), self.member.get_timer()) if t]
            if not timers or min(timers) > until:
                return
            self.now = max(self.now, min(timers))
            self.server.handle_timer(self.now)
            self.member.handle_timer(self.now)


def key_server(groups: GroupKeyServer | None = None) -> KeyServerCore:
    server_ike = IkeEndpoint(
        SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk"),
                    peer("198.51.100.12", gateway="gw-member2", psk=b"psk")],
    )  # fmt: skip
    return KeyServerCore(server_ike, groups or GroupKeyServer([GCM_GROUP], V2))


def gcm_net(
    *, member_ip: str = MEMBER_IP, server: GroupKeyServer | None = None,
    core: KeyServerCore | None = None,
) -> MemberNet:  # fmt: skip
    net = MemberNet(core or key_server(server), member(member_ip))
    net.member_ip = member_ip
    return net


def member(address: str) -> MemberCore:
    ike = IkeEndpoint(address, [peer(SERVER_IP, gateway="gw1", psk=b"psk")])
    core = MemberCore(ike, [GroupVpn("vpn1", "gw1", 1)], V2, jitter=random.Random(7))
    core.handle_timer(0.0)
    return core


def gcm_key(core: MemberCore) -> GroupSa:
    (keys,) = core.group_keys()
    (sa,) = [
        sa for s in keys.keyring.policies() for sa in keys.keyring.decrypt_keys(s)
        if sa.cipher.counter_mode
    ]  # fmt: skip
    return sa


def inner(n: int) -> bytes:
    header = bytearray(20)
    header[0], header[2:4], header[8], header[9] = 0x45, (28).to_bytes(2, "big"), 64, 17
    header[12:16] = IPv4Address("10.1.1.1").packed
    header[16:20] = IPv4Address("10.2.2.2").packed
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + n.to_bytes(8, "big")


def nonces(sa: GroupSa, packets: int, counter: int = 0) -> list[bytes]:
    """The IVs (salt aside, the nonces) of ``packets`` packets under ``sa`` as a member
    sends them: an EspSa with the key's sender ID, its counter from ``counter``."""
    esp = EspSa(
        suite_of(sa), sa.spi, sa.encryption_key, window=TimeWindow.seconds(100),
        sender_id=sa.sender_id, nonce_counter=counter,
    )  # fmt: skip
    out = []
    for n in range(packets):
        packet = esp.encapsulate(inner(n), GROUP_TIME)
        assert isinstance(packet, bytes), packet
        out.append(packet[28:36])
    return out


def test_a_member_keeps_its_sid_per_group_vpn_and_the_server_records_it() -> None:
    net = gcm_net()
    net.run(until=5.0)
    (registered,) = [e for e in net.member_events if isinstance(e, Registered)]
    (keys,) = net.member.group_keys()
    assert keys.sender_id == SenderId(0, SID_BITS)
    by_cipher = {sa.cipher.name: sa.sender_id for sa in registered.sas}
    assert by_cipher == {"aes-128-gcm": SenderId(0, SID_BITS), "aes-128-cbc": None}
    (record,) = [e.member for e in net.server_events if isinstance(e, MemberRegistered)]
    assert record.sender_id == SenderId(0, SID_BITS)
    statuses = {s.cipher: (s.integrity, s.sender_id) for s in net.member.key_status(net.now)}
    assert statuses == {
        "aes-128-gcm": (None, SenderId(0, SID_BITS)),
        "aes-128-cbc": ("hmac-sha1-96", None),
    }


def test_two_members_get_different_sids_and_never_produce_the_same_nonce() -> None:
    core = key_server()
    one = gcm_net(core=core)
    one.run(until=5.0)
    two = gcm_net(member_ip="198.51.100.12", core=core)
    two.run(until=5.0)
    a, b = gcm_key(one.member), gcm_key(two.member)
    assert (a.spi, a.encryption_key) == (b.spi, b.encryption_key)  # one group key
    assert (a.sender_id, b.sender_id) == (SenderId(0, SID_BITS), SenderId(1, SID_BITS))
    ivs_a, ivs_b = nonces(a, 50), nonces(b, 50)
    assert len(set(ivs_a)) == 50 and not set(ivs_a) & set(ivs_b)
    assert {iv[:3] for iv in ivs_a} == {bytes.fromhex("000000")}
    assert {iv[:3] for iv in ivs_b} == {bytes.fromhex("000001")}


def test_a_restarted_member_registers_again_gets_a_new_sid_and_reuses_no_nonce() -> None:
    core = key_server()
    before = gcm_net(core=core)
    before.run(until=5.0)
    old = gcm_key(before.member)
    sent_before = nonces(old, 20)  # counters 0..19 under the first SID
    # The member process restarts: a new core, nothing remembered; the key is still
    # current, and its counter starts at 0 again.
    after = gcm_net(core=core, member_ip=MEMBER_IP)
    after.now = before.now + 1
    after.run(until=10.0)
    new = gcm_key(after.member)
    assert (new.spi, new.encryption_key) == (old.spi, old.encryption_key)
    assert new.sender_id == SenderId(1, SID_BITS) != old.sender_id
    sent_after = nonces(new, 20)
    assert not set(sent_before) & set(sent_after)
    assert sent_after[0] == SenderId(1, SID_BITS).iv(0)


def test_without_a_sid_a_member_never_encrypts_with_a_gcm_key() -> None:
    class NoSids(GroupKeyServer):
        def grant_sender_ids(self, group_id: int, wanted: int) -> tuple[SenderId, ...]:
            return ()

    net = gcm_net(server=NoSids([GCM_GROUP], V2))
    net.run(until=5.0)
    key = gcm_key(net.member)
    assert key.sender_id is None
    esp = EspSa(suite_of(key), key.spi, key.encryption_key, window=TimeWindow.seconds(100))
    assert esp.encapsulate(inner(1), GROUP_TIME) == Refused(Refusal.NO_SENDER_ID)
    # Asked and got none: registering again would change nothing, so it does not.
    (keys,) = net.member.group_keys()
    assert keys.renewal(net.now) is None


def test_an_exhausted_group_refuses_the_registration_with_a_notify() -> None:
    server = GroupKeyServer([GCM_GROUP], V2)
    server._groups[1].next_sender_id = 1 << 24
    net = gcm_net(server=server)
    net.run(until=5.0)
    (refused,) = [e for e in net.server_events if isinstance(e, RegistrationRefused)][:1]
    assert refused.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert "handed out all 16777216 sender IDs" in refused.reason
    assert server.members() == []
    failed = [e for e in net.member_events if isinstance(e, RegistrationFailed)]
    assert failed and failed[0].reason == "key server refused: NO-PROPOSAL-CHOSEN"
    assert not [e for e in net.member_events if isinstance(e, Registered)]


# --- a pushed GCM key when the member never asked ------------------------------------------------


def test_a_pushed_gcm_key_without_a_sid_makes_a_v2_member_register_again() -> None:
    offer = offer_for(GCM_GROUP, V2)
    registration = Registration(1, offer.sa, offer.key_download, None)
    gcm = [sa for sa in group_sas("vpn1", registration, NOW) if sa.cipher.counter_mode]
    for asks, requested, renews in ((True, False, True), (True, True, False),
                                    (False, False, False)):  # fmt: skip
        keys = GroupKeys("vpn1", 1, 3, lambda vpn, sas: (list(sas), []), asks_sender_ids=asks)
        keys.sender_id_received(None, requested)
        keys.keyring.install_pushed(gcm, NOW)
        renewal = keys.renewal(NOW)
        assert (renewal is not None) is renews, (asks, requested)
        if renewal is not None:
            assert (
                renewal.reason == "a rekey brought an AES-GCM key and we have no sender ID for it"
            )
    # Pushed keys take the SID of the registration before them.
    keys = GroupKeys("vpn1", 1, 3, lambda vpn, sas: (list(sas), []), asks_sender_ids=True)
    keys.sender_id_received(SenderId(9, SID_BITS), True)
    assert keys.sender_id == SenderId(9, SID_BITS)
    keys.clear(NOW)
    assert keys.sender_id is None


# --- the daemon: GCM groups need the v2 dialect -------------------------------------------------


def test_the_key_server_refuses_to_start_gcm_groups_in_the_v1_dialect(tmp_path: Path) -> None:
    spec = Path(__file__).resolve().parent.parent / "configs" / "spec" / "server.conf"
    lines = [
        line
        for line in spec.read_text().splitlines()
        if "ipsec proposal group-prop authentication-algorithm" not in line
    ]
    conf = tmp_path / "server.conf"
    text = ("\n".join(lines) + "\n").replace(
        "ipsec proposal group-prop encryption-algorithm 3des-cbc",
        "ipsec proposal group-prop encryption-algorithm aes-128-gcm",
    )
    conf.write_text(text)
    assert "aes-128-gcm" in text
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "server", "-c", str(conf), "--port", "18848",
         "--dialect", "v1", "--state-dir", str(tmp_path / "state"),
         "--control", str(tmp_path / "server.sock")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert (
        "cannot start: group g1: match-policy p1 uses aes-128-gcm, which needs sender IDs "
        "(RFC 6054) that only the v2 dialect (RFC 6407) hands out; run the key server with "
        "--dialect v2 or use a CBC proposal"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was made
