"""GROUPKEY-PULL against the Cisco GDOI reference trace, both roles, octet for octet.

Vectors: Cisco GDOI reference implementation trace (stv0g/gdoid
samples/loopback/sample_output_ks), as reproduced in gdoi-wire.md §9: main mode
3DES/SHA1/group 2, then a GROUPKEY-PULL for ID_KEY_ID 1234 with two ESP TEKs and
no KEK.  Given the trace's keys, nonces and message ID, our initiator must send
PULL1 and PULL3 exactly, and our responder PULL2 and PULL4 exactly.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from groupvpn.crypto.ciphers import CIPHERS
from groupvpn.crypto.dh import MODP_GROUPS
from groupvpn.crypto.hashes import HASHES
from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.gdoi.pull import GroupOffer, PullError, PullInitiator, PullResponder, Registration
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.wire.constants import NotifyType
from groupvpn.wire.dialect import V1
from groupvpn.wire.message import pull_header
from groupvpn.wire.payloads import IdPayload
from tests.vectors import cisco_loopback as trace


def _cisco_sa(role: Role) -> IkeSa:
    """The phase 1 SA of the trace, as each side holds it after MM6."""
    suite = Phase1Proposal(CIPHERS["3des-cbc"], HASHES["sha1"], MODP_GROUPS[2], 3600)
    peer = Phase1Peer("ks", (IPv4Address("127.0.0.2"),), "main", (suite,), b"mekmitasdigoat")
    sa = IkeSa(
        role=role, mode=Mode.MAIN, peer=("127.0.0.2", 848), policy=peer,
        initiator_cookie=trace.CKY_I, responder_cookie=trace.CKY_R,
        state=SaState.ESTABLISHED, local_id=IdPayload.ipv4("127.0.0.1"), created_at=0.0,
    )  # fmt: skip
    sa.agreed = suite
    sa.keys = Phase1Keys(
        trace.SKEYID, trace.SKEYID_D, trace.SKEYID_A, trace.SKEYID_E, trace.KEY_3DES
    )
    sa.ivs.set_phase1_iv(trace.MM6[-8:])  # phase 2 IVs start from MM6's last block
    return sa


def _member() -> PullInitiator:
    return PullInitiator(
        _cisco_sa(Role.INITIATOR), 1234,
        message_id=trace.PULL_MESSAGE_ID, nonce=trace.PULL_NI_B, dialect=V1,
    )  # fmt: skip


def _member_run() -> tuple[PullInitiator, Registration]:
    member = _member()
    assert member.first_message() == trace.PULL1
    progress = member.receive(pull_header(trace.PULL2), trace.PULL2)
    assert progress.send == trace.PULL3 and progress.registration is None
    done = member.receive(pull_header(trace.PULL4), trace.PULL4)
    assert done.send is None and done.registration is not None
    return member, done.registration


def test_member_side_reproduces_the_trace():
    _, registration = _member_run()
    assert registration.group_id == 1234 and registration.sequence is None
    assert registration.sa.kek is None and len(registration.sa.teks) == 2
    spis = [tek.ipsec.spi.hex() for tek in registration.sa.teks if tek.ipsec is not None]
    assert spis == ["1122aabb", "3344ccdd"]
    assert [packet.spi.hex() for packet in registration.key_download.packets] == spis


def test_key_server_side_reproduces_the_trace():
    _, registration = _member_run()
    asked: list[int] = []

    def admit(group_id: int, sa: IkeSa) -> GroupOffer | PullError:
        asked.append(group_id)
        return GroupOffer(registration.sa, registration.key_download, None)

    server = PullResponder(
        _cisco_sa(Role.RESPONDER), message_id=trace.PULL_MESSAGE_ID, nonce=trace.PULL_NR_B,
        dialect=V1, admit=admit,
    )  # fmt: skip
    second = server.receive(pull_header(trace.PULL1), trace.PULL1)
    assert asked == [1234]
    assert second.send == trace.PULL2 and second.admitted is None
    fourth = server.receive(pull_header(trace.PULL3), trace.PULL3)
    assert fourth.send == trace.PULL4
    assert fourth.admitted is not None and fourth.admitted.sa == registration.sa


def test_repeats_are_answered_with_the_same_message():
    member = _member()
    member.first_message()
    third = member.receive(pull_header(trace.PULL2), trace.PULL2).send
    assert member.receive(pull_header(trace.PULL2), trace.PULL2).send == third


def test_a_tampered_hash_ends_the_exchange():
    member = _member()
    member.first_message()
    # Flip one bit of the last ciphertext block: CBC garbles the last plaintext block
    # (the end of the SA's attributes and the padding); it still decodes, HASH(2) fails.
    tampered = bytearray(trace.PULL2)
    tampered[-1] ^= 0x01
    with pytest.raises(PullError) as failure:
        member.receive(pull_header(bytes(tampered)), bytes(tampered))
    assert failure.value.notify == NotifyType.INVALID_HASH_INFORMATION
    # The IV chain did not move: the genuine message still verifies.
    assert member.receive(pull_header(trace.PULL2), trace.PULL2).send == trace.PULL3


def test_an_unknown_group_is_refused_with_the_servers_reason():
    def admit(group_id: int, sa: IkeSa) -> GroupOffer | PullError:
        return PullError(
            f"group-id {group_id} is not configured", NotifyType.INVALID_ID_INFORMATION
        )

    server = PullResponder(
        _cisco_sa(Role.RESPONDER), message_id=trace.PULL_MESSAGE_ID, nonce=trace.PULL_NR_B,
        dialect=V1, admit=admit,
    )  # fmt: skip
    with pytest.raises(PullError, match="group-id 1234 is not configured") as failure:
        server.receive(pull_header(trace.PULL1), trace.PULL1)
    assert failure.value.notify == NotifyType.INVALID_ID_INFORMATION


def test_pull_over_real_phase1_endpoints_in_the_v2_dialect():
    """Both roles driven through IkeEndpoint's exchange hook after a fresh main mode."""
    from groupvpn.wire.constants import ExchangeType
    from groupvpn.wire.dialect import V2
    from groupvpn.wire.gdoi import (
        GdoiId,
        GdoiSaPayload,
        IpsecTek,
        KeyDownloadPayload,
        KeyPacket,
        SaTekPayload,
    )
    from tests.ikepair import make_pair

    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [info] = pair.initiator.established()
    member_sa = pair.initiator.find_sa(info.initiator_cookie, info.responder_cookie)
    server_sa = pair.responder.find_sa(info.initiator_cookie, info.responder_cookie)
    assert member_sa is not None and server_sa is not None

    tek = SaTekPayload(1, IpsecTek(0, GdoiId.ipv4_subnet("10.1.0.0/16"),
                                   GdoiId.ipv4_subnet("10.2.0.0/16"), 12, b"\x01\x02\x03\x04", ()),
                       id_length_octets=2)  # fmt: skip
    offer = GroupOffer(
        GdoiSaPayload(2, 0, teks=(tek,)),
        KeyDownloadPayload((KeyPacket(1, b"\x01\x02\x03\x04", ()),)),
    )
    results: list[tuple[str, object]] = []
    responders: dict[int, PullResponder] = {}

    def server_side(sa: IkeSa, header, data: bytes, now: float) -> None:
        responder = responders.setdefault(header.message_id, PullResponder(
            sa, message_id=header.message_id, nonce=b"r" * 16, dialect=V2,
            admit=lambda group_id, _sa: offer if group_id == 7 else PullError("no"),
        ))  # fmt: skip
        progress = responder.receive(header, data)
        if progress.send:
            pair.responder.send(sa, progress.send)
        if progress.admitted:
            results.append(("admitted", responder.group_id))

    member = PullInitiator(member_sa, 7, message_id=0x1234ABCD, nonce=b"i" * 16, dialect=V2)

    def member_side(sa: IkeSa, header, data: bytes, now: float) -> None:
        progress = member.receive(header, data)
        if progress.send:
            pair.initiator.send(sa, progress.send)
        if progress.registration:
            results.append(("registered", progress.registration))

    pair.responder.handle_exchange(ExchangeType.GROUPKEY_PULL, server_side)
    pair.initiator.handle_exchange(ExchangeType.GROUPKEY_PULL, member_side)
    pair.initiator.send(member_sa, member.first_message())
    pair.transfer()
    assert results[0] == ("admitted", 7)
    kind, registration = results[1]
    assert kind == "registered" and isinstance(registration, Registration)
    assert registration.sa == offer.sa and registration.key_download == offer.key_download
