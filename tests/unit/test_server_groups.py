"""The key server's group core: admission, what a member downloads, TEK lifetimes."""

from __future__ import annotations

import os
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from types import SimpleNamespace

import pytest

from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.gdoi.pull import GroupOffer, PullError
from groupvpn.ike.policy import Phase1Peer
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.server import tek as tek_module
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy
from groupvpn.server.signing import SigningKey
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec
from groupvpn.wire.constants import ExchangeType, NotifyType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi_numbers import GapAttribute, IpsecAttribute, TekKeyAttribute
from groupvpn.wire.message import decode_payloads, encode_payloads
from groupvpn.wire.payloads import DecodeContext, IdPayload
from tests.ikepair import proposal


def _policy(name: str, source: str, destination: str, lifetime: int = 3600) -> GroupPolicySpec:
    return GroupPolicySpec(
        name, IPv4Network(source), IPv4Network(destination), 0, 0, 0,
        ESP_CIPHERS["aes-128-cbc"], ESP_INTEGRITY["hmac-sha1-96"], lifetime,
    )  # fmt: skip


# The spec's example group (Example: Configuring Group VPNv1 Server and Members).
SPEC_GROUP = GroupDefinition(
    name="g1",
    group_id=1,
    gateways=frozenset({"gw-member1", "gw-member2"}),
    policies=(
        _policy("p1", "10.1.0.0/16", "10.2.0.0/16"),
        _policy("p2", "10.2.0.0/16", "10.1.0.0/16"),
        _policy("p3", "10.1.1.1/32", "239.1.1.1/32"),
    ),
)


def _ike_sa(gateway: str, address: str = "198.51.100.11") -> IkeSa:
    peer = Phase1Peer(gateway, (IPv4Address(address),), "main", (proposal(),), b"k")
    return IkeSa(
        role=Role.RESPONDER, mode=Mode.MAIN, peer=(address, 848), policy=peer,
        initiator_cookie=b"i" * 8, responder_cookie=b"r" * 8, state=SaState.ESTABLISHED,
        local_id=IdPayload.ipv4("20.0.0.1"), created_at=0.0,
    )  # fmt: skip


def _offer(server: GroupKeyServer, now: float = 0.0) -> GroupOffer:
    offer = server.admit(1, _ike_sa("gw-member1"), now)
    assert isinstance(offer, GroupOffer)
    return offer


def test_unknown_group_and_unlisted_gateway_are_refused_with_reasons():
    server = GroupKeyServer([SPEC_GROUP], V1)
    unknown = server.admit(9, _ike_sa("gw-member1"), 0.0)
    assert isinstance(unknown, PullError)
    assert unknown.reason == "group-id 9 is not configured"
    assert unknown.notify == NotifyType.INVALID_ID_INFORMATION
    stranger = server.admit(1, _ike_sa("gw-other"), 0.0)
    assert isinstance(stranger, PullError)
    assert stranger.reason == "IKE gateway gw-other is not an ike-gateway of group g1"
    assert server.members() == []


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_offer_has_one_sa_tek_per_group_policy_and_its_keys(dialect: Dialect):
    server = GroupKeyServer([SPEC_GROUP], dialect)
    offer = _offer(server, now=100.0)
    assert offer.sequence is None and offer.sa.kek is None  # no server-member-communication
    teks = [sat.ipsec for sat in offer.sa.teks]
    assert [(t.src.describe(), t.dst.describe()) for t in teks if t] == [
        ("10.1.0.0/16", "10.2.0.0/16"),
        ("10.2.0.0/16", "10.1.0.0/16"),
        ("10.1.1.1/32", "239.1.1.1/32"),
    ]
    spis = [t.spi for t in teks if t]
    assert len(set(spis)) == 3 and all(int.from_bytes(s, "big") > 255 for s in spis)
    assert [p.spi for p in offer.key_download.packets] == spis
    for packet in offer.key_download.packets:
        keys = {a.type: a.as_bytes() for a in packet.attributes}
        assert len(keys[TekKeyAttribute.TEK_ALGORITHM_KEY]) == 16  # aes-128-cbc
        assert len(keys[TekKeyAttribute.TEK_INTEGRITY_KEY]) == 20  # hmac-sha1-96
    first = teks[0]
    assert first is not None
    attrs = {a.type: a.as_int() for a in first.attributes}
    assert attrs[IpsecAttribute.SA_LIFE_DURATION] == 3600  # remaining at issue time
    assert attrs[IpsecAttribute.KEY_LENGTH] == 128
    assert (IpsecAttribute.ADDRESS_PRESERVATION in attrs) is (dialect is V2)
    if dialect is V2:
        assert offer.sa.gap is not None
        assert offer.sa.gap.attributes[0].type == GapAttribute.ACTIVATION_TIME_DELAY
    else:
        assert offer.sa.gap is None
    # What the server builds decodes back to the same thing in its dialect.
    first_type, octets = encode_payloads([offer.sa, offer.key_download])
    ctx = DecodeContext(ExchangeType.GROUPKEY_PULL, dialect)
    assert decode_payloads(octets, first_type, ctx).payloads == (offer.sa, offer.key_download)


def test_teks_stay_until_they_expire_then_fresh_keys_and_spis_follow():
    server = GroupKeyServer([SPEC_GROUP], V1)
    first = server.current_teks(1, 0.0)
    assert server.current_teks(1, 3599.0) == first
    later = _offer(server, now=1000.0)
    remaining = {a.type: a.as_int() for a in later.sa.teks[0].spec.attributes}  # type: ignore[union-attr]
    assert remaining[IpsecAttribute.SA_LIFE_DURATION] == 2600
    renewed = server.current_teks(1, 3600.0)
    assert all(new.spi != old.spi for new, old in zip(renewed, first, strict=True))
    assert all(
        new.encryption_key != old.encryption_key for new, old in zip(renewed, first, strict=True)
    )


def test_a_burst_of_registrations_shares_the_tek_payloads_until_the_lifetime_ticks():
    server = GroupKeyServer([SPEC_GROUP], V1)
    server.current_teks(1, 0.0)  # keys made at 0: 3600 s to live
    first, same_second = _offer(server, now=10.2), _offer(server, now=10.9)
    # Built once: the very same payload objects, so nothing is re-encoded per member.
    assert same_second.sa.teks is first.sa.teks
    assert same_second.key_download.packets is first.key_download.packets
    next_second = _offer(server, now=11.5)
    assert next_second.sa.teks is not first.sa.teks

    def remaining(offer: GroupOffer) -> int:
        tek = offer.sa.teks[0].ipsec
        assert tek is not None
        return {a.type: a.as_int() for a in tek.attributes}[IpsecAttribute.SA_LIFE_DURATION]

    assert (remaining(first), remaining(next_second)) == (3589, 3589 - 1)
    # A new key is never hidden behind the cache.
    renewed = _offer(server, now=3600.0)
    assert [p.spi for p in renewed.key_download.packets] != [
        p.spi for p in first.key_download.packets
    ]


def test_members_are_recorded_only_on_commit_and_listed_per_group():
    other = GroupDefinition(
        "g2", 2, frozenset({"gw-member1"}), (_policy("q", "10.9.0.0/16", "10.8.0.0/16"),)
    )
    server = GroupKeyServer([SPEC_GROUP, other], V1)
    _offer(server)
    assert server.members() == []
    record = server.commit(1, _ike_sa("gw-member1", "198.51.100.11"), 5.0)
    server.commit(2, _ike_sa("gw-member1", "198.51.100.11"), 6.0)
    assert (record.group, record.address, record.gateway) == ("g1", "198.51.100.11", "gw-member1")
    assert [m.group for m in server.members()] == ["g1", "g2"]
    assert [m.group_id for m in server.members("g2")] == [2]


def test_duplicate_group_ids_are_refused():
    with pytest.raises(ValueError, match="group-id 1 configured twice"):
        GroupKeyServer([SPEC_GROUP, SPEC_GROUP], V1)


# -- rekeys: SEQ, TEK rotation, KEK rollover, members -----------------------------------------


def test_rekey_bookkeeping_seq_rotation_rollover_and_removal(monkeypatch: pytest.MonkeyPatch):
    signing_key = SigningKey.generate(1024)
    kek_policy = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha1"], lifetime_seconds=600)
    server = GroupKeyServer([replace(SPEC_GROUP, kek=kek_policy)], V1, signing_key=signing_key)
    old = {tek.policy.name: tek for tek in server.current_teks(1, 0.0)}
    # SEQ: every push takes the next one; registrations carry the current value.
    assert [server.next_sequence(1), server.next_sequence(1)] == [1, 2]
    assert _offer(server, now=1.0).sequence == 2
    # A rotated TEK never reuses an SPI still live, its old one included.
    draws = iter([old["p1"].spi, b"\x00\x00\x00\x07", b"\x0a\x0b\x0c\x0d"])
    fake = SimpleNamespace(token_bytes=lambda n: next(draws) if n == 4 else os.urandom(n))
    monkeypatch.setattr(tek_module, "secrets", fake)
    [fresh] = server.rotate_teks(1, ["p1"], 10.0)
    monkeypatch.undo()
    assert fresh.spi == b"\x0a\x0b\x0c\x0d" and fresh.created_at == 10.0
    current = {tek.policy.name: tek for tek in server.current_teks(1, 10.0)}
    assert current["p1"] is fresh and current["p2"] is old["p2"]
    # A rollover: the next KEK is reserved, current only once activated; the old one
    # still names the group (copies and ACKs of the rollover) until it expires.
    first = server.current_kek(1, 10.0)
    assert first is not None
    second = server.next_kek(1, 540.0)
    assert server.current_kek(1, 540.0) is first and second.spi != first.spi
    server.activate_kek(1, second)
    assert server.current_kek(1, 540.0) is second
    assert first.expires_at == 601.0  # made for the registration at 1.0
    assert server.group_for_kek(first.spi, 600.0) == 1 == server.group_for_kek(second.spi, 600.0)
    assert server.group_for_kek(first.spi, 601.0) is None
    # Members: an ACK key per member, gone with it.
    sa = _ike_sa("gw-member1")
    sa.keys = Phase1Keys(b"s" * 20, b"d" * 20, b"a" * 20, b"e" * 20, b"k" * 24)
    server.commit(1, sa, 20.0)
    key = server.ack_key(1, sa.peer[0])
    assert key is not None and key.key.hex() not in repr(key)
    assert server.remove_member(1, sa.peer[0]) is not None
    assert server.members() == [] and server.ack_key(1, sa.peer[0]) is None
