"""The member's view of the group KEK: parsing it, refusing broken ones, keeping it per VPN."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from groupvpn.gdoi.pull import GroupOffer, PullError, Registration
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.sa import IkeSa
from groupvpn.member.core import GroupVpn, MemberCore, Registered, RegistrationFailed
from groupvpn.member.keys import DEFAULT_KEK_LIFETIME, UnusableKek, group_kek
from groupvpn.server.core import KeyServerCore
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.signing import SigningKey
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import ExchangeType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GdoiSaPayload, KeyDownloadPayload, KeyPacket, SaKekPayload
from groupvpn.wire.gdoi_numbers import (
    KdType,
    KekAlgorithm,
    KekAttribute,
    KekKeyAttribute,
    SigAlgorithm,
)
from groupvpn.wire.message import decode_payloads
from groupvpn.wire.payloads import DecodeContext
from tests.ikepair import peer
from tests.unit.test_registration import MEMBER_IP, SERVER_IP, Net
from tests.unit.test_server_kek import KEK_GROUP
from tests.vectors import gdoi_cisco as vec


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(1024)


def _registration(signing_key: SigningKey, dialect: Dialect = V1) -> Registration:
    from tests.unit.test_server_groups import _ike_sa

    server = GroupKeyServer([KEK_GROUP], dialect, signing_key=signing_key)
    offer = server.admit(1, _ike_sa("gw-member1"), 50.0)
    assert isinstance(offer, GroupOffer)
    return Registration(1, offer.sa, offer.key_download, offer.sequence)


# -- known answer: the Cisco reference trace ---------------------------------------------------


def test_the_cisco_registration_yields_its_kek():
    # Cisco GDOI reference implementation (stv0g/gdoid samples/three-clients/
    # sample_output_ks, member 1), as reproduced in gdoi-wire.md §9: PULL 2 carries the
    # SA KEK, PULL 4 the SEQ 0 and the KD KEK packet.
    ctx = DecodeContext(ExchangeType.GROUPKEY_PULL, V1)
    pull2 = decode_payloads(vec.PULL2_PLAINTEXT, PayloadType.HASH, ctx, allow_trailing=True)
    pull4 = decode_payloads(vec.PULL4_PLAINTEXT, PayloadType.HASH, ctx, allow_trailing=True)
    sa, seq, kd = pull2.payloads[2], pull4.payloads[1], pull4.payloads[2]
    assert isinstance(sa, GdoiSaPayload) and isinstance(kd, KeyDownloadPayload)
    registration = Registration(1234, sa, kd, 0)
    kek = group_kek("vpn1", registration, received_at=100.0)
    assert kek is not None
    assert kek.spi == b"abcdefgh01234567"
    assert (kek.cipher.name, kek.key, kek.iv) == ("3des-cbc", vec.KEK_KEY, vec.KEK_IV)
    assert (kek.sig_hash.name, kek.signature_bits) == ("sha1", 1024)
    assert (kek.source.describe(), kek.destination.describe()) == (
        "10.0.224.44:848", "239.10.1.1:848",
    )  # fmt: skip
    assert kek.sequence == 0 and kek.group_id == 1234
    # The trace's SA KEK carries no KEK_KEY_LIFETIME: the Junos default applies.
    assert kek.expires_at == 100.0 + DEFAULT_KEK_LIFETIME
    assert seq is not None


# -- our own server's KEK -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_the_member_gets_exactly_the_servers_kek(dialect: Dialect, signing_key: SigningKey):
    registration = _registration(signing_key, dialect)
    kek = group_kek("vpn1", registration, received_at=1000.0)
    assert kek is not None and registration.sa.kek is not None
    [packet] = registration.key_download.find(KdType.KEK)
    assert kek.spi == registration.sa.kek.spi == packet.spi
    assert kek.iv + kek.key == packet.attributes[0].value
    assert (kek.cipher.name, len(kek.key), len(kek.iv)) == ("aes-128-cbc", 16, 16)
    assert kek.sig_hash.name == "md5" and kek.signature_bits == 1024
    assert kek.public_key_fingerprint == signing_key.fingerprint
    assert kek.public_key.public_numbers() == signing_key._private.public_key().public_numbers()
    assert kek.expires_at == 1000.0 + 3600  # the remaining lifetime, counted from receipt
    assert kek.sequence == 0
    assert kek.destination.describe() == "198.51.100.11:848"
    text = repr(kek)
    for secret in (kek.key, kek.iv):
        assert secret.hex() not in text and repr(secret) not in text
    assert "public_key=" not in text.replace("public_key_fingerprint=", "")


def test_no_kek_without_an_sa_kek(signing_key: SigningKey):
    from tests.unit.test_member_keys import _registration as plain_registration

    assert group_kek("vpn1", plain_registration(V1), 0.0) is None


# -- refusals ---------------------------------------------------------------------------------

Tamper = Callable[[Registration, SigningKey], Registration]


def _sak(registration: Registration) -> SaKekPayload:
    assert registration.sa.kek is not None
    return registration.sa.kek


def _with_sak(registration: Registration, **changes: object) -> Registration:
    sak = replace(_sak(registration), **changes)  # type: ignore[arg-type]
    return replace(registration, sa=replace(registration.sa, kek=sak))


def _with_attribute(registration: Registration, attr_type: int, value: int | None) -> Registration:
    kept = tuple(a for a in _sak(registration).attributes if a.type != attr_type)
    if value is not None:
        kept += (DataAttribute(attr_type, value),)
    return _with_sak(registration, attributes=kept)


def _with_kek_packet(registration: Registration, packet: KeyPacket | None) -> Registration:
    others = tuple(p for p in registration.key_download.packets if p.kd_type != KdType.KEK)
    packets = others if packet is None else (packet, *others)
    return replace(registration, key_download=KeyDownloadPayload(packets))


def _kek_packet(registration: Registration) -> KeyPacket:
    [packet] = registration.key_download.find(KdType.KEK)
    return packet


def _with_key_attribute(registration: Registration, attr_type: int, value: bytes) -> Registration:
    packet = _kek_packet(registration)
    kept = tuple(a for a in packet.attributes if a.type != attr_type)
    changed = replace(packet, attributes=(*kept, DataAttribute(attr_type, value)))
    return _with_kek_packet(registration, changed)


def _ec_public_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


REFUSALS: list[tuple[str, Tamper, str]] = [
    ("no key packet", lambda r, k: _with_kek_packet(r, None),
     r"KD must carry one key packet for KEK [0-9a-f]{32}; KEK packets: none"),
    ("key packet for another SPI",
     lambda r, k: _with_kek_packet(r, replace(_kek_packet(r), spi=b"x" * 16)),
     "KEK packets: " + (b"x" * 16).hex()),
    ("two key packets",
     lambda r, k: replace(r, key_download=KeyDownloadPayload(
         (_kek_packet(r), *r.key_download.packets))),
     "KD must carry one key packet"),
    ("key packet without SA KEK",
     lambda r, k: replace(r, sa=replace(r.sa, kek=None), sequence=None),
     "KD carries a KEK key packet but the SA has no SA KEK"),
    ("no SEQ", lambda r, k: replace(r, sequence=None), "comes without a SEQ"),
    ("not UDP", lambda r, k: _with_sak(r, protocol=6), "rekey protocol 6 is not UDP"),
    ("key too short",
     lambda r, k: _with_key_attribute(r, KekKeyAttribute.KEK_ALGORITHM_KEY, bytes(31)),
     r"KEK key material of 31 octets; aes-128-cbc needs 16 \(IV\) \+ 16 \(key\)"),
    ("key length attribute disagrees with the key",
     lambda r, k: _with_attribute(r, KekAttribute.KEK_KEY_LENGTH, 256),
     r"KEK key material of 32 octets; aes-256-cbc needs 16 \(IV\) \+ 32 \(key\)"),
    ("AES without key length", lambda r, k: _with_attribute(r, KekAttribute.KEK_KEY_LENGTH, None),
     "KEK algorithm 3 is not supported"),
    ("no KEK algorithm", lambda r, k: _with_attribute(r, KekAttribute.KEK_ALGORITHM, None),
     "SA KEK has no KEK_ALGORITHM"),
    ("unknown KEK algorithm", lambda r, k: _with_attribute(r, KekAttribute.KEK_ALGORITHM, 9),
     "KEK algorithm 9 with a 128-bit key is not supported"),
    ("LKH", lambda r, k: _with_attribute(r, KekAttribute.KEK_MANAGEMENT_ALGORITHM, 1),
     r"KEK management algorithm \(LKH\) is not supported"),
    ("no signature algorithm", lambda r, k: _with_attribute(r, KekAttribute.SIG_ALGORITHM, None),
     "SA KEK has no SIG_ALGORITHM"),
    ("DSS", lambda r, k: _with_attribute(r, KekAttribute.SIG_ALGORITHM, SigAlgorithm.DSS),
     r"signature algorithm 2 is not supported \(RSA only\)"),
    ("no signature hash",
     lambda r, k: _with_attribute(r, KekAttribute.SIG_HASH_ALGORITHM, None),
     "SA KEK has no SIG_HASH_ALGORITHM"),
    ("duplicate attribute",
     lambda r, k: _with_sak(r, attributes=(*_sak(r).attributes, _sak(r).attributes[0])),
     "SA KEK attribute 2 appears twice"),
    ("no public key",
     lambda r, k: _with_kek_packet(r, replace(_kek_packet(r),
                                              attributes=_kek_packet(r).attributes[:1])),
     r"no SIG_ALGORITHM_KEY \(the server's public key\)"),
    ("public key not DER",
     lambda r, k: _with_key_attribute(r, KekKeyAttribute.SIG_ALGORITHM_KEY, b"\x30\x03abc"),
     "the server's public key is not a DER SubjectPublicKeyInfo"),
    ("public key truncated",
     lambda r, k: _with_key_attribute(r, KekKeyAttribute.SIG_ALGORITHM_KEY, k.public_der[:-1]),
     "the server's public key is not a DER SubjectPublicKeyInfo"),
    ("public key not RSA",
     lambda r, k: _with_key_attribute(r, KekKeyAttribute.SIG_ALGORITHM_KEY, _ec_public_der()),
     "the server's public key is .*, not RSA"),
    ("SIG_KEY_LENGTH disagrees with the key",
     lambda r, k: _with_attribute(r, KekAttribute.SIG_KEY_LENGTH, 2048),
     "SIG_KEY_LENGTH 2048 does not match the 1024-bit public key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("tamper", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_kek_that_does_not_fit_its_key_packet_is_refused(
    tamper: Tamper, reason: str, signing_key: SigningKey
):
    registration = tamper(_registration(signing_key), signing_key)
    with pytest.raises(UnusableKek, match=reason):
        group_kek("vpn1", registration, 0.0)


def test_accepted_variants_of_optional_attributes(signing_key: SigningKey):
    registration = _registration(signing_key)
    # SIG_KEY_LENGTH as DER octets (Cisco IOS), or absent; 3DES stating its 192 bits.
    as_octets = _with_attribute(registration, KekAttribute.SIG_KEY_LENGTH, 162)
    assert len(signing_key.public_der) == 162
    assert group_kek("vpn1", as_octets, 0.0) is not None
    absent = _with_attribute(registration, KekAttribute.SIG_KEY_LENGTH, None)
    assert group_kek("vpn1", absent, 0.0) is not None
    triple_des = _with_attribute(
        _with_attribute(registration, KekAttribute.KEK_ALGORITHM, KekAlgorithm.TRIPLE_DES),
        KekAttribute.KEK_KEY_LENGTH, 192,
    )  # fmt: skip
    triple_des = _with_key_attribute(triple_des, KekKeyAttribute.KEK_ALGORITHM_KEY, bytes(32))
    kek = group_kek("vpn1", triple_des, 0.0)
    assert kek is not None and kek.cipher.name == "3des-cbc" and len(kek.iv) == 8


def test_an_absurd_lifetime_is_capped_not_a_crash(signing_key: SigningKey):
    registration = _registration(signing_key)
    huge = DataAttribute(KekAttribute.KEK_KEY_LIFETIME, b"\xff" * 200)
    kept = tuple(a for a in _sak(registration).attributes if a.type != huge.type)
    kek = group_kek("vpn1", _with_sak(registration, attributes=(*kept, huge)), 10.0)
    assert kek is not None and kek.expires_at == 10.0 + 0xFFFFFFFF


# -- the member core keeps the KEK per VPN ------------------------------------------------------


class TamperingKeyServer(GroupKeyServer):
    """A key server that alters what it offers (HASH(2)/HASH(4) still cover what is sent)."""

    tamper: Callable[[GroupOffer], GroupOffer] = staticmethod(lambda offer: offer)

    def admit(
        self, group_id: int, sa: IkeSa, now: float, local_address: str | None = None
    ) -> GroupOffer | PullError:
        offer = super().admit(group_id, sa, now, local_address)
        return self.tamper(offer) if isinstance(offer, GroupOffer) else offer


def _net(signing_key: SigningKey, dialect: Dialect = V1) -> tuple[Net, TamperingKeyServer]:
    # No server-address: the KEK's source is the address the member reached us on.
    group = replace(KEK_GROUP, server_address=None)
    groups = TamperingKeyServer([group], dialect, signing_key=signing_key)
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk")])
    member_ike = IkeEndpoint(MEMBER_IP, [peer(SERVER_IP, gateway="gw1", psk=b"psk")])
    member = MemberCore(member_ike, [GroupVpn("vpn1", "gw1", 1)], dialect,
                        jitter=random.Random(7))  # fmt: skip
    net = Net(KeyServerCore(server_ike, groups), member)
    member.handle_timer(0.0)
    return net, groups


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_the_member_core_keeps_the_kek_and_drops_it_on_clear(dialect: Dialect, signing_key):
    net, groups = _net(signing_key, dialect)
    net.run(until=5.0)
    [event] = [e for e in net.member_events if isinstance(e, Registered)]
    server_kek = groups.current_kek(1, net.now)
    assert event.kek is not None and server_kek is not None
    assert (event.kek.spi, event.kek.key, event.kek.iv) == (
        server_kek.spi, server_kek.key, server_kek.iv,
    )  # fmt: skip
    assert event.kek.source.describe() == f"{SERVER_IP}:848"
    assert event.kek.destination.describe() == f"{MEMBER_IP}:848"  # unicast rekeys
    assert [kek.spi for kek in net.member.keks()] == [server_kek.spi]
    assert len(event.sas) == 3 and {sa.vpn for sa in event.sas} == {"vpn1"}
    net.member.clear(net.now)
    assert net.member.keks() == []
    net.run(until=10.0)
    assert [kek.spi for kek in net.member.keks()] == [server_kek.spi]  # the group's KEK again


def test_a_broken_kek_discards_the_whole_registration(signing_key: SigningKey):
    net, groups = _net(signing_key)

    def drop_kek_packet(offer: GroupOffer) -> GroupOffer:
        teks = offer.key_download.find(KdType.TEK)
        return replace(offer, key_download=KeyDownloadPayload(teks))

    groups.tamper = drop_kek_packet
    net.run(until=1.0)
    assert not [e for e in net.member_events if isinstance(e, Registered)]
    [failure] = [e for e in net.member_events if isinstance(e, RegistrationFailed)]
    assert failure.reason.startswith("unusable registration: KD must carry one key packet")
    assert net.member.keks() == [] and net.member.registrations() == {}
    [status] = net.member.status(net.now)
    assert status.state == "waiting to retry" and status.last_error == failure.reason
    # Once the key server sends a sound registration, the member takes it.
    groups.tamper = staticmethod(lambda offer: offer)
    net.run(until=10.0)
    assert len(net.member.keks()) == 1
