"""The group KEK on the key server: generation, lifetime, the signing key, and the offer."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from unittest.mock import Mock

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from groupvpn.config import load_config, load_config_file
from groupvpn.gdoi.pull import GroupOffer
from groupvpn.gdoi.push import HEARTBEAT_INTERVAL_ATTRIBUTE
from groupvpn.gdoi.push_ack import KEK_ACK_REQUESTED
from groupvpn.runtime.binding import group_definitions
from groupvpn.server import kek as kek_module
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, Kek, KekPolicy, new_kek
from groupvpn.server.signing import SigningKey
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import Buffer
from groupvpn.wire.constants import ExchangeType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GdoiId, KeyDownloadPayload
from groupvpn.wire.gdoi_numbers import (
    KdType,
    KekAlgorithm,
    KekAttribute,
    KekKeyAttribute,
    SigAlgorithm,
    SigHashAlgorithm,
)
from groupvpn.wire.message import decode_payloads, encode_payloads
from groupvpn.wire.payloads import DecodeContext
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa
from tests.vectors import gdoi_cisco as vec

SPEC_SERVER = Path(__file__).resolve().parent.parent / "configs" / "spec" / "server.conf"
UNICAST = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["md5"], lifetime_seconds=3600)
KEK_GROUP = replace(SPEC_GROUP, server_address=IPv4Address("20.0.0.1"), kek=UNICAST)
#: 3DES: a 24-octet key and an 8-octet IV, so a 16-octet draw from the CSPRNG is the SPI.
TRIPLE_DES = KekPolicy(KEK_CIPHERS["3des-cbc"], SIG_HASHES["sha1"], lifetime_seconds=3600)


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    # 1024 bits keeps the tests quick; the daemon's default (2048) is tested once below.
    return SigningKey.generate(1024)


class _FakeSecrets:
    """Stands in for the secrets module inside groupvpn.server.kek only."""

    def __init__(self, token_bytes: Callable[[int], bytes]) -> None:
        self.token_bytes = token_bytes


def _offer(server: GroupKeyServer, now: float, group_id: int = 1) -> GroupOffer:
    offer = server.admit(group_id, _ike_sa("gw-member1", "198.51.100.11"), now, "192.0.2.1")
    assert isinstance(offer, GroupOffer)
    return offer


# -- generating KEKs ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(KEK_CIPHERS))
def test_a_kek_has_a_16_octet_spi_and_key_and_iv_of_its_algorithm(name: str):
    cipher = KEK_CIPHERS[name]
    kek = new_kek(KekPolicy(cipher, SIG_HASHES["sha1"], 600), 10.0, set())
    expected = {"des-cbc": (8, 8), "3des-cbc": (24, 8), "aes-128-cbc": (16, 16),
                "aes-192-cbc": (24, 16), "aes-256-cbc": (32, 16)}[name]  # fmt: skip
    assert (len(kek.key), len(kek.iv)) == expected
    assert len(kek.spi) == 16 and all(any(cookie) for cookie in kek.cookies)
    assert kek.cookies == (kek.spi[:8], kek.spi[8:])
    assert (kek.created_at, kek.expires_at) == (10.0, 610.0)
    again = new_kek(kek.policy, 10.0, set())
    assert (again.spi, again.key, again.iv) != (kek.spi, kek.key, kek.iv)  # CSPRNG, not fixed


def test_the_spi_skips_live_spis_and_zero_cookies(monkeypatch: pytest.MonkeyPatch):
    live = bytes(range(1, 17))
    zero_responder_cookie = b"\x01" * 8 + bytes(8)
    fresh = b"\x02" * 16
    spis: Iterator[bytes] = iter([live, zero_responder_cookie, fresh])

    def token_bytes(n: int) -> bytes:
        return next(spis) if n == 16 else os.urandom(n)

    monkeypatch.setattr(kek_module, "secrets", _FakeSecrets(token_bytes))
    assert new_kek(TRIPLE_DES, 0.0, {live}).spi == fresh


def test_keks_of_two_groups_never_share_an_spi(monkeypatch: pytest.MonkeyPatch, signing_key):
    first, second = b"\x03" * 16, b"\x04" * 16
    spis = iter([first, first, second])
    fake = _FakeSecrets(lambda n: next(spis) if n == 16 else os.urandom(n))
    monkeypatch.setattr(kek_module, "secrets", fake)
    group = replace(KEK_GROUP, kek=TRIPLE_DES)
    other = replace(group, name="g2", group_id=2)
    server = GroupKeyServer([group, other], V1, signing_key=signing_key)
    assert server.current_kek(1, 0.0).spi == first  # type: ignore[union-attr]
    assert server.current_kek(2, 0.0).spi == second  # type: ignore[union-attr]


def test_no_key_material_in_repr(signing_key: SigningKey):
    kek = new_kek(UNICAST, 0.0, set())
    text = repr(kek)
    for secret in (kek.key, kek.iv):
        assert secret.hex() not in text and repr(secret) not in text
    assert kek.spi.hex() in text or repr(kek.spi) in text  # the SPI is not secret
    packet = kek.key_packet(signing_key.public_der)
    assert kek.key.hex() not in repr(packet) and "<32 octets>" in repr(packet)


def test_the_signing_key_shows_only_its_public_fingerprint(signing_key: SigningKey):
    text = repr(signing_key)
    assert text.startswith("SigningKey(rsa-1024, sha256:")
    pem = signing_key.private_pem()
    assert b"PRIVATE KEY" in pem and pem.decode() not in text
    numbers = signing_key._private.private_numbers()
    assert str(numbers.d) not in text and f"{numbers.d:x}" not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(signing_key)
    # What issue 4 will persist comes back as the same key.
    restored = SigningKey.from_pem(pem)
    assert restored.public_der == signing_key.public_der
    assert restored.fingerprint == signing_key.fingerprint


def test_the_default_signing_key_is_rsa_2048_and_small_keys_are_refused():
    key = SigningKey.generate()
    assert key.bits == 2048
    assert key.public_der.startswith(bytes.fromhex("30820122300d06092a864886f70d0101010500"))
    # cryptography generates nothing below 1024 bits, but a loaded key could be smaller.
    small = Mock(spec=rsa.RSAPrivateKey, key_size=512)
    with pytest.raises(ValueError, match="512-bit signing key is too small"):
        SigningKey(small)
    with pytest.raises(TypeError, match="must be an RSA key"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()))  # type: ignore[arg-type]


def test_a_kek_group_needs_a_signing_key():
    with pytest.raises(ValueError, match="g1 has server-member-communication"):
        GroupKeyServer([KEK_GROUP], V1)


# -- lifetime ---------------------------------------------------------------------------------


def test_the_kek_stays_until_it_expires_then_a_fresh_one_follows(signing_key: SigningKey):
    server = GroupKeyServer([KEK_GROUP], V1, signing_key=signing_key)
    first = server.current_kek(1, 0.0)
    assert first is not None and server.current_kek(1, 3599.0) is first
    later = _offer(server, 1000.0)
    assert later.sa.kek is not None and later.sa.kek.spi == first.spi
    lifetime = {a.type: a for a in later.sa.kek.attributes}[KekAttribute.KEK_KEY_LIFETIME]
    assert lifetime == DataAttribute(KekAttribute.KEK_KEY_LIFETIME, (2600).to_bytes(4, "big"))
    renewed = server.current_kek(1, 3600.0)
    assert renewed is not None
    assert (renewed.spi, renewed.key, renewed.iv) != (first.spi, first.key, first.iv)
    assert renewed.expires_at == 7200.0
    # The SEQ baseline is the group's, not the KEK's (issue 4 increments it per PUSH).
    assert server.sequence(1) == 0


# -- the offer --------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_the_offer_carries_sa_kek_kd_kek_packet_and_seq_0(dialect: Dialect, signing_key):
    server = GroupKeyServer([KEK_GROUP], dialect, signing_key=signing_key, port=10848)
    offer = _offer(server, 100.0)
    kek = server.current_kek(1, 100.0)
    assert kek is not None and offer.sequence == 0
    sak = offer.sa.kek
    assert sak is not None and sak.spi == kek.spi
    assert sak.protocol == 17  # UDP
    assert sak.src == GdoiId.ipv4("20.0.0.1", 10848)  # the group's server-address
    assert sak.dst == GdoiId.ipv4("198.51.100.11", 848)  # unicast: the member itself
    assert (sak.pop_algorithm, sak.pop_key_length) == (0, 0)
    assert sak.attributes == (
        DataAttribute(KekAttribute.KEK_ALGORITHM, KekAlgorithm.AES),
        DataAttribute(KekAttribute.KEK_KEY_LENGTH, 128),
        DataAttribute(KekAttribute.KEK_KEY_LIFETIME, (3600).to_bytes(4, "big")),
        DataAttribute(KekAttribute.SIG_HASH_ALGORITHM, SigHashAlgorithm.MD5),
        DataAttribute(KekAttribute.SIG_ALGORITHM, SigAlgorithm.RSA),
        DataAttribute(KekAttribute.SIG_KEY_LENGTH, 1024),
    )
    kek_packet, *tek_packets = offer.key_download.packets
    assert kek_packet.kd_type == KdType.KEK and kek_packet.spi == kek.spi
    assert kek_packet.attributes == (
        DataAttribute(KekKeyAttribute.KEK_ALGORITHM_KEY, kek.iv + kek.key),
        DataAttribute(KekKeyAttribute.SIG_ALGORITHM_KEY, signing_key.public_der),
    )
    assert len(kek.iv + kek.key) == 32  # aes-128-cbc: 16-octet IV, 16-octet key
    assert [p.kd_type for p in tek_packets] == [KdType.TEK] * 3
    assert len(offer.sa.teks) == 3
    # It all encodes and decodes back in the dialect, SA KEK first in the SA.
    first_type, octets = encode_payloads([offer.sa, offer.key_download])
    ctx = DecodeContext(ExchangeType.GROUPKEY_PULL, dialect)
    assert decode_payloads(octets, first_type, ctx).payloads == (offer.sa, offer.key_download)
    assert octets[12:14] == PayloadType.SA_KEK.to_bytes(2, "big")  # SA attribute next payload


def test_without_server_address_the_kek_source_is_the_local_address(signing_key: SigningKey):
    group = replace(KEK_GROUP, server_address=None)
    offer = _offer(GroupKeyServer([group], V1, signing_key=signing_key), 0.0)
    assert offer.sa.kek is not None and offer.sa.kek.src == GdoiId.ipv4("192.0.2.1", 848)


def test_multicast_rekeys_go_to_the_multicast_group(signing_key: SigningKey):
    policy = replace(UNICAST, multicast_group=IPv4Address("226.1.1.1"))
    group = replace(KEK_GROUP, kek=policy)
    offer = _offer(GroupKeyServer([group], V2, signing_key=signing_key), 0.0)
    assert offer.sa.kek is not None and offer.sa.kek.dst == GdoiId.ipv4("226.1.1.1", 848)
    assert policy.communication_type == "multicast" and UNICAST.communication_type == "unicast"


def test_a_group_without_server_member_communication_gets_no_kek_and_no_seq(signing_key):
    plain = GroupDefinition("g2", 2, SPEC_GROUP.gateways, SPEC_GROUP.policies)
    server = GroupKeyServer([KEK_GROUP, plain], V1, signing_key=signing_key)
    offer = _offer(server, 0.0, group_id=2)
    assert offer.sa.kek is None and offer.sequence is None
    assert offer.key_download.find(KdType.KEK) == ()
    assert server.current_kek(2, 0.0) is None and server.sequence(2) is None
    assert [s.group for s in server.kek_status(0.0)] == ["g1"]


def test_the_spec_server_configuration_binds_its_kek_policy():
    [group] = group_definitions(load_config_file(SPEC_SERVER))
    # Unicast rekeys: members ACK them; heartbeats every 300 s (the Junos default).
    assert group.kek == KekPolicy(
        KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["md5"], 3600, None, heartbeat=300,
        acks_requested=True,
    )  # fmt: skip
    assert (group.delivery.number_of_retransmission, group.delivery.retransmission_period) == (
        2, 10.0,
    )  # fmt: skip
    assert group.multicast_interface is None


def test_the_sa_kek_asks_for_acks_and_announces_heartbeats_after_rfc_3547s_attributes(
    signing_key: SigningKey,
):
    policy = replace(UNICAST, heartbeat=300, acks_requested=True)
    sak = _offer(GroupKeyServer([replace(KEK_GROUP, kek=policy)], V1, signing_key=signing_key),
                 0.0).sa.kek  # fmt: skip
    assert sak is not None
    assert sak.attributes[-2:] == (
        DataAttribute(KEK_ACK_REQUESTED, 1), DataAttribute(HEARTBEAT_INTERVAL_ATTRIBUTE, 300),
    )  # fmt: skip
    assert [a.type for a in sak.attributes] == sorted(a.type for a in sak.attributes)
    with pytest.raises(ValueError, match="not acknowledged"):
        replace(policy, multicast_group=IPv4Address("239.1.1.1"))


def test_a_multicast_group_binds_its_outgoing_interface_address():
    text = SPEC_SERVER.read_text().replace(
        "communication-type unicast",
        "communication-type multicast\n"
        "set security group-vpn server group g1 server-member-communication multicast-group "
        "239.1.1.1\n"
        "set security group-vpn server group g1 server-member-communication "
        "multicast-outgoing-interface ge-0/0/1.0",
    )
    [group] = group_definitions(load_config(text))
    assert group.kek is not None and group.kek.multicast_group == IPv4Address("239.1.1.1")
    assert not group.kek.acks_requested
    assert group.multicast_interface == "ge-0/0/1.0"
    assert group.multicast_interface_address == IPv4Address("192.0.2.1")


# -- known answers: the Cisco reference trace ----------------------------------------------------
# Cisco GDOI reference implementation (stv0g/gdoid samples/three-clients/sample_output_ks),
# as reproduced in gdoi-wire.md §4.2, §4.5 and §9: KEK SPI "abcdefgh01234567", 3DES key
# "ABCDEFGHIJKLMNOPQRSTUVWX", IV "IVIVIVIV", RSA-1024 public key in PULL 4's KD.


def _cisco_kd() -> KeyDownloadPayload:
    ctx = DecodeContext(ExchangeType.GROUPKEY_PULL, V1)
    chain = decode_payloads(vec.PULL4_PLAINTEXT, PayloadType.HASH, ctx, allow_trailing=True)
    kd = chain.payloads[2]
    assert isinstance(kd, KeyDownloadPayload)
    return kd


def _cisco_kek() -> Kek:
    policy = KekPolicy(KEK_CIPHERS["3des-cbc"], SIG_HASHES["sha1"], 3600)
    return Kek(policy, vec.KEK_SPI, vec.KEK_KEY, vec.KEK_IV, 0.0, 3600.0)


def test_the_kd_kek_packet_is_octet_for_octet_the_cisco_one():
    cisco_packet = _cisco_kd().packets[0]
    public_der = cisco_packet.attributes[1].as_bytes()
    ours = Buffer()
    _cisco_kek().key_packet(public_der).push(ours)
    # PULL 4 plaintext: HASH (24 octets), SEQ (8), KD header (8), then the KEK packet.
    assert ours.getvalue() == vec.PULL4_PLAINTEXT[40 : 40 + 0xDF]


def test_the_sa_kek_matches_the_cisco_layout_and_keeps_its_attribute_order():
    sak = _cisco_kek().sa_kek(
        0.0, GdoiId.ipv4("10.0.224.44", 848), GdoiId.ipv4("239.10.1.1", 848), 1024
    )
    body = sak.encode_body()
    # Protocol, SRC, DST (1-octet ID lengths), SPI and the four POP/RESERVED2 octets.
    fixed = 1 + 2 * (1 + 2 + 1 + 4) + 16 + 4
    assert body[:fixed] == vec.SAK[4 : 4 + fixed]
    # Cisco sends KEK_ALGORITHM, SIG_HASH_ALGORITHM, SIG_ALGORITHM; we add the lifetime
    # and SIG_KEY_LENGTH in between, in type order, and change none of Cisco's.
    cisco = [DataAttribute(KekAttribute.KEK_ALGORITHM, KekAlgorithm.TRIPLE_DES),
             DataAttribute(KekAttribute.SIG_HASH_ALGORITHM, SigHashAlgorithm.SHA1),
             DataAttribute(KekAttribute.SIG_ALGORITHM, SigAlgorithm.RSA)]  # fmt: skip
    assert [a for a in sak.attributes if a in cisco] == cisco
    assert [a.type for a in sak.attributes] == sorted(a.type for a in sak.attributes)
    assert KekAttribute.KEK_KEY_LENGTH not in {a.type for a in sak.attributes}  # 3DES
