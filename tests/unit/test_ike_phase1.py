"""Phase 1 cores driven in memory on a fake clock: exact outcomes, timers and refusals."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from groupvpn.ike.events import (
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    NotifyReceived,
    PacketDropped,
)
from groupvpn.wire.constants import ExchangeType, NotifyType
from groupvpn.wire.message import decode_message, pull_header
from groupvpn.wire.payloads import IdPayload, NotifyPayload
from tests.ikepair import INITIATOR_IP, RESPONDER_IP, make_pair, peer, proposal

SUITES = [
    ("des-cbc", "md5", 1),
    ("3des-cbc", "sha1", 2),
    ("aes-128-cbc", "sha1", 14),
    ("aes-192-cbc", "sha-256", 5),
    ("aes-256-cbc", "sha-256", 14),
    ("aes-256-cbc", "sha-384", 14),
]


def _established(events: Sequence[object]) -> list[IkeSaEstablished]:
    return [e for e in events if isinstance(e, IkeSaEstablished)]


def _failed(events: Sequence[object]) -> list[IkeSaFailed]:
    return [e for e in events if isinstance(e, IkeSaFailed)]


@pytest.mark.parametrize("mode", ["main", "aggressive"])
@pytest.mark.parametrize(("encryption", "hash_name", "group"), SUITES)
def test_phase1_completes_for_every_suite(mode: str, encryption: str, hash_name: str, group: int):
    suite = proposal(encryption, hash_name, group)
    pair = make_pair(
        peer(RESPONDER_IP, mode=mode, proposals=(suite,)),
        peer(INITIATOR_IP, mode=mode, proposals=(suite,)),
    )
    pair.initiator.initiate("gw", pair.now)
    pair.transfer()
    [up_i] = _established(pair.events_i)
    [up_r] = _established(pair.events_r)
    assert up_i.sa.cookies == up_r.sa.cookies
    assert (up_i.sa.role, up_r.sa.role) == ("initiator", "responder")
    for info in (up_i.sa, up_r.sa):
        assert (info.mode, info.encryption, info.hash, info.dh_group) == (
            mode,
            encryption,
            hash_name,
            group,
        )
    assert up_r.sa.remote_identity == f"ipv4:{INITIATOR_IP}"
    assert up_i.sa.remote_identity == f"ipv4:{RESPONDER_IP}"
    # main mode: 6 messages, aggressive: 3; nothing else crossed.
    assert len(pair.wire) == (6 if mode == "main" else 3)
    # Keys agree: both sides hold the same encryption key for tshark.
    cookies = (up_i.sa.initiator_cookie, up_i.sa.responder_cookie)
    assert pair.initiator.decryption_key(*cookies) == pair.responder.decryption_key(*cookies)


def test_responder_picks_first_acceptable_transform_in_initiator_order():
    offered = (
        proposal("aes-256-cbc", "sha-256", 14),
        proposal("aes-128-cbc", "sha1", 14),
        proposal("3des-cbc", "sha1", 2),
    )
    accepted = (proposal("3des-cbc", "sha1", 2), proposal("aes-128-cbc", "sha1", 14))
    pair = make_pair(peer(RESPONDER_IP, proposals=offered), peer(INITIATOR_IP, proposals=accepted))
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [up] = _established(pair.events_r)
    assert (up.sa.encryption, up.sa.hash, up.sa.dh_group) == ("aes-128-cbc", "sha1", 14)


def test_each_side_keeps_the_shorter_of_offer_and_its_own_lifetime():
    # The responder echoes the offered transform unchanged (RFC 2408 §4.2), so a
    # responder configured shorter expires first and its Delete ends the SA for both.
    pair = make_pair(
        peer(RESPONDER_IP, proposals=(proposal(lifetime=86400),)),
        peer(INITIATOR_IP, proposals=(proposal(lifetime=3600),)),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [up_i] = _established(pair.events_i)
    [up_r] = _established(pair.events_r)
    assert (up_i.sa.lifetime_seconds, up_r.sa.lifetime_seconds) == (86400, 3600)
    assert pair.advance_to_next_timer() == 3600.0
    pair.transfer()
    assert not pair.initiator.established() and not pair.responder.established()
    reasons = [e.reason for e in pair.events_i if isinstance(e, IkeSaDeleted)]
    assert reasons == ["deleted by peer"]


def test_no_proposal_chosen_keeps_no_state_and_tells_the_initiator():
    pair = make_pair(
        peer(RESPONDER_IP, proposals=(proposal("aes-256-cbc", "sha-256", 14),)),
        peer(INITIATOR_IP, proposals=(proposal("3des-cbc", "sha1", 2),)),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [refused] = _failed(pair.events_r)
    assert refused.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert "3des-cbc/sha1/group2" in refused.reason
    assert pair.responder.get_timer() is None  # no per-peer state left behind
    [failed] = _failed(pair.events_i)
    assert failed.reason == "peer sent NO-PROPOSAL-CHOSEN"
    notify = decode_message(pair.wire[1][1])
    assert notify.header.exchange_type == ExchangeType.INFORMATIONAL
    assert isinstance(notify.payloads[0], NotifyPayload)
    assert notify.payloads[0].notify_type == NotifyType.NO_PROPOSAL_CHOSEN


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_wrong_pre_shared_key_fails_on_both_sides(mode: str):
    pair = make_pair(
        peer(RESPONDER_IP, mode=mode, psk=b"one key"),
        peer(INITIATOR_IP, mode=mode, psk=b"another key"),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    assert not _established(pair.events_i + pair.events_r)
    failures = _failed(pair.events_i) + _failed(pair.events_r)
    assert failures and all(
        "pre-shared key mismatch" in f.reason or "AUTHENTICATION-FAILED" in f.reason
        for f in failures
    )
    assert pair.initiator.get_timer() is None and pair.responder.get_timer() is None


def test_identity_mismatch_is_invalid_id_information():
    pair = make_pair(
        peer(RESPONDER_IP, mode="aggressive", local_identity=IdPayload.fqdn("member1.example")),
        peer(INITIATOR_IP, mode="aggressive", remote_identity=IdPayload.fqdn("member2.example")),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [refused] = _failed(pair.events_r)
    assert refused.notify == NotifyType.INVALID_ID_INFORMATION
    assert "fqdn:member1.example" in refused.reason


def test_configured_fqdn_identities_are_used_and_checked():
    pair = make_pair(
        peer(
            RESPONDER_IP,
            mode="aggressive",
            local_identity=IdPayload.fqdn("member1.example"),
            remote_identity=IdPayload.fqdn("ks.example"),
        ),
        peer(
            INITIATOR_IP,
            mode="aggressive",
            local_identity=IdPayload.fqdn("ks.example"),
            remote_identity=IdPayload.fqdn("MEMBER1.example"),
        ),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [up] = _established(pair.events_r)
    assert up.sa.remote_identity == "fqdn:member1.example"
    assert up.sa.local_identity == "fqdn:ks.example"


def test_mode_mismatch_is_refused_with_a_reason():
    pair = make_pair(peer(RESPONDER_IP, mode="aggressive"), peer(INITIATOR_IP, mode="main"))
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [refused] = _failed(pair.events_r)
    assert refused.notify == NotifyType.INVALID_EXCHANGE_TYPE
    assert "configured for main mode" in refused.reason


def test_retransmission_backs_off_then_gives_up():
    pair = make_pair(retransmit_interval=2.0, retransmit_limit=3)
    pair.initiator.initiate("gw", 0.0)
    assert pair.initiator.get_timer() == 2.0
    sent = [pair.initiator.datagrams_to_send()]  # MM1 lost
    times = []
    while (t := pair.initiator.get_timer()) is not None:
        pair.now = t
        pair.initiator.handle_timer(t)
        times.append(t)
        sent.append(pair.initiator.datagrams_to_send())
    # copies at 2, 2+4, 6+8; then the last wait of 16 s ends the attempt
    assert times == [2.0, 6.0, 14.0, 30.0]
    assert [len(batch) for batch in sent] == [1, 1, 1, 1, 0]
    assert len({batch[0][0] for batch in sent if batch}) == 1  # byte-identical copies
    pair.collect()
    [failed] = _failed(pair.events_i)
    assert "no answer from peer after 3 retransmissions" in failed.reason


def test_lost_final_message_is_recovered_by_retransmission():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    # Lose the responder's third message (MM6) once.
    pair.transfer(drop=lambda sender, n, data: sender == "r" and n == 3)
    assert _established(pair.events_r) and not _established(pair.events_i)
    pair.advance_to_next_timer()  # initiator repeats MM5; responder repeats MM6
    pair.transfer()
    assert _established(pair.events_i)
    mm6_copies = [data for sender, data in pair.wire if sender == "r"][2:]
    assert len(mm6_copies) == 2 and mm6_copies[0] == mm6_copies[1]


def test_repeated_first_message_gets_the_same_answer_and_no_new_state():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 0.0)
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 1.0)
    first, second = pair.responder.datagrams_to_send()
    assert first == second
    # Nothing kept for the exchange: no SA, no timer (the MM2 is a function of
    # MM1, the address and the time; docs/hostile-network.md).
    assert not list(pair.responder._table) and pair.responder.get_timer() is None


def test_lifetime_expiry_deletes_and_tells_the_peer():
    pair = make_pair(
        peer(RESPONDER_IP, proposals=(proposal(lifetime=600),)),
        peer(INITIATOR_IP, proposals=(proposal(lifetime=600),)),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    assert pair.initiator.get_timer() == 600.0
    assert pair.advance_to_next_timer() == 600.0
    pair.transfer()
    deleted = [e for e in pair.events_i + pair.events_r if isinstance(e, IkeSaDeleted)]
    assert len(deleted) == 2
    assert {e.reason for e in deleted} >= {"lifetime expired"}
    assert not pair.initiator.established() and not pair.responder.established()


def test_delete_by_operator_reaches_the_peer_as_a_protected_informational():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [info] = pair.initiator.established()
    assert pair.initiator.delete(info.initiator_cookie, info.responder_cookie, 5.0)
    [(data, _)] = pair.initiator.datagrams_to_send()
    header = pull_header(data)
    assert header.exchange_type == ExchangeType.INFORMATIONAL and header.encrypted
    assert header.message_id != 0
    pair.responder.receive_datagram(data, (INITIATOR_IP, 848), 5.0)
    pair.collect()
    [deleted] = [e for e in pair.events_r if isinstance(e, IkeSaDeleted)]
    assert deleted.by_peer and deleted.reason == "deleted by peer"
    # A replay of the same Delete now finds no SA: a drop, nothing else.
    pair.responder.receive_datagram(data, (INITIATOR_IP, 848), 6.0)
    assert isinstance(pair.responder.next_event(), PacketDropped)


def test_dead_peer_detection_is_answered():
    from groupvpn.ike.informational import isakmp_notify, protected_informational

    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [info] = pair.initiator.established()
    sa = pair.initiator._table.find(info.initiator_cookie, info.responder_cookie)
    assert sa is not None
    probe = protected_informational(sa, isakmp_notify(sa, NotifyType.R_U_THERE, b"\0\0\0\7"), 77)
    pair.responder.receive_datagram(probe, (INITIATOR_IP, 848), 1.0)
    pair.transfer()
    received = [e for e in pair.events_i if isinstance(e, NotifyReceived)]
    assert [e.notify_type for e in received] == [NotifyType.R_U_THERE_ACK]


def test_unknown_peer_and_garbage_are_dropped_without_state():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, ("203.0.113.9", 848), 0.0)
    pair.responder.receive_datagram(b"\x00" * 10, (INITIATOR_IP, 848), 0.0)
    pair.responder.receive_datagram(mm1[:-1], (INITIATOR_IP, 848), 0.0)
    pair.collect()
    reasons = [e.reason for e in pair.events_r if isinstance(e, PacketDropped)]
    assert len(reasons) == 3
    assert reasons[0] == "no IKE gateway configured for 203.0.113.9"
    assert all(r.startswith("malformed:") for r in reasons[1:])
    assert pair.responder.get_timer() is None
    assert pair.responder.datagrams_to_send() == []


def test_reloaded_peers_apply_to_new_negotiations_only():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    assert len(pair.responder.established()) == 1
    # The reload removes the gateway: the SA stands, a new negotiation is refused.
    pair.responder.set_peers([])
    assert len(pair.responder.established()) == 1
    pair.initiator.initiate("gw", 1.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 1.0)
    pair.collect()
    drops = [e.reason for e in pair.events_r if isinstance(e, PacketDropped)]
    assert drops == [f"no IKE gateway configured for {INITIATOR_IP}"]
    # Put back, the gateway negotiates again.
    pair.responder.set_peers([peer(INITIATOR_IP)])
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 2.0)
    pair.transfer()
    assert len(pair.responder.established()) == 2


def test_shutdown_deletes_established_sas():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    pair.responder.close(9.0)
    pair.transfer()
    assert [e.reason for e in pair.events_i if isinstance(e, IkeSaDeleted)] == ["deleted by peer"]
    assert [e.reason for e in pair.events_r if isinstance(e, IkeSaDeleted)] == ["shutting down"]


def test_responder_address_must_match():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    pair.initiator.receive_datagram(mm2, ("198.51.100.77", 848), 0.0)
    event = pair.initiator.next_event()
    assert isinstance(event, PacketDropped) and "came from elsewhere" in event.reason
    assert RESPONDER_IP  # the genuine answer still works afterwards
    pair.initiator.receive_datagram(mm2, (RESPONDER_IP, 848), 0.0)
    assert pair.initiator.datagrams_to_send()  # MM3 follows


@pytest.mark.parametrize(
    ("identity", "shown"),
    [
        (IdPayload.ipv4("192.0.2.7"), "ipv4:192.0.2.7"),
        (IdPayload.fqdn("member1.example"), "fqdn:member1.example"),
        (IdPayload.user_fqdn("gm@example.net"), "user-fqdn:gm@example.net"),
        (IdPayload.key_id(b"member-01"), "key-id:6d656d6265722d3031"),
    ],
)
@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_every_configurable_identity_type(identity: IdPayload, shown: str, mode: str):
    pair = make_pair(
        peer(RESPONDER_IP, mode=mode, local_identity=identity),
        peer(INITIATOR_IP, mode=mode, remote_identity=identity),
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    [up] = _established(pair.events_r)
    assert up.sa.remote_identity == shown
    assert _established(pair.events_i)[0].sa.local_identity == shown


# --- regressions found in review: strays and repeats must not break a negotiation ----


def test_a_stray_header_with_our_cookie_cannot_rebind_a_pending_sa():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    icookie = mm1[:8]
    stray = icookie + b"\x66" * 8 + bytes([0, 0x10, 99, 0]) + bytes(4) + (28).to_bytes(4, "big")
    pair.initiator.receive_datagram(stray, ("203.0.113.5", 848), 0.0)
    pair.initiator.receive_datagram(stray, (RESPONDER_IP, 848), 0.0)
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 0.0)
    pair.transfer()
    assert _established(pair.events_i) and _established(pair.events_r)


def test_a_late_duplicate_answer_is_ignored_not_fatal():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    pair.initiator.receive_datagram(mm2, (RESPONDER_IP, 848), 0.0)
    [(mm3, _)] = pair.initiator.datagrams_to_send()
    pair.responder.receive_datagram(mm3, (INITIATOR_IP, 848), 0.0)
    [(mm4, _)] = pair.responder.datagrams_to_send()
    pair.initiator.receive_datagram(mm4, (RESPONDER_IP, 848), 0.0)
    # A second copy of MM2 (the answer to a retransmitted MM1) arrives late.
    pair.initiator.receive_datagram(mm2, (RESPONDER_IP, 848), 0.0)
    pair.transfer()
    assert _established(pair.events_i) and _established(pair.events_r)
    assert not _failed(pair.events_i + pair.events_r)
    assert "late repeat of a message already handled" in [
        e.reason for e in pair.events_i if isinstance(e, PacketDropped)
    ]


def test_a_first_message_repeated_after_establishment_creates_nothing():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    mm1 = pair.wire[0][1]
    expiry = pair.responder.get_timer()
    pair.responder.receive_datagram(mm1, (INITIATOR_IP, 848), 5.0)
    assert pair.responder.datagrams_to_send() == []
    assert pair.responder.get_timer() == expiry  # no new half-open SA with its own deadline
    pair.collect()
    assert isinstance(pair.events_r[-1], PacketDropped)


def test_a_repeated_final_message_gets_no_answer_once_established():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    mm6 = [data for sender, data in pair.wire if sender == "r"][-1]
    pair.initiator.receive_datagram(mm6, (RESPONDER_IP, 848), 1.0)
    assert pair.initiator.datagrams_to_send() == []
    assert len(pair.initiator.established()) == 1


def test_phase1_messages_with_a_message_id_are_dropped():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    bad = mm1[:20] + (7).to_bytes(4, "big") + mm1[24:]
    pair.responder.receive_datagram(bad, (INITIATOR_IP, 848), 0.0)
    assert pair.responder.datagrams_to_send() == [] and pair.responder.get_timer() is None
    event = pair.responder.next_event()
    assert isinstance(event, PacketDropped) and "message ID 0x00000007" in event.reason


def test_peer_identities_cannot_inject_log_lines():
    evil = IdPayload.fqdn("a.example\nIKE SA up: peer=6.6.6.6")
    assert evil.describe() == "fqdn:a.example\\x0aIKE\\x20SA\\x20up:\\x20peer=6.6.6.6"
