"""Where the endpoint finds an IKE SA for an arriving message.

Three indexes, each for one question:

* by cookie pair: every SA whose two cookies are known;
* by our initiator cookie: SAs we started whose responder cookie we have not
  learnt yet (it arrives with MM2/AM2 and is bound only when that message checks out);
* by (initiator cookie, peer address): every SA we answer, so that a repeated
  first message, even one arriving after the SA is up, is recognised and not
  taken for a new negotiation.

Lookups never change anything: a spoofed header cannot re-key an index.
"""

from __future__ import annotations

from collections.abc import Iterator

from groupvpn.ike.events import Address
from groupvpn.ike.sa import IkeSa, Role

ZERO_COOKIE = bytes(8)


class SaTable:
    def __init__(self) -> None:
        self._by_cookies: dict[tuple[bytes, bytes], IkeSa] = {}
        self._awaiting_responder_cookie: dict[bytes, IkeSa] = {}
        self._by_first_message: dict[tuple[bytes, Address], IkeSa] = {}
        self._our_cookies: set[bytes] = set()

    def add(self, sa: IkeSa) -> None:
        if sa.role is Role.INITIATOR:
            self._awaiting_responder_cookie[sa.initiator_cookie] = sa
            self._our_cookies.add(sa.initiator_cookie)
        else:
            self._by_cookies[sa.cookies] = sa
            self._by_first_message[(sa.initiator_cookie, sa.peer)] = sa

    def find(self, initiator_cookie: bytes, responder_cookie: bytes) -> IkeSa | None:
        sa = self._by_cookies.get((initiator_cookie, responder_cookie))
        if sa is None:
            # Our own negotiation, answered for the first time (or refused with a Notify).
            sa = self._awaiting_responder_cookie.get(initiator_cookie)
        return sa

    def find_by_first_message(self, initiator_cookie: bytes, peer: Address) -> IkeSa | None:
        return self._by_first_message.get((initiator_cookie, peer))

    def is_ours(self, initiator_cookie: bytes) -> bool:
        """True if we chose this initiator cookie (a peer echoing it is not a new SA)."""
        return initiator_cookie in self._our_cookies

    def bind_responder_cookie(self, sa: IkeSa, responder_cookie: bytes) -> None:
        """The responder's cookie of an SA we initiated is now known and verified."""
        if self._awaiting_responder_cookie.get(sa.initiator_cookie) is sa:
            del self._awaiting_responder_cookie[sa.initiator_cookie]
        sa.responder_cookie = responder_cookie
        self._by_cookies[sa.cookies] = sa

    def remove(self, sa: IkeSa) -> None:
        # Remove only entries that point at this SA: another SA may have reused a key.
        if self._by_cookies.get(sa.cookies) is sa:
            del self._by_cookies[sa.cookies]
        if self._awaiting_responder_cookie.get(sa.initiator_cookie) is sa:
            del self._awaiting_responder_cookie[sa.initiator_cookie]
        first = (sa.initiator_cookie, sa.peer)
        if self._by_first_message.get(first) is sa:
            del self._by_first_message[first]
        if sa.role is Role.INITIATOR:
            self._our_cookies.discard(sa.initiator_cookie)

    def __iter__(self) -> Iterator[IkeSa]:
        yield from self._by_cookies.values()
        yield from self._awaiting_responder_cookie.values()

    def __len__(self) -> int:
        return len(self._by_cookies) + len(self._awaiting_responder_cookie)
