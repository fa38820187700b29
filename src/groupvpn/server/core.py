"""The key server core: IKE phase 1 responder plus GROUPKEY-PULL, sans-IO.

It sits on an :class:`IkeEndpoint` (which keeps answering phase 1 and
Informational exchanges) and takes every GROUPKEY-PULL message under an
established SA: a :class:`PullResponder` per exchange, admission and member
records from :class:`GroupKeyServer`.  A refused or broken registration gets a
protected Notify with a reason, an event, and leaves no record behind.

With a :class:`KeyServerRekeying` (shared by the cores of every local address)
it also carries the rekeys: their timer joins the core's, unicast copies leave
from this core's address, registrations are reported to it, and rekey ACKs are
taken off the socket before the IKE endpoint sees them.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from groupvpn.gdoi.pull import NONCE_LENGTH, PullError, PullResponder
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import Address, IkeEvent
from groupvpn.ike.informational import isakmp_notify, protected_informational
from groupvpn.ike.sa import IkeSa
from groupvpn.server.groups import GroupKeyServer, MemberRecord
from groupvpn.server.rekey_events import RekeyEvent
from groupvpn.server.rekeying import KeyServerRekeying, is_rekey_ack
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import ExchangeType
from groupvpn.wire.message import IsakmpHeader

#: Pull exchanges in progress at once; the oldest is forgotten beyond this.  A
#: member that loses its slot simply retransmits and starts over.
MAX_PULLS_IN_PROGRESS = 4096
#: A pull not finished after this long is forgotten.
PULL_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class MemberRegistered:
    member: MemberRecord


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    peer: Address
    gateway: str
    reason: str
    notify: int | None


@dataclass(frozen=True, slots=True)
class RegistrationDropped:
    """A GROUPKEY-PULL message that changed nothing (undecodable, stray, repeat)."""

    peer: Address
    reason: str


ServerEvent = MemberRegistered | RegistrationRefused | RegistrationDropped | RekeyEvent


class KeyServerCore:
    def __init__(
        self,
        ike: IkeEndpoint,
        groups: GroupKeyServer,
        *,
        rekeying: KeyServerRekeying | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self.ike = ike
        self.groups = groups
        self.rekeying = rekeying
        self._random_bytes = random_bytes
        self._pulls: OrderedDict[tuple[bytes, bytes, int], tuple[PullResponder, float]] = (
            OrderedDict()
        )
        self._events: deque[ServerEvent] = deque()
        ike.handle_exchange(ExchangeType.GROUPKEY_PULL, self._on_pull)

    # -- the sans-IO interface, the IKE endpoint's plus ours ---------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        if self.rekeying is not None and is_rekey_ack(data):
            self.rekeying.receive_ack(data, addr, now)
            return
        self.ike.receive_datagram(data, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        datagrams = self.ike.datagrams_to_send()
        if self.rekeying is not None:
            datagrams += self.rekeying.datagrams_from(self.ike.local_address)
        return datagrams

    def get_timer(self) -> float | None:
        rekeys = self.rekeying.next_deadline() if self.rekeying is not None else None
        times = [
            t for t in (self.ike.get_timer(), self._next_pull_expiry(), rekeys) if t is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self.ike.handle_timer(now)
        if self.rekeying is not None:
            self.rekeying.handle_timer(now)
        # A pull stays after it finished so a repeated message 3 gets message 4
        # again; one that stalled or finished long ago is forgotten.
        for key, (_, started) in list(self._pulls.items()):
            if started + PULL_TIMEOUT <= now:
                del self._pulls[key]

    def next_event(self) -> ServerEvent | IkeEvent | None:
        if self._events:
            return self._events.popleft()
        if self.rekeying is not None and (event := self.rekeying.next_event()) is not None:
            return event
        return self.ike.next_event()

    def _next_pull_expiry(self) -> float | None:
        # The OrderedDict keeps pulls in start order, so the first expires first.
        for _, started in self._pulls.values():
            return started + PULL_TIMEOUT
        return None

    def _on_pull(self, sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
        key = (sa.initiator_cookie, sa.responder_cookie, header.message_id)
        entry = self._pulls.get(key)
        if entry is None:
            responder = PullResponder(
                sa,
                message_id=header.message_id,
                nonce=self._random_bytes(NONCE_LENGTH),
                dialect=self.groups.dialect,
                admit=lambda group_id, ike_sa: self.groups.admit(
                    group_id, ike_sa, now, self.ike.local_address
                ),
                grant_sender_ids=self.groups.grant_sender_ids,
            )
        else:
            responder = entry[0]
        try:
            progress = responder.receive(header, data)
        except PullError as refusal:
            self._pulls.pop(key, None)
            if refusal.notify is not None:
                # The refused exchange's message ID as Notification Data tells a member
                # with several registrations in flight which one this is.
                notify = isakmp_notify(sa, refusal.notify, header.message_id.to_bytes(4, "big"))
                message_id = int.from_bytes(self._random_bytes(4), "big") or 1
                self.ike.send(sa, protected_informational(sa, notify, message_id))
            self._events.append(
                RegistrationRefused(sa.peer, sa.policy.gateway, refusal.reason, refusal.notify)
            )
            return
        except DecodeError as exc:
            self._events.append(RegistrationDropped(sa.peer, f"GROUPKEY-PULL: {exc}"))
            return
        if entry is None:
            self._pulls[key] = (responder, now)
            while len(self._pulls) > MAX_PULLS_IN_PROGRESS:
                self._pulls.popitem(last=False)
        if progress.send is not None:
            self.ike.send(sa, progress.send)
        if progress.admitted is not None and responder.group_id is not None:
            sender_ids = progress.admitted.sender_ids
            record = self.groups.commit(
                responder.group_id, sa, now, sender_ids, self.ike.local_address
            )
            self._events.append(MemberRegistered(record))
            if self.rekeying is not None:
                sequence = progress.admitted.sequence
                local = self.ike.local_address
                self.rekeying.member_registered(record, sa.peer, local, sequence, now)
