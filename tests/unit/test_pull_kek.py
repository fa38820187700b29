"""A whole GROUPKEY-PULL with a KEK, member and key server over real phase 1 endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest

from groupvpn.gdoi.pull import GroupOffer, PullError, PullInitiator, PullResponder, Registration
from groupvpn.ike.sa import IkeSa
from groupvpn.member.keys import group_kek, group_sas
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.signing import SigningKey
from groupvpn.wire.constants import ExchangeType, NotifyType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import SeqPayload
from groupvpn.wire.message import IsakmpHeader, PayloadChain
from tests.ikepair import INITIATOR_IP, Pair, make_pair, peer
from tests.unit.test_server_kek import KEK_GROUP

GROUP_ID = 1


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(1024)


@dataclass
class PullRun:
    registration: Registration | None = None
    admitted: list[int] = field(default_factory=list)
    failures: list[PullError] = field(default_factory=list)
    #: Payload types of each GROUPKEY-PULL message the member decrypted, in order.
    member_saw: list[list[int]] = field(default_factory=list)


def _established(pair: Pair) -> tuple[IkeSa, IkeSa]:
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [info] = pair.initiator.established()
    member_sa = pair.initiator.find_sa(info.initiator_cookie, info.responder_cookie)
    server_sa = pair.responder.find_sa(info.initiator_cookie, info.responder_cookie)
    assert member_sa is not None and server_sa is not None
    return member_sa, server_sa


def _pull(offer_for: GroupKeyServer | GroupOffer, dialect: Dialect) -> PullRun:
    """Phase 1, then one pull for GROUP_ID, both roles through IkeEndpoint's exchange hook."""
    # The key server knows the member as gw-member1, one of KEK_GROUP's ike-gateways.
    pair = make_pair(responder_peer=peer(INITIATOR_IP, gateway="gw-member1"))
    member_sa, _ = _established(pair)
    run = PullRun()

    def admit(group_id: int, sa: IkeSa) -> GroupOffer | PullError:
        if isinstance(offer_for, GroupOffer):
            return offer_for
        return offer_for.admit(group_id, sa, pair.now, pair.responder.local_address)

    responders: dict[int, PullResponder] = {}

    def server_side(sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
        responder = responders.setdefault(header.message_id, PullResponder(
            sa, message_id=header.message_id, nonce=b"r" * 16, dialect=dialect, admit=admit,
        ))  # fmt: skip
        try:
            progress = responder.receive(header, data)
        except PullError as exc:
            run.failures.append(exc)
            return
        if progress.send:
            pair.responder.send(sa, progress.send)
        if progress.admitted and responder.group_id is not None:
            run.admitted.append(responder.group_id)

    member = PullInitiator(member_sa, GROUP_ID, message_id=0x5EC0_0001, nonce=b"i" * 16,
                           dialect=dialect)  # fmt: skip
    decrypt = member_sa.decrypt

    def recording_decrypt(data: bytes, header: IsakmpHeader, d: Dialect = V1) -> PayloadChain:
        chain = decrypt(data, header, d)
        run.member_saw.append([p.payload_type for p in chain.payloads])
        return chain

    member_sa.decrypt = recording_decrypt  # type: ignore[method-assign,assignment]

    def member_side(sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
        try:
            progress = member.receive(header, data)
        except PullError as exc:
            run.failures.append(exc)
            return
        if progress.send:
            pair.initiator.send(sa, progress.send)
        if progress.registration:
            run.registration = progress.registration

    pair.responder.handle_exchange(ExchangeType.GROUPKEY_PULL, server_side)
    pair.initiator.handle_exchange(ExchangeType.GROUPKEY_PULL, member_side)
    pair.initiator.send(member_sa, member.first_message())
    pair.transfer()
    return run


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_pull_with_a_kek_delivers_sa_kek_seq_and_kd_kek_packet(dialect: Dialect, signing_key):
    server = GroupKeyServer([KEK_GROUP], dialect, signing_key=signing_key)
    run = _pull(server, dialect)
    assert run.failures == [] and run.admitted == [GROUP_ID]
    registration = run.registration
    assert registration is not None and registration.sequence == 0
    # PULL 2: HASH, Nr, SA (whose first attribute payload is the SA KEK); PULL 4: HASH, SEQ, KD.
    assert run.member_saw == [
        [PayloadType.HASH, PayloadType.NONCE, PayloadType.SA],
        [PayloadType.HASH, PayloadType.SEQ, PayloadType.KD],
    ]
    assert registration.sa.kek is not None
    assert (registration.sa.gap is not None) is (dialect is V2)
    kek = group_kek("vpn1", registration, 0.0)
    server_kek = server.current_kek(GROUP_ID, 0.0)
    assert kek is not None and server_kek is not None
    assert (kek.spi, kek.key, kek.iv) == (server_kek.spi, server_kek.key, server_kek.iv)
    assert kek.source.describe() == "20.0.0.1:848"  # the group's server-address
    assert kek.destination.describe() == f"{INITIATOR_IP}:848"  # the member, for unicast
    assert kek.public_key_fingerprint == signing_key.fingerprint
    assert len(group_sas("vpn1", registration, 0.0)) == 3


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_a_kek_without_seq_or_a_seq_without_kek_ends_the_pull(dialect: Dialect, signing_key):
    server = GroupKeyServer([KEK_GROUP], dialect, signing_key=signing_key)
    offer = server.admit(GROUP_ID, _any_sa(), 0.0)
    assert isinstance(offer, GroupOffer)
    for broken in (
        replace(offer, sequence=None),
        replace(offer, sa=replace(offer.sa, kek=None)),
    ):
        run = _pull(broken, dialect)
        assert run.registration is None
        [failure] = run.failures
        assert failure.reason == "SEQ must come with a KEK and only then"
        assert failure.notify == NotifyType.PAYLOAD_MALFORMED


def test_the_seq_payload_is_four_octets_of_zero(signing_key: SigningKey):
    # gdoi-wire.md §4.6: generic header + a 4-octet sequence number; PULL carries 0.
    assert SeqPayload(0).encode_body() == bytes(4)


def _any_sa() -> IkeSa:
    from tests.unit.test_server_groups import _ike_sa

    return _ike_sa("gw-member1")
