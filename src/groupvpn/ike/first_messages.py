"""How an IKE endpoint answers first messages, and everything it drops, cheaply.

The part of :class:`~groupvpn.ike.endpoint.IkeEndpoint` that faces peers
that have proven nothing yet (docs/hostile-network.md):

* a Main Mode MM1 from a configured gateway is answered with an MM2 whose
  responder cookie is a MAC (:class:`~groupvpn.ike.guard.ResponderCookies`), and
  nothing is kept for the exchange: the decision on the offer, with SAi_b, is
  cached per gateway (:class:`~groupvpn.ike.guard.OfferCache`);
* a Main Mode message for no SA is taken as MM3 only if it echoes such a cookie
  from the address it was given to; only then, and within the half-open limits,
  is an SA created and Diffie-Hellman work done;
* Aggressive Mode, which cannot wait, is rate-limited and held to the same limits;
* refusals, Notifies and drop reports are rate-limited; every drop is counted.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from ipaddress import IPv4Address, ip_address

from groupvpn.ike import phase1
from groupvpn.ike.events import Address, IkeEvent, IkeSaFailed, PacketDropped
from groupvpn.ike.guard import (
    AGGRESSIVE_ANSWER_BURST,
    AGGRESSIVE_ANSWER_RATE,
    DROP_EVENT_BURST,
    DROP_EVENT_RATE,
    FIRST_MESSAGE_MAX_OCTETS,
    NOTIFY_BURST,
    NOTIFY_RATE,
    Drop,
    HalfOpenSas,
    MainModeAnswer,
    OfferCache,
    ResponderCookies,
    TokenBucket,
)
from groupvpn.ike.informational import unprotected_notify
from groupvpn.ike.phase1 import Env, Received, Step
from groupvpn.ike.policy import Phase1Peer, Refusal, Selection, admit_offer, sa_answer
from groupvpn.ike.rules import AGGRESSIVE_MODE_RULES, MAIN_MODE_RULES, first_of, violation
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.ike.table import ZERO_COOKIE, SaTable
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import ExchangeType, NotifyType
from groupvpn.wire.message import IsakmpHeader, decode_message, encode_message
from groupvpn.wire.payloads import SaPayload


class FirstMessages:
    """Mixin for IkeEndpoint: first messages, MM3 admission, limits and drops."""

    # Provided by IkeEndpoint.
    _table: SaTable
    _peers_by_address: dict[IPv4Address, Phase1Peer]
    _env: Env
    _events: deque[IkeEvent]
    _outbox: list[tuple[bytes, Address]]

    def _init_defences(self, random_bytes: Callable[[int], bytes], cookie_period: float) -> None:
        self._cookies = ResponderCookies(random_bytes, period=cookie_period)
        self._offers = OfferCache()
        self._half_open = HalfOpenSas()
        self._notifies = TokenBucket(NOTIFY_RATE, NOTIFY_BURST)
        self._aggressive_answers = TokenBucket(AGGRESSIVE_ANSWER_RATE, AGGRESSIVE_ANSWER_BURST)
        self._drop_events = TokenBucket(DROP_EVENT_RATE, DROP_EVENT_BURST)
        #: Every drop, by stable reason (the events carry the details, rate-limited).
        self.drop_counts: Counter[Drop] = Counter()
        #: The time of the call being handled, for the rate limits.
        self._now = 0.0

    # -- implemented by IkeEndpoint ------------------------------------------------------

    def _is_repeat(self, sa: IkeSa, data: bytes) -> bool:
        raise NotImplementedError

    def _new_sa(
        self, role: Role, mode: Mode, peer_address: Address, peer: Phase1Peer,
        initiator_cookie: bytes, responder_cookie: bytes, now: float,
    ) -> IkeSa:  # fmt: skip
        raise NotImplementedError

    def _cookie(self) -> bytes:
        raise NotImplementedError

    def _apply(self, sa: IkeSa, step: Step, now: float, received: bytes | None) -> None:
        raise NotImplementedError

    def _open(self, sa: IkeSa, data: bytes, header: IsakmpHeader) -> Received:
        raise NotImplementedError

    # -- first messages ------------------------------------------------------------------

    def _receive_first_message(
        self, data: bytes, header: IsakmpHeader, mode: Mode, addr: Address, now: float
    ) -> None:
        existing = self._table.find_by_first_message(header.initiator_cookie, addr)
        if existing is not None:
            if not self._is_repeat(existing, data):
                why = "different first message for a negotiation in progress"
                self._drop(addr, why, Drop.REPEAT)
            return
        if self._table.is_ours(header.initiator_cookie):
            why = "first message carries one of our own initiator cookies"
            self._drop(addr, why, Drop.UNEXPECTED)
            return
        peer = self._peers_by_address.get(ipv4_of(addr[0]))
        if peer is None:
            self._drop(addr, f"no IKE gateway configured for {addr[0]}", Drop.UNKNOWN_GATEWAY)
            return
        if len(data) > FIRST_MESSAGE_MAX_OCTETS:
            why = f"first message of {len(data)} octets is longer than {FIRST_MESSAGE_MAX_OCTETS}"
            self._drop(addr, why, Drop.FIRST_MESSAGE_TOO_LONG)
            return
        if mode is Mode.MAIN:
            self._receive_main_mode_offer(data, header, addr, peer, now)
            return
        message = decode_message(data)
        received = Received(message.payloads, message.raw_payloads, header.encrypted)
        decision = self._admit(peer, mode, received)
        if isinstance(decision, Refusal):
            self._refuse(header, addr, peer, mode, decision)
            return
        if not self._aggressive_answers.take(now):
            self._drop(addr, Drop.AGGRESSIVE_RATE, Drop.AGGRESSIVE_RATE)
            return
        if limit := self._half_open.refusal(addr[0]):
            self._drop(addr, limit, limit)
            return
        offer, selection = decision
        sa = self._new_sa(
            Role.RESPONDER, mode, addr, peer, header.initiator_cookie, self._cookie(), now
        )
        sa.sai_b = _sa_body(received)
        sa.agreed = selection.agreed
        self._table.add(sa)
        self._half_open.add(sa)
        step = phase1.aggressive_mode_answer(sa, received, self._env, sa_answer(offer, selection))
        self._apply(sa, step, now, received=data)

    def _refuse(
        self, header: IsakmpHeader, addr: Address, peer: Phase1Peer, mode: Mode, refusal: Refusal
    ) -> None:
        # Answer, but keep no state for a message we will not take.  Anyone can
        # send these from a gateway's address: counted always, reported within the
        # drop-event budget, so they cannot flood the log.
        self._send_unprotected_notify(header.initiator_cookie, ZERO_COOKIE, refusal.notify, addr)
        self.drop_counts[Drop.REFUSED] += 1
        if self._drop_events.take(self._now):
            self._events.append(
                IkeSaFailed(addr, peer.gateway, Role.RESPONDER.value, mode.value,
                            refusal.reason, refusal.notify)
            )  # fmt: skip

    def _receive_main_mode_offer(
        self, data: bytes, header: IsakmpHeader, addr: Address, peer: Phase1Peer, now: float
    ) -> None:
        """MM2 with a MAC cookie, and nothing kept for this exchange.

        The decision on the offer is cached per gateway: copies of this MM1 get
        it without a decode, and MM3 finds SAi_b there (see _receive_third_message).
        """
        tail = data[16:]  # everything but the cookies
        decision = self._offers.get(peer, tail)
        if decision is None:
            message = decode_message(data)
            received = Received(message.payloads, message.raw_payloads, header.encrypted)
            admitted = self._admit(peer, Mode.MAIN, received)
            if isinstance(admitted, Refusal):
                decision = admitted
                self._offers.put(peer.gateway, tail, (peer, admitted))
            else:
                offer, selection = admitted
                answer = encode_message(
                    ZERO_COOKIE, ZERO_COOKIE, ExchangeType.IDENTITY_PROTECTION,
                    [sa_answer(offer, selection)],
                )  # fmt: skip
                decision = MainModeAnswer(
                    peer, tail, MainModeAnswer.digest_of(tail), _sa_body(received),
                    selection.agreed, answer[16:],
                )  # fmt: skip
                self._offers.put(peer.gateway, tail, decision)
        if isinstance(decision, Refusal):
            self._refuse(header, addr, peer, Mode.MAIN, decision)
            return
        # The same MM1 again (our MM2 was lost) gets the same MM2 again: the cookie
        # is a function of the message, the address and the time bucket.
        cookie = self._cookies.issue(header.initiator_cookie, addr, decision.digest, now)
        self._outbox.append((header.initiator_cookie + cookie + decision.answer_tail, addr))

    def _receive_third_message(
        self, data: bytes, header: IsakmpHeader, addr: Address, now: float
    ) -> None:
        """A Main Mode message for no SA: MM3 if it echoes a cookie we gave this address.

        Only then does the responder create an SA and start Diffie-Hellman.
        The cookie also names the offer MM1 made: it is checked against each
        offer the gateway has recently made (usually one), one HMAC each.
        """
        cookies = header.initiator_cookie, header.responder_cookie
        peer = self._peers_by_address.get(ipv4_of(addr[0]))
        offers = self._offers.answers_for(peer.gateway) if peer is not None else []
        offer = next(
            (o for o in offers if self._cookies.check(*cookies, addr, o.digest, now)), None
        )
        if not offers:
            # We answered no MM1 from this address's gateway: no cookie of ours can
            # be here (a late message for an SA that is gone, or a stray one).
            self._drop(addr, Drop.NO_SA, Drop.NO_SA)
            return
        if peer is None or offer is None:
            # Forged, stale, from elsewhere, or for an SA we have forgotten.
            self._drop(addr, Drop.FORGED_COOKIE, Drop.FORGED_COOKIE)
            return
        if limit := self._half_open.refusal(addr[0]):
            self._drop(addr, limit, limit)
            return
        # Under the policy MM1 was accepted with, should a reload have come between.
        sa = self._new_sa(Role.RESPONDER, Mode.MAIN, addr, offer.policy, *cookies, now)
        sa.sai_b, sa.agreed, sa.state = offer.sai_b, offer.agreed, SaState.MM_SA_ANSWERED
        try:
            message = self._open(sa, data, header)
        except DecodeError as exc:
            self._drop(addr, f"malformed: {exc}", Drop.MALFORMED)
            return
        step = phase1.mm_responder_got_ke(sa, message, self._env)
        if step.drop is not None:
            # Not an MM3 after all; a genuine one may still follow.
            self._drop(addr, step.drop, Drop.UNEXPECTED)
            return
        # A late copy of MM1 is now a repeat of a message this SA accepted.
        sa.accepted.append(header.initiator_cookie + ZERO_COOKIE + offer.first_tail)
        self._table.add(sa)
        self._half_open.add(sa)
        self._apply(sa, step, now, received=data)

    def _admit(
        self, peer: Phase1Peer, mode: Mode, received: Received
    ) -> Refusal | tuple[SaPayload, Selection]:
        if mode.value != peer.mode:
            return Refusal(
                f"peer uses {mode.value} mode, gateway {peer.gateway} is configured for "
                f"{peer.mode} mode",
                NotifyType.INVALID_EXCHANGE_TYPE,
            )
        rule = (MAIN_MODE_RULES if mode is Mode.MAIN else AGGRESSIVE_MODE_RULES)[0]
        if problem := violation(rule, received.payloads, received.encrypted):
            return Refusal(problem, NotifyType.PAYLOAD_MALFORMED)
        offer = first_of(received.payloads, SaPayload)
        decision = admit_offer(peer, offer)
        return decision if isinstance(decision, Refusal) else (offer, decision)

    def _send_unprotected_notify(
        self, initiator_cookie: bytes, responder_cookie: bytes, notify_type: int, addr: Address
    ) -> None:
        # What a forged packet can make us send, possibly to a forged address: rate-limited.
        if not self._notifies.take(self._now):
            self._drop(addr, Drop.NOTIFY_RATE, Drop.NOTIFY_RATE)
            return
        notify = unprotected_notify(initiator_cookie, responder_cookie, notify_type)
        self._outbox.append((notify, addr))

    def _drop(self, addr: Address, reason: str, kind: Drop = Drop.OTHER) -> None:
        """Count a drop under ``kind``; report it as an event unless drops are flooding in."""
        self.drop_counts[kind] += 1
        if self._drop_events.take(self._now):
            self._events.append(PacketDropped(addr, reason))

    # -- inspection (tests, statistics) ------------------------------------------------

    def half_open_count(self, host: str | None = None) -> int:
        """Responder SAs past the DH step, not yet authenticated (from ``host``, or in total)."""
        return len(self._half_open) if host is None else self._half_open.count_for(host)


def _sa_body(received: Received) -> bytes:
    """SAi_b: the body of the first message's SA payload exactly as it arrived."""
    return next(raw[4:] for p, raw in zip(received.payloads, received.raw, strict=True)
                if isinstance(p, SaPayload))  # fmt: skip


def ipv4_of(text: str) -> IPv4Address:
    address = ip_address(text)
    if not isinstance(address, IPv4Address):
        return IPv4Address(0)
    return address
