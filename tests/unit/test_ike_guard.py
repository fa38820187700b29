"""The Phase 1 responder under attack: MAC cookies, no DH before MM3, bounded half-open state.

Everything runs on a fake clock against in-memory endpoints; the attacker is
whatever we hand to ``receive_datagram``.
"""

from __future__ import annotations

import os

import pytest

from groupvpn.crypto import dh
from groupvpn.ike import phase1
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import IkeSaEstablished, InternalError, PacketDropped
from groupvpn.ike.guard import (
    DROP_EVENT_BURST,
    FIRST_MESSAGE_MAX_OCTETS,
    HALF_OPEN_PER_ADDRESS,
    NOTIFY_BURST,
    NOTIFY_RATE,
    Drop,
    HalfOpenSas,
    MainModeAnswer,
    OfferCache,
    ResponderCookies,
    TokenBucket,
)
from groupvpn.ike.policy import Refusal
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.wire.message import pull_header
from groupvpn.wire.payloads import IdPayload
from tests.ikepair import INITIATOR_IP, PORT, RESPONDER_IP, Pair, make_pair, peer, proposal

SOURCE = (INITIATOR_IP, PORT)


class DhCounter:
    """Counts Diffie-Hellman key generations (the expensive step a flood must not reach)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = dh.DhExchange

        def counting(group: dh.DhGroup) -> dh.DhExchange:
            self.count += 1
            return original(group)

        monkeypatch.setattr(phase1, "DhExchange", counting)


def _mm1(pair: Pair) -> bytes:
    pair.initiator.initiate("gw", pair.now)
    [(mm1, _)] = pair.initiator.datagrams_to_send()
    return mm1


def _mm3_of(pair: Pair, mm2: bytes) -> bytes:
    pair.initiator.receive_datagram(mm2, (RESPONDER_IP, PORT), pair.now)
    [(mm3, _)] = pair.initiator.datagrams_to_send()
    return mm3


def _with_cookie(message: bytes, responder_cookie: bytes) -> bytes:
    return message[:8] + responder_cookie + message[16:]


def _drops(endpoint: IkeEndpoint, kind: Drop) -> int:
    return endpoint.drop_counts[kind]


def test_mm1_gets_a_mac_cookie_and_leaves_no_sa_no_timer_no_dh(monkeypatch: pytest.MonkeyPatch):
    dhs = DhCounter(monkeypatch)
    pair = make_pair()
    mm1 = _mm1(pair)
    for n in range(1, 101):  # a hundred exchanges' worth of MM1s: nothing per exchange
        pair.responder.receive_datagram(n.to_bytes(8, "big") + mm1[8:], SOURCE, 0.0)
    pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    *_, (mm2, to) = pair.responder.datagrams_to_send()
    assert to == SOURCE
    digest = MainModeAnswer.digest_of(mm1[16:])
    assert pair.responder._cookies.check(
        mm1[:8], pull_header(mm2).responder_cookie, SOURCE, digest, 0.0
    )
    assert pair.responder.get_timer() is None and not list(pair.responder._table)
    assert len(pair.responder._offers) == 1 and pair.responder.half_open_count() == 0
    assert dhs.count == 0
    # The genuine MM3 creates the SA, and only now the responder does DH work.
    mm3 = _mm3_of(pair, mm2)
    assert dhs.count == 1  # the initiator's
    pair.responder.receive_datagram(mm3, SOURCE, 0.1)
    assert dhs.count == 2
    assert pair.responder.half_open_count() == 1  # DH spent, not authenticated yet
    pair.transfer()
    assert pair.responder.half_open_count() == 0
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_r)
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_i)


def test_forged_mm3_is_dropped_with_one_hmac_and_no_dh(monkeypatch: pytest.MonkeyPatch):
    pair = make_pair()
    mm1 = _mm1(pair)
    pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    mm3 = _mm3_of(pair, mm2)
    dhs = DhCounter(monkeypatch)
    # A blind attacker guesses cookies; a spoofer replays the real MM3 from elsewhere.
    for guess in range(1, 51):
        forged = _with_cookie(mm3, os.urandom(8) if guess % 2 else guess.to_bytes(8, "big"))
        pair.responder.receive_datagram(forged, SOURCE, 0.1)
    pair.responder.receive_datagram(mm3, (INITIATOR_IP, PORT + 1), 0.1)
    pair.responder.receive_datagram(mm3, ("198.51.100.77", PORT), 0.1)
    # From the gateway's address: a cookie we did not issue; from an address whose
    # gateway we answered nothing (or that has none): no SA these cookies could name.
    assert _drops(pair.responder, Drop.FORGED_COOKIE) == 51
    assert _drops(pair.responder, Drop.NO_SA) == 1
    assert dhs.count == 0 and pair.responder.datagrams_to_send() == []
    assert not list(pair.responder._table)
    # The negotiation itself is untouched.
    pair.responder.receive_datagram(mm3, SOURCE, 0.2)
    pair.transfer()
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_i)


def test_an_mm3_that_is_not_an_mm3_changes_nothing():
    pair = make_pair()
    pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    mm3 = _mm3_of(pair, mm2)
    # Right cookies, wrong content: a second copy of MM1's body, then a truncation.
    wrong = mm3[:16] + bytes([1]) + mm3[17:]  # next payload: SA instead of KE
    pair.responder.receive_datagram(wrong, SOURCE, 0.1)
    pair.responder.receive_datagram(mm3[:-5], SOURCE, 0.1)
    assert pair.responder.half_open_count() == 0 and not list(pair.responder._table)
    pair.responder.receive_datagram(mm3, SOURCE, 0.2)
    pair.transfer()
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_i)


def test_cookies_last_one_to_two_periods_and_are_bound_to_address_port_and_offer():
    cookies = ResponderCookies(os.urandom, period=10.0)
    cky_i, offer = b"\x01" * 8, b"offer-digest"
    cookie = cookies.issue(cky_i, SOURCE, offer, 5.0)
    assert cookies.issue(cky_i, SOURCE, offer, 9.0) == cookie  # same bucket: same cookie
    assert cookies.check(cky_i, cookie, SOURCE, offer, 19.9)
    assert not cookies.check(cky_i, cookie, SOURCE, offer, 20.0)
    assert not cookies.check(cky_i, cookie, (INITIATOR_IP, PORT + 1), offer, 6.0)
    assert not cookies.check(cky_i, cookie, ("198.51.100.3", PORT), offer, 6.0)
    assert not cookies.check(b"\x02" * 8, cookie, SOURCE, offer, 6.0)
    assert not cookies.check(cky_i, cookie, SOURCE, b"another-offer", 6.0)
    assert not cookies.check(cky_i, cookie[:7] + bytes([cookie[7] ^ 1]), SOURCE, offer, 6.0)
    assert cookies.issue(cky_i, SOURCE, offer, 10.0) != cookie  # a new bucket, a new secret


def _completed_mm3s(pair: Pair, count: int, source: tuple[str, int]) -> None:
    """``count`` genuine MM1/MM3 rounds from ``source``: responder SAs waiting for MM5."""
    for _ in range(count):
        mm1 = _mm1(pair)
        pair.responder.receive_datagram(mm1, source, pair.now)
        [(mm2, _)] = pair.responder.datagrams_to_send()
        pair.responder.receive_datagram(_mm3_of(pair, mm2), source, pair.now)
        pair.responder.datagrams_to_send()


def test_half_open_sas_are_bounded_per_address_before_any_dh(monkeypatch: pytest.MonkeyPatch):
    pair = make_pair()
    _completed_mm3s(pair, HALF_OPEN_PER_ADDRESS, SOURCE)
    assert pair.responder.half_open_count(INITIATOR_IP) == HALF_OPEN_PER_ADDRESS
    dhs = DhCounter(monkeypatch)
    mm1 = _mm1(pair)
    pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    mm3 = _mm3_of(pair, mm2)
    responder_dh = dhs.count
    pair.responder.receive_datagram(mm3, SOURCE, 0.0)
    assert dhs.count == responder_dh and pair.responder.datagrams_to_send() == []
    assert _drops(pair.responder, Drop.HALF_OPEN_LIMIT_SOURCE) == 1
    # They lapse with the negotiation timeout; then the address may try again.
    while pair.responder.get_timer() is not None:
        pair.responder.handle_timer(pair.responder.get_timer() or 0.0)
    assert pair.responder.half_open_count() == 0
    pair.responder.receive_datagram(mm3, SOURCE, 1.0)  # its cookie is still good
    assert pair.responder.half_open_count() == 1


def test_half_open_sas_are_bounded_in_total_and_released_idempotently():
    table = HalfOpenSas(per_address=2, total=3)
    sas = [_sa(f"192.0.2.{n % 2}") for n in range(3)]
    for sa in sas:
        assert table.refusal(sa.peer[0]) is None
        table.add(sa)
    assert table.refusal("192.0.2.1") is Drop.HALF_OPEN_LIMIT_TOTAL
    assert table.refusal("192.0.2.0") is Drop.HALF_OPEN_LIMIT_SOURCE
    table.discard(sas[0])  # established
    table.discard(sas[0])  # and later forgotten: counted once
    assert len(table) == 2 and table.refusal("192.0.2.0") is None


def _sa(host: str) -> IkeSa:
    return IkeSa(
        role=Role.RESPONDER, mode=Mode.MAIN, peer=(host, PORT), policy=peer(host),
        initiator_cookie=b"i" * 8, responder_cookie=b"r" * 8, state=SaState.MM_KE_ANSWERED,
        local_id=IdPayload.ipv4(RESPONDER_IP), created_at=0.0,
    )  # fmt: skip


def test_offers_are_cached_per_gateway_so_other_gateways_cannot_push_them_out():
    cache = OfferCache(per_gateway=2, size=5)
    member = peer(INITIATOR_IP, gateway="member")
    answer = MainModeAnswer(member, b"t", MainModeAnswer.digest_of(b"t"), b"", proposal(), b"")
    cache.put("member", b"t", answer)
    assert cache.get(member, b"t") is answer
    assert cache.get(peer(INITIATOR_IP, gateway="member"), b"t") is None  # another policy
    for n in range(2):
        cache.put("ghost", bytes([n]), replace_tail(answer, bytes([n])))
    assert cache.answers_for("member") == [answer]
    for n in range(2, 5):
        cache.put("ghost", bytes([n]), replace_tail(answer, bytes([n])))
    assert cache.answers_for("member") == [answer]  # per-gateway bound: the ghost's own go
    assert len(cache.answers_for("ghost")) == 2
    refusal = Refusal("no", 14)
    for n in range(10):  # refusals count against the total only
        cache.put(f"other{n}", b"x", (member, refusal))
    assert len(cache) <= 5


def replace_tail(answer: MainModeAnswer, tail: bytes) -> MainModeAnswer:
    return MainModeAnswer(
        answer.policy, tail, MainModeAnswer.digest_of(tail), answer.sai_b, answer.agreed,
        answer.answer_tail,
    )  # fmt: skip


def test_refusal_notifies_are_rate_limited_but_every_drop_is_counted():
    pair = make_pair(peer(RESPONDER_IP, mode="main"), peer(INITIATOR_IP, mode="aggressive"))
    firsts = [_mm1(pair) for _ in range(NOTIFY_BURST + 30)]
    for mm1 in firsts:
        pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    assert len(pair.responder.datagrams_to_send()) == NOTIFY_BURST
    assert _drops(pair.responder, Drop.NOTIFY_RATE) == 30
    # A second later the bucket has refilled by NOTIFY_RATE tokens.
    for mm1 in firsts[:20]:
        pair.responder.receive_datagram(mm1, SOURCE, 1.0)
    assert len(pair.responder.datagrams_to_send()) == NOTIFY_RATE


def test_a_flood_of_garbage_is_counted_and_its_events_are_bounded():
    pair = make_pair()
    for n in range(5000):
        pair.responder.receive_datagram(os.urandom(n % 90), (f"10.0.{n % 250}.1", 500), 0.0)
    pair.collect()
    assert sum(pair.responder.drop_counts.values()) == 5000
    assert len(pair.events_r) == DROP_EVENT_BURST
    assert all(isinstance(e, PacketDropped) for e in pair.events_r)
    assert not list(pair.responder._table) and pair.responder.get_timer() is None


def test_oversized_first_messages_are_not_read():
    pair = make_pair()
    mm1 = _mm1(pair)
    padded = mm1 + bytes(FIRST_MESSAGE_MAX_OCTETS)
    padded = padded[:24] + len(padded).to_bytes(4, "big") + padded[28:]  # header length agrees
    pair.responder.receive_datagram(padded, SOURCE, 0.0)
    assert _drops(pair.responder, Drop.FIRST_MESSAGE_TOO_LONG) == 1
    assert pair.responder.datagrams_to_send() == [] and len(pair.responder._offers) == 0


def test_aggressive_mode_answers_are_rate_limited(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("groupvpn.ike.first_messages.AGGRESSIVE_ANSWER_BURST", 3)
    pair = make_pair(peer(RESPONDER_IP, mode="aggressive"), peer(INITIATOR_IP, mode="aggressive"))
    dhs = DhCounter(monkeypatch)
    for _ in range(6):
        pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    assert len(pair.responder.datagrams_to_send()) == 3
    assert _drops(pair.responder, Drop.AGGRESSIVE_RATE) == 3
    assert dhs.count == 6 + 3  # six initiators, three answers


def test_a_repeated_mm1_gets_the_same_mm2_until_the_cookie_bucket_turns():
    pair = make_pair()
    mm1 = _mm1(pair)
    for _ in range(3):
        pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    answers = {data for data, _ in pair.responder.datagrams_to_send()}
    assert len(answers) == 1
    pair.responder.receive_datagram(mm1, SOURCE, 200.0)
    [(later, _)] = pair.responder.datagrams_to_send()
    assert later[16:] == next(iter(answers))[16:] and later[8:16] != next(iter(answers))[8:16]


def test_token_bucket_refills_at_its_rate_and_ignores_time_going_backwards():
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)
    assert not bucket.take(0.2)  # an earlier time adds nothing
    assert bucket.take(10.0) and bucket.take(10.0) and bucket.take(10.0)
    assert not bucket.take(10.0)


def test_phase1_messages_out_of_order_are_dropped_not_fatal():
    pair = make_pair()
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    wire = pair.wire
    established = pair.responder.established()
    # Every message of the finished exchange, again, in reverse order, to both sides.
    for sender, data in reversed(wire):
        target, source = (
            (pair.responder, SOURCE) if sender == "i" else (pair.initiator, (RESPONDER_IP, PORT))
        )
        target.receive_datagram(data, source, 1.0)
    assert pair.responder.established() == established
    assert len(pair.initiator.established()) == 1
    pair.collect()
    assert not [e for e in pair.events_r + pair.events_i if isinstance(e, InternalError)]


def test_copies_of_an_offer_are_decided_once_until_a_reload(monkeypatch: pytest.MonkeyPatch):
    from groupvpn.wire.message import decode_message

    decodes = 0

    def counting(data: bytes) -> object:
        nonlocal decodes
        decodes += 1
        return decode_message(data)

    monkeypatch.setattr("groupvpn.ike.first_messages.decode_message", counting)
    pair = make_pair()
    mm1 = _mm1(pair)
    for n in range(1, 51):
        pair.responder.receive_datagram(n.to_bytes(8, "big") + mm1[8:], SOURCE, 0.0)
    assert decodes == 1 and len(pair.responder._offers) == 1
    answers = [data for data, _ in pair.responder.datagrams_to_send()]
    assert len({data[16:] for data in answers}) == 1  # one MM2 body, 50 cookie pairs
    assert len({data[:16] for data in answers}) == 50
    # After a reload that takes the proposal away, the same offer is refused.
    pair.responder.set_peers([peer(INITIATOR_IP, proposals=(proposal("aes-256-cbc"),))])
    pair.responder.receive_datagram(b"\xee" * 8 + mm1[8:], SOURCE, 0.0)
    [(refusal, _)] = pair.responder.datagrams_to_send()
    assert decodes == 2 and pull_header(refusal).exchange_type == 5  # Informational


def test_refused_offers_are_counted_and_their_reports_bounded():
    pair = make_pair(peer(RESPONDER_IP, mode="main"), peer(INITIATOR_IP, mode="aggressive"))
    for _ in range(DROP_EVENT_BURST + 50):
        pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    pair.collect()
    assert _drops(pair.responder, Drop.REFUSED) == DROP_EVENT_BURST + 50
    assert len(pair.events_r) <= DROP_EVENT_BURST


def test_a_negotiation_in_flight_across_a_reload_keeps_the_policy_it_started_under():
    pair = make_pair()
    pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    # The reload replaces the gateway (same name, same key, shorter lifetime).
    pair.responder.set_peers([peer(INITIATOR_IP, proposals=(proposal(lifetime=600),))])
    pair.responder.receive_datagram(_mm3_of(pair, mm2), SOURCE, 0.1)
    pair.transfer()
    [info] = pair.responder.established()
    assert info.lifetime_seconds == 28800  # agreed under the policy MM1 met
    # A new negotiation meets the new policy.
    pair.initiator.initiate("gw", 1.0)
    pair.transfer()
    assert sorted(sa.lifetime_seconds for sa in pair.responder.established()) == [600, 28800]
