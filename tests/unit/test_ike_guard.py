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
    HalfOpen,
    HalfOpenTable,
    MainModeAnswer,
    ResponderCookies,
    TokenBucket,
)
from groupvpn.wire.message import pull_header
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
    pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    [(mm2, to)] = pair.responder.datagrams_to_send()
    assert to == SOURCE
    cookie = pull_header(mm2).responder_cookie
    assert pair.responder._cookies.check(mm1[:8], cookie, SOURCE, 0.0)
    assert pair.responder.half_open_count() == 1
    assert pair.responder.get_timer() is None and not list(pair.responder._table)
    assert dhs.count == 0
    # The genuine MM3 creates the SA, and only now the responder does DH work.
    mm3 = _mm3_of(pair, mm2)
    assert dhs.count == 1  # the initiator's
    pair.responder.receive_datagram(mm3, SOURCE, 0.1)
    assert dhs.count == 2
    assert pair.responder.half_open_count() == 0
    pair.transfer()
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
    assert _drops(pair.responder, Drop.FORGED_COOKIE) == 52
    assert dhs.count == 0 and pair.responder.datagrams_to_send() == []
    assert pair.responder.half_open_count() == 1
    # The negotiation itself is untouched.
    pair.responder.receive_datagram(mm3, SOURCE, 0.2)
    pair.transfer()
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_i)


def test_an_mm3_that_is_not_an_mm3_keeps_the_half_open_record():
    pair = make_pair()
    pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    [(mm2, _)] = pair.responder.datagrams_to_send()
    mm3 = _mm3_of(pair, mm2)
    # Right cookies, wrong content: a second copy of MM1's body, then a truncation.
    wrong = mm3[:16] + bytes([1]) + mm3[17:]  # next payload: SA instead of KE
    pair.responder.receive_datagram(wrong, SOURCE, 0.1)
    pair.responder.receive_datagram(mm3[:-5], SOURCE, 0.1)
    assert pair.responder.half_open_count() == 1 and not list(pair.responder._table)
    pair.responder.receive_datagram(mm3, SOURCE, 0.2)
    pair.transfer()
    assert any(isinstance(e, IkeSaEstablished) for e in pair.events_i)


def test_cookies_last_one_to_two_periods_and_are_bound_to_address_and_port():
    cookies = ResponderCookies(os.urandom, period=10.0)
    cky_i = b"\x01" * 8
    cookie = cookies.issue(cky_i, SOURCE, 5.0)
    assert cookies.issue(cky_i, SOURCE, 9.0) == cookie  # same bucket: same cookie
    assert cookies.check(cky_i, cookie, SOURCE, 19.9)
    assert not cookies.check(cky_i, cookie, SOURCE, 20.0)
    assert not cookies.check(cky_i, cookie, (INITIATOR_IP, PORT + 1), 6.0)
    assert not cookies.check(cky_i, cookie, ("198.51.100.3", PORT), 6.0)
    assert not cookies.check(b"\x02" * 8, cookie, SOURCE, 6.0)
    assert not cookies.check(cky_i, cookie[:7] + bytes([cookie[7] ^ 1]), SOURCE, 6.0)
    assert cookies.issue(cky_i, SOURCE, 10.0) != cookie  # a new bucket, a new secret


def test_half_open_records_are_bounded_per_address_oldest_out():
    pair = make_pair()
    firsts: list[bytes] = []
    for n in range(HALF_OPEN_PER_ADDRESS + 3):
        pair.now = n * 0.01
        firsts.append(_mm1(pair))
        pair.responder.receive_datagram(firsts[-1], SOURCE, pair.now)
    answers = [data for data, _ in pair.responder.datagrams_to_send()]
    assert len(answers) == HALF_OPEN_PER_ADDRESS + 3  # every MM1 is answered
    assert pair.responder.half_open_count(INITIATOR_IP) == HALF_OPEN_PER_ADDRESS
    assert _drops(pair.responder, Drop.HALF_OPEN_EVICTED_SOURCE) == 3
    # The three oldest are gone: their MM3s carry good cookies but find nothing.
    for index in (0, 3):
        mm2 = answers[index]
        pair.initiator.receive_datagram(mm2, (RESPONDER_IP, PORT), pair.now)
    mm3_old, mm3_kept = (data for data, _ in pair.initiator.datagrams_to_send())
    pair.responder.receive_datagram(mm3_old, SOURCE, 1.0)
    assert _drops(pair.responder, Drop.HALF_OPEN_GONE) == 1
    pair.responder.receive_datagram(mm3_kept, SOURCE, 1.0)
    assert pair.responder.half_open_count(INITIATOR_IP) == HALF_OPEN_PER_ADDRESS - 1
    assert len(pair.responder.datagrams_to_send()) == 1  # MM4


def _entry(host: str, number: int, created_at: float) -> HalfOpen:
    return HalfOpen(
        peer=(host, PORT), policy=peer(host), initiator_cookie=number.to_bytes(8, "big"),
        responder_cookie=b"R" * 8, offer=MainModeAnswer(b"", proposal(), b""), first_tail=b"",
        created_at=created_at,
    )  # fmt: skip


def test_half_open_table_total_limit_and_lazy_expiry():
    table = HalfOpenTable(lifetime=10.0, per_address=2, total=3)
    evictions = [table.add(_entry(f"192.0.2.{n}", n, float(n)), float(n)) for n in range(5)]
    total = [Drop.HALF_OPEN_EVICTED_TOTAL]
    assert evictions == [[], [], [], total, total]
    assert len(table) == 3 and table.count_for("192.0.2.0") == 0
    assert table.find((4).to_bytes(8, "big"), b"R" * 8, 5.0) is not None
    assert table.find((2).to_bytes(8, "big"), b"R" * 8, 12.0) is None  # expired
    assert len(table) == 2
    table.expire(100.0)
    assert len(table) == 0 and table.count_for("192.0.2.4") == 0


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
    assert pair.responder.half_open_count() == 0 and pair.responder.get_timer() is None


def test_oversized_first_messages_are_not_read():
    pair = make_pair()
    mm1 = _mm1(pair)
    padded = mm1 + bytes(FIRST_MESSAGE_MAX_OCTETS)
    padded = padded[:24] + len(padded).to_bytes(4, "big") + padded[28:]  # header length agrees
    pair.responder.receive_datagram(padded, SOURCE, 0.0)
    assert _drops(pair.responder, Drop.FIRST_MESSAGE_TOO_LONG) == 1
    assert pair.responder.half_open_count() == 0


def test_aggressive_mode_answers_are_rate_limited(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("groupvpn.ike.endpoint.AGGRESSIVE_ANSWER_BURST", 3)
    pair = make_pair(peer(RESPONDER_IP, mode="aggressive"), peer(INITIATOR_IP, mode="aggressive"))
    dhs = DhCounter(monkeypatch)
    for _ in range(6):
        pair.responder.receive_datagram(_mm1(pair), SOURCE, 0.0)
    assert len(pair.responder.datagrams_to_send()) == 3
    assert _drops(pair.responder, Drop.AGGRESSIVE_RATE) == 3
    assert dhs.count == 6 + 3  # six initiators, three answers


def test_repeated_mm1_is_answered_a_bounded_number_of_times():
    pair = make_pair()
    mm1 = _mm1(pair)
    for _ in range(10):
        pair.responder.receive_datagram(mm1, SOURCE, 0.0)
    answers = pair.responder.datagrams_to_send()
    assert len(answers) == 1 + 4 and len({data for data, _ in answers}) == 1
    changed = mm1[:-1] + bytes([mm1[-1] ^ 1])
    pair.responder.receive_datagram(changed, SOURCE, 0.0)
    assert pair.responder.datagrams_to_send() == []
    assert pair.responder.half_open_count() == 1


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

    monkeypatch.setattr("groupvpn.ike.endpoint.decode_message", counting)
    pair = make_pair()
    mm1 = _mm1(pair)
    for n in range(1, 51):
        pair.responder.receive_datagram(n.to_bytes(8, "big") + mm1[8:], SOURCE, 0.0)
    assert decodes == 1 and pair.responder.half_open_count() == HALF_OPEN_PER_ADDRESS
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
