"""What keeps a Phase 1 responder cheap for peers that have not proven anything yet.

Port 848 faces networks where anyone can send anything, from any source
address.  A Main Mode responder therefore spends no Diffie-Hellman work and
keeps only a small, bounded record until the initiator has echoed a responder
cookie that only a host able to receive at its address can know
(docs/hostile-network.md explains the design).  This module holds the parts:

* :class:`ResponderCookies`: the responder cookie is a keyed MAC of the
  initiator cookie, the peer's address and port and a time bucket, so the
  third message (MM3) is checked with one HMAC and no lookup;
* :class:`HalfOpenTable`: what MM1 leaves behind (SAi_b and the selected
  proposal, which MM3 does not repeat), bounded per source address and in
  total, oldest first out;
* :class:`OfferCache`: the decision on an MM1, by its octets after the
  cookies, so a flood of copies with fresh cookies costs a lookup, not a decode;
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
from dataclasses import dataclass, field

from groupvpn.ike.events import Address
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal

#: Half-open Main Mode negotiations (MM2 sent, no valid MM3 yet) kept per source
#: address.  A real gateway has one or two in flight; more is a spoofer or a loop.
HALF_OPEN_PER_ADDRESS = 8
#: Half-open negotiations kept in total, across all sources.  With SAi_b capped
#: at FIRST_MESSAGE_MAX_OCTETS this bounds their memory to a few megabytes.
HALF_OPEN_TOTAL = 1024
#: A first message longer than this is dropped unread: its SA payload would be
#: kept until MM3 arrives.  Real offers are a few hundred octets.
FIRST_MESSAGE_MAX_OCTETS = 4096
#: Unprotected Notifies (answers to messages we refuse) sent per second, and
#: the burst allowed after a quiet period.  They are what a forged packet can
#: make us send to someone else.
NOTIFY_RATE = 10.0
NOTIFY_BURST = 20
#: Aggressive Mode cannot delay its Diffie-Hellman work (KE travels in AM1, the
#: answer carries our KE and an authenticating hash), so its answers are rate
#: limited instead.
AGGRESSIVE_ANSWER_RATE = 50.0
AGGRESSIVE_ANSWER_BURST = 100
#: Drops reported as PacketDropped events (and so logged) per second; beyond
#: that they are only counted, so a flood cannot flood the log too.
DROP_EVENT_RATE = 50.0
DROP_EVENT_BURST = 200
#: Distinct first messages whose decision is remembered.  Real members of one
#: group send a handful of distinct offers; a flood of distinct ones only churns it.
OFFER_CACHE_SIZE = 64
#: Octets of MAC in a responder cookie (the first octet names the time bucket).
_MAC_OCTETS = 7


class Drop(enum.StrEnum):
    """Stable names drops are counted under (the event's text may say more)."""

    MALFORMED = "malformed"
    UNKNOWN_GATEWAY = "unknown gateway"
    NO_SA = "no IKE SA for these cookies"
    WRONG_ADDRESS = "wrong source address"
    FORGED_COOKIE = "responder cookie not issued to this address"
    HALF_OPEN_GONE = "half-open negotiation expired or evicted"
    HALF_OPEN_EVICTED_SOURCE = "half-open evicted: per-address limit"
    HALF_OPEN_EVICTED_TOTAL = "half-open evicted: total limit"
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
    CKY-I || address || port)[:7], where bucket = floor(now / period) and each
    bucket has its own random secret.  Only the current and the previous
    bucket's secrets are kept, so a cookie is good for between one and two
    periods; the leading octet says which secret to check it with, so a check
    is one HMAC whatever the cookie.
    """

    def __init__(self, random_bytes: Callable[[int], bytes], period: float) -> None:
        self._random_bytes = random_bytes
        self._period = period
        self._secrets: dict[int, bytes] = {}

    def issue(self, initiator_cookie: bytes, peer: Address, now: float) -> bytes:
        bucket = self._bucket(now)
        return self._cookie(bucket, self._secret(bucket), initiator_cookie, peer)

    def check(
        self, initiator_cookie: bytes, responder_cookie: bytes, peer: Address, now: float
    ) -> bool:
        if len(responder_cookie) != 8:
            return False
        current = self._bucket(now)
        for bucket in (current, current - 1):
            if responder_cookie[0] == bucket & 0xFF:
                secret = self._secrets.get(bucket)
                if secret is None:
                    return False
                expected = self._cookie(bucket, secret, initiator_cookie, peer)
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
    def _cookie(bucket: int, secret: bytes, initiator_cookie: bytes, peer: Address) -> bytes:
        host, port = peer
        message = initiator_cookie + host.encode() + b"/" + port.to_bytes(2, "big")
        mac = hmac.new(secret, message, hashlib.sha256).digest()
        return bytes([bucket & 0xFF]) + mac[:_MAC_OCTETS]


@dataclass(frozen=True, slots=True)
class MainModeAnswer:
    """An accepted MM1 offer: what MM3 will need and our MM2 minus its cookies."""

    #: Body of the initiator's SA payload: HASH_I and HASH_R cover it, MM3 does not repeat it.
    sai_b: bytes
    agreed: Phase1Proposal
    answer_tail: bytes


@dataclass(eq=False, slots=True)
class HalfOpen:
    """What a Main Mode responder keeps between MM2 and MM3: no keys, no DH.

    The octets it holds are shared with the :class:`OfferCache` entry, so a
    flood of copies of one MM1 costs a few small objects per record.
    """

    peer: Address
    policy: Phase1Peer
    initiator_cookie: bytes
    responder_cookie: bytes
    offer: MainModeAnswer
    #: MM1 after its cookies, to tell a retransmission from a different first message.
    first_tail: bytes = field(repr=False)
    created_at: float
    resends: int = 0

    @property
    def sai_b(self) -> bytes:
        return self.offer.sai_b

    @property
    def agreed(self) -> Phase1Proposal:
        return self.offer.agreed

    @property
    def answer(self) -> bytes:
        """Our MM2, sent again when MM1 is repeated."""
        return self.initiator_cookie + self.responder_cookie + self.offer.answer_tail


class OfferCache:
    """Decisions on first messages, by gateway and the message's octets after the cookies.

    The decision depends on nothing else (the gateway's policy is fixed until
    :meth:`clear`, which a reload calls), so a copy of an MM1 with other
    cookies gets the same answer without being decoded again.
    """

    def __init__(self, size: int = OFFER_CACHE_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, bytes], object] = OrderedDict()

    def get(self, gateway: str, tail: bytes) -> object | None:
        key = (gateway, tail)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, gateway: str, tail: bytes, decision: object) -> None:
        self._entries[(gateway, tail)] = decision
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()


class HalfOpenTable:
    """Half-open negotiations, bounded per source address and in total.

    When a limit is reached the *oldest* entry goes, not the new one: a spoofer
    then has to keep sending faster than a real peer's round trip to push that
    peer out, whereas refusing new entries would let a handful of forged MM1s
    lock an address out for a whole lifetime.  Entries expire ``lifetime``
    after creation; expiry is lazy (on each add and lookup), so no timers.
    """

    def __init__(
        self,
        lifetime: float,
        per_address: int = HALF_OPEN_PER_ADDRESS,
        total: int = HALF_OPEN_TOTAL,
    ) -> None:
        self.lifetime = lifetime
        self.per_address = per_address
        self.total = total
        # Insertion order is creation order: the first entry is the oldest.
        self._by_cookies: OrderedDict[tuple[bytes, bytes], HalfOpen] = OrderedDict()
        self._by_first_message: dict[tuple[bytes, Address], HalfOpen] = {}
        self._by_host: dict[str, OrderedDict[tuple[bytes, bytes], None]] = {}

    def __len__(self) -> int:
        return len(self._by_cookies)

    def count_for(self, host: str) -> int:
        return len(self._by_host.get(host, ()))

    def find(self, initiator_cookie: bytes, responder_cookie: bytes, now: float) -> HalfOpen | None:
        self.expire(now)
        return self._by_cookies.get((initiator_cookie, responder_cookie))

    def find_by_first_message(
        self, initiator_cookie: bytes, peer: Address, now: float
    ) -> HalfOpen | None:
        self.expire(now)
        return self._by_first_message.get((initiator_cookie, peer))

    def add(self, entry: HalfOpen, now: float) -> list[Drop]:
        """Keep ``entry``; return why older entries had to go to make room."""
        self.expire(now)
        evicted: list[Drop] = []
        host_entries = self._by_host.get(entry.peer[0])
        if host_entries is not None and len(host_entries) >= self.per_address:
            self.remove(self._by_cookies[next(iter(host_entries))])
            evicted.append(Drop.HALF_OPEN_EVICTED_SOURCE)
        if len(self._by_cookies) >= self.total:
            self.remove(next(iter(self._by_cookies.values())))
            evicted.append(Drop.HALF_OPEN_EVICTED_TOTAL)
        key = (entry.initiator_cookie, entry.responder_cookie)
        self._by_cookies[key] = entry
        self._by_first_message[(entry.initiator_cookie, entry.peer)] = entry
        self._by_host.setdefault(entry.peer[0], OrderedDict())[key] = None
        return evicted

    def remove(self, entry: HalfOpen) -> None:
        key = (entry.initiator_cookie, entry.responder_cookie)
        if self._by_cookies.get(key) is not entry:
            return
        del self._by_cookies[key]
        first = (entry.initiator_cookie, entry.peer)
        if self._by_first_message.get(first) is entry:
            del self._by_first_message[first]
        host_entries = self._by_host[entry.peer[0]]
        del host_entries[key]
        if not host_entries:
            del self._by_host[entry.peer[0]]

    def expire(self, now: float) -> None:
        while self._by_cookies:
            oldest = next(iter(self._by_cookies.values()))
            if oldest.created_at + self.lifetime > now:
                return
            self.remove(oldest)

    def clear(self) -> None:
        self._by_cookies.clear()
        self._by_first_message.clear()
        self._by_host.clear()
