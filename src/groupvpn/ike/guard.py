"""What keeps a Phase 1 responder cheap for peers that have not proven anything yet.

Port 848 faces networks where anyone can send anything, from any source
address.  A Main Mode responder therefore keeps no per-exchange state and
spends no Diffie-Hellman work until the initiator has echoed a responder cookie
that only a host able to receive at its address can know
(docs/hostile-network.md explains the design).  This module holds the parts:

* :class:`ResponderCookies`: the responder cookie is a keyed MAC of the
  initiator cookie, the peer's address and port, the offer it answered and a
  time bucket, so MM3 is checked with an HMAC and needs no record of MM1;
* :class:`OfferCache`: the decision on an MM1 offer (and SAi_b, which MM3 does
  not repeat), per configured gateway, so neither a flood of copies nor the MM3
  that follows needs the first message again;
* :class:`HalfOpenSas`: SAs past MM3 (DH spent) that have not authenticated
  yet, bounded per source address and in total;
* :class:`TokenBucket`: rate limits for Notifies and other answers that an
  unauthenticated packet can trigger;
* :class:`Drop`: the stable reasons drops are counted under.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from groupvpn.ike.events import Address
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal, Refusal
from groupvpn.ike.sa import IkeSa

#: Negotiations a responder has spent Diffie-Hellman work on (a valid MM3, or an
#: AM1) and that have not authenticated yet, per source address.  A real gateway
#: has one or two in flight.  Beyond this, new ones are dropped before any DH.
HALF_OPEN_PER_ADDRESS = 8
#: The same, in total across all sources.
HALF_OPEN_TOTAL = 1024
#: A first message longer than this is dropped unread: its SA payload would be
#: cached until MM3 arrives.  Real offers are a few hundred octets.
FIRST_MESSAGE_MAX_OCTETS = 4096
#: Distinct offers remembered per gateway (a member sends the same offer every
#: time; a reconfigured one, a second), and in total.  Per gateway, so that a
#: flood spoofing other gateways' addresses cannot push a member's offer out.
OFFERS_PER_GATEWAY = 4
OFFER_CACHE_SIZE = 4096
#: Unprotected Notifies (answers to messages we refuse) sent per second, and
#: the burst allowed after a quiet period.  They are what a forged packet can
#: make us send to someone else.
NOTIFY_RATE = 10.0
NOTIFY_BURST = 20
#: Aggressive Mode cannot delay its Diffie-Hellman work (KE travels in AM1, the
#: answer carries our KE and an authenticating hash), so its answers are rate
#: limited as well.
AGGRESSIVE_ANSWER_RATE = 50.0
AGGRESSIVE_ANSWER_BURST = 100
#: Drops reported as PacketDropped events (and so logged) per second; beyond
#: that they are only counted, so a flood cannot flood the log too.
DROP_EVENT_RATE = 50.0
DROP_EVENT_BURST = 200
#: Octets of MAC in a responder cookie (the first octet names the time bucket).
_MAC_OCTETS = 7


class Drop(enum.StrEnum):
    """Stable names drops are counted under (the event's text may say more)."""

    MALFORMED = "malformed"
    UNKNOWN_GATEWAY = "unknown gateway"
    NO_SA = "no IKE SA for these cookies"
    WRONG_ADDRESS = "wrong source address"
    FORGED_COOKIE = "responder cookie not issued to this address"
    HALF_OPEN_LIMIT_SOURCE = "half-open limit: per address"
    HALF_OPEN_LIMIT_TOTAL = "half-open limit: total"
    FIRST_MESSAGE_TOO_LONG = "first message too long"
    REFUSED = "first message refused"
    NOTIFY_RATE = "notify not sent: rate limit"
    AGGRESSIVE_RATE = "aggressive mode answer: rate limit"
    REPEAT = "repeated message"
    UNEXPECTED = "unexpected message"
    OTHER = "other"


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per action."""

    __slots__ = ("_burst", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated: float | None = None

    def take(self, now: float) -> bool:
        if self._updated is not None and now > self._updated:
            self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        if self._updated is None or now > self._updated:
            self._updated = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class ResponderCookies:
    """Responder cookies that prove, when echoed, that the peer received our MM2.

    cookie = bucket mod 256 (1 octet) || HMAC-SHA256(secret[bucket],
    CKY-I || address || port || offer digest)[:7], where bucket = floor(now /
    period) and each bucket has its own random secret.  Only the current and
    the previous bucket's secrets are kept, so a cookie is good for between one
    and two periods; the leading octet says which secret to check it with.
    The offer digest binds the cookie to the SA payload MM1 carried, which MM3
    does not repeat: the responder finds that offer again by checking the
    cookie against the few its gateway has sent.
    """

    def __init__(self, random_bytes: Callable[[int], bytes], period: float) -> None:
        self._random_bytes = random_bytes
        self._period = period
        self._secrets: dict[int, bytes] = {}

    def issue(self, initiator_cookie: bytes, peer: Address, offer: bytes, now: float) -> bytes:
        bucket = self._bucket(now)
        return self._cookie(bucket, self._secret(bucket), initiator_cookie, peer, offer)

    def check(
        self,
        initiator_cookie: bytes,
        responder_cookie: bytes,
        peer: Address,
        offer: bytes,
        now: float,
    ) -> bool:
        if len(responder_cookie) != 8:
            return False
        current = self._bucket(now)
        for bucket in (current, current - 1):
            if responder_cookie[0] == bucket & 0xFF:
                secret = self._secrets.get(bucket)
                if secret is None:
                    return False
                expected = self._cookie(bucket, secret, initiator_cookie, peer, offer)
                return hmac.compare_digest(expected, responder_cookie)
        return False

    def _bucket(self, now: float) -> int:
        return int(now // self._period)

    def _secret(self, bucket: int) -> bytes:
        secret = self._secrets.get(bucket)
        if secret is None:
            secret = self._random_bytes(32)
            # Keep this bucket and the one before; older cookies stop working.
            self._secrets = {b: s for b, s in self._secrets.items() if b == bucket - 1}
            self._secrets[bucket] = secret
        return secret

    @staticmethod
    def _cookie(
        bucket: int, secret: bytes, initiator_cookie: bytes, peer: Address, offer: bytes
    ) -> bytes:
        host, port = peer
        message = b"/".join((initiator_cookie, host.encode(), port.to_bytes(2, "big"), offer))
        mac = hmac.new(secret, message, hashlib.sha256).digest()
        return bytes([bucket & 0xFF]) + mac[:_MAC_OCTETS]


@dataclass(frozen=True, slots=True)
class MainModeAnswer:
    """An accepted MM1 offer: what MM3 will need, and our MM2 minus its cookies."""

    #: The gateway's policy the offer was accepted under; the SA keeps it even if
    #: a reload replaces the gateway before MM3 arrives.
    policy: Phase1Peer
    #: MM1 after its cookies (the cache key), so a late copy of MM1 is recognised.
    first_tail: bytes
    #: SHA-256 of ``first_tail``, truncated: what a responder cookie binds.
    digest: bytes
    #: Body of the initiator's SA payload: HASH_I and HASH_R cover it, MM3 does not repeat it.
    sai_b: bytes
    agreed: Phase1Proposal
    answer_tail: bytes

    @staticmethod
    def digest_of(first_tail: bytes) -> bytes:
        return hashlib.sha256(first_tail).digest()[:16]


Decision = MainModeAnswer | tuple[Phase1Peer, Refusal]


class OfferCache:
    """Decisions on first messages, per gateway, by the message's octets after the cookies.

    A decision depends on nothing else but the gateway's policy, so a copy of
    an MM1 with other cookies gets the same answer without being decoded
    again, and an MM3 finds the offer it follows among its gateway's last few.
    A decision taken under another policy object (before a reload) is not
    reused for new MM1s.  Bounded per gateway (oldest out), so traffic from
    other addresses cannot evict a gateway's offers, and in total as a safety net.
    """

    def __init__(self, per_gateway: int = OFFERS_PER_GATEWAY, size: int = OFFER_CACHE_SIZE) -> None:
        self._per_gateway = per_gateway
        self._size = size
        self._entries: OrderedDict[tuple[str, bytes], Decision] = OrderedDict()
        self._by_gateway: dict[str, OrderedDict[bytes, MainModeAnswer]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, policy: Phase1Peer, tail: bytes) -> MainModeAnswer | Refusal | None:
        """The decision on this offer under ``policy``: an answer, a refusal, or None."""
        key = (policy.gateway, tail)
        found = self._entries.get(key)
        if found is None:
            return None
        decided_under, decision = (
            (found.policy, found) if isinstance(found, MainModeAnswer) else found
        )
        if decided_under is not policy:
            return None
        self._entries.move_to_end(key)
        return decision

    def put(self, gateway: str, tail: bytes, decision: Decision) -> None:
        self._entries[(gateway, tail)] = decision
        if isinstance(decision, MainModeAnswer):
            answers = self._by_gateway.setdefault(gateway, OrderedDict())
            answers[tail] = decision
            if len(answers) > self._per_gateway:
                oldest, _ = answers.popitem(last=False)
                self._entries.pop((gateway, oldest), None)
        if len(self._entries) > self._size:
            (old_gateway, old_tail), _ = self._entries.popitem(last=False)
            kept = self._by_gateway.get(old_gateway)
            if kept is not None:
                kept.pop(old_tail, None)
                if not kept:
                    del self._by_gateway[old_gateway]

    def answers_for(self, gateway: str) -> list[MainModeAnswer]:
        """The gateway's accepted offers, newest first (at most OFFERS_PER_GATEWAY)."""
        return list(reversed(self._by_gateway.get(gateway, {}).values()))


class HalfOpenSas:
    """Responder SAs that cost DH work and have not authenticated, by source address."""

    def __init__(
        self, per_address: int = HALF_OPEN_PER_ADDRESS, total: int = HALF_OPEN_TOTAL
    ) -> None:
        self.per_address = per_address
        self.total = total
        self._by_host: dict[str, set[IkeSa]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def count_for(self, host: str) -> int:
        return len(self._by_host.get(host, ()))

    def refusal(self, host: str) -> Drop | None:
        """Why one more from ``host`` would be one too many, or None."""
        if self.count_for(host) >= self.per_address:
            return Drop.HALF_OPEN_LIMIT_SOURCE
        if self._count >= self.total:
            return Drop.HALF_OPEN_LIMIT_TOTAL
        return None

    def add(self, sa: IkeSa) -> None:
        held = self._by_host.setdefault(sa.peer[0], set())
        if sa not in held:
            held.add(sa)
            self._count += 1

    def discard(self, sa: IkeSa) -> None:
        """Idempotent: called when the SA is established and again when it goes."""
        held = self._by_host.get(sa.peer[0])
        if held is not None and sa in held:
            held.remove(sa)
            self._count -= 1
            if not held:
                del self._by_host[sa.peer[0]]
