"""The sans-IO IKEv1 phase 1 endpoint: one local address, many peers, many SAs.

Driven like aioquic's connection::

    endpoint.receive_datagram(data, addr, now)   # or initiate(gateway, now)
    for data, addr in endpoint.datagrams_to_send(): sock.sendto(data, addr)
    deadline = endpoint.get_timer()              # call handle_timer(now) then
    while (event := endpoint.next_event()): ...

It never touches a socket or a clock.  A Main Mode responder answers a
well-formed first message from a configured gateway that offers an acceptable
proposal with a MAC cookie and keeps nothing for that exchange; it creates an
SA and does Diffie-Hellman work only when MM3 echoes that cookie from the same
address (:mod:`groupvpn.ike.guard`, docs/hostile-network.md).
Everything else is a counted :class:`PacketDropped` or a rate-limited
unprotected Notify.
No exception leaves :meth:`receive_datagram` or :meth:`handle_timer`: a bug
becomes an :class:`InternalError` event and the endpoint carries on.
"""

from __future__ import annotations

import secrets
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

from groupvpn.ike import phase1
from groupvpn.ike.events import (
    Address,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaInfo,
    InternalError,
    NotifyReceived,
)
from groupvpn.ike.first_messages import FirstMessages
from groupvpn.ike.guard import (
    Drop,
)
from groupvpn.ike.informational import (
    isakmp_delete,
    isakmp_notify,
    open_protected_informational,
    protected_informational,
)
from groupvpn.ike.phase1 import Env, Failure, Received, Step
from groupvpn.ike.policy import Phase1Peer
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.ike.table import ZERO_COOKIE, SaTable
from groupvpn.ike.timers import DeadlineHeap
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import ExchangeType, NotifyType, ProtocolId, notify_name
from groupvpn.wire.message import IsakmpHeader, decode_message, pull_header
from groupvpn.wire.payloads import DeletePayload, IdPayload, NotifyPayload

_PHASE1_EXCHANGES: dict[int, Mode] = {
    ExchangeType.IDENTITY_PROTECTION: Mode.MAIN,
    ExchangeType.AGGRESSIVE: Mode.AGGRESSIVE,
}

#: What an operator should check first when the peer reports these errors.
_ERROR_HINTS: dict[int, str] = {
    NotifyType.AUTHENTICATION_FAILED: " (pre-shared key mismatch?)",
    NotifyType.INVALID_ID_INFORMATION: " (local-identity/remote-identity mismatch?)",
}


ExchangeHandler = Callable[[IkeSa, IsakmpHeader, bytes, float], None]


class UnknownGateway(KeyError):
    """``initiate`` was asked for a gateway that is not configured."""


class IkeEndpoint(FirstMessages):
    def __init__(
        self,
        local_address: str,
        peers: Iterable[Phase1Peer],
        *,
        peer_port: int = 848,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        retransmit_interval: float = 2.0,
        retransmit_limit: int = 4,
    ) -> None:
        self.local_address = local_address
        self.peer_port = peer_port
        self._env = Env(random_bytes)
        self._retransmit_interval = retransmit_interval
        self._retransmit_limit = retransmit_limit
        # How long a peer may take over one message, retransmissions included: a
        # responder gives up on a negotiation that makes no progress for that long.
        self._message_budget = retransmit_interval * (2 ** (retransmit_limit + 1))
        self._peers_by_name: dict[str, Phase1Peer] = {}
        self._peers_by_address: dict[IPv4Address, Phase1Peer] = {}
        # Hostile-network defences (groupvpn.ike.first_messages, groupvpn.ike.guard).
        # Cookies stay good for as long as an initiator keeps retransmitting MM3.
        self._init_defences(random_bytes, cookie_period=self._message_budget)
        self.set_peers(peers)
        self._table = SaTable()
        #: Each SA's next deadline; every change of one of its timers reschedules it.
        self._timers: DeadlineHeap[IkeSa] = DeadlineHeap()
        #: Exchanges run under an established SA by a protocol above us (GDOI).
        self._exchange_handlers: dict[int, ExchangeHandler] = {}
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[IkeEvent] = deque()

    def set_peers(self, peers: Iterable[Phase1Peer]) -> None:
        """The configured gateways (again, after a reload).

        New negotiations use the new list; SAs already up keep the policy they
        were negotiated under until they end.
        """
        by_name: dict[str, Phase1Peer] = {}
        by_address: dict[IPv4Address, Phase1Peer] = {}
        for peer in peers:
            by_name[peer.gateway] = peer
            for address in peer.addresses:
                by_address.setdefault(address, peer)
        self._peers_by_name, self._peers_by_address = by_name, by_address

    # -- the sans-IO interface ---------------------------------------------------

    def initiate(self, gateway: str, now: float) -> None:
        self._now = now
        peer = self._peers_by_name.get(gateway)
        if peer is None:
            raise UnknownGateway(gateway)
        sa = self._new_sa(
            Role.INITIATOR, Mode(peer.mode), (str(peer.addresses[0]), self.peer_port), peer,
            self._cookie(), ZERO_COOKIE, now,
        )  # fmt: skip
        if sa.mode is Mode.MAIN:
            data = phase1.main_mode_offer(sa)
        else:
            data = phase1.aggressive_mode_offer(sa, self._env)
        self._table.add(sa)
        self._apply(sa, Step(data, expect_reply=True), now, received=None)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self._now = now
        try:
            self._receive(data, addr, now)
        except DecodeError as exc:
            self._drop(addr, f"malformed: {exc}", Drop.MALFORMED)
        except Exception:  # a bug must not stop the daemon: report it and carry on
            self._events.append(InternalError(f"datagram from {addr[0]}", traceback.format_exc()))

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._now = now
        for sa in self._timers.pop_due(now):
            try:
                self._handle_sa_timer(sa, now)
            except Exception:  # as in receive_datagram; the SA is dropped, others go on
                self._events.append(InternalError("timer", traceback.format_exc()))
                self._forget(sa)

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- for protocols that run under an established SA (GDOI) ---------------------

    def handle_exchange(self, exchange_type: int, handler: ExchangeHandler) -> None:
        """Give messages of ``exchange_type`` under an established SA to ``handler``.

        The handler decrypts and verifies them itself (it owns that exchange's
        message ID chain) and answers with :meth:`send`.  It may raise DecodeError
        for a message that does not decode: that becomes a drop, as everywhere.
        """
        self._exchange_handlers[exchange_type] = handler

    def send(self, sa: IkeSa, data: bytes) -> None:
        """Queue a datagram for the peer of ``sa``."""
        self._outbox.append((data, sa.peer))

    def find_sa(self, initiator_cookie: bytes, responder_cookie: bytes) -> IkeSa | None:
        sa = self._table.find(initiator_cookie, responder_cookie)
        return sa if sa is not None and sa.state is SaState.ESTABLISHED else None

    def established_with(self, gateway: str) -> IkeSa | None:
        """Our established SA to a gateway, newest first (a member's way to its server)."""
        candidates = [
            sa for sa in self._table
            if sa.policy.gateway == gateway and sa.state is SaState.ESTABLISHED
        ]  # fmt: skip
        return max(candidates, key=lambda sa: sa.established_at or 0.0, default=None)

    # -- operations for shells ----------------------------------------------------

    def established(self) -> list[IkeSaInfo]:
        return [sa.info() for sa in self._table if sa.state is SaState.ESTABLISHED]

    def delete(self, initiator_cookie: bytes, responder_cookie: bytes, now: float) -> bool:
        sa = self._table.find(initiator_cookie, responder_cookie)
        if sa is None or sa.state is not SaState.ESTABLISHED:
            return False
        self._delete(sa, "cleared by operator")
        return True

    def decryption_key(self, initiator_cookie: bytes, responder_cookie: bytes) -> bytes | None:
        """The SA's encryption key, for tshark's IKEv1 decryption table when debugging.

        Only ``--debug-keys`` uses this; nothing else may let key material out.
        """
        sa = self._table.find(initiator_cookie, responder_cookie)
        return sa.keys.encryption_key if sa is not None and sa.keys is not None else None

    def close(self, now: float) -> None:
        """Delete every established SA (telling the peers) and forget the rest."""
        for sa in list(self._table):
            if sa.state is SaState.ESTABLISHED:
                self._delete(sa, "shutting down")
            else:
                self._forget(sa)

    # -- receiving -----------------------------------------------------------------

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        header = pull_header(data)
        if header.initiator_cookie == ZERO_COOKIE:
            raise DecodeError("initiator cookie is zero", 0, NotifyType.INVALID_COOKIE)
        mode = _PHASE1_EXCHANGES.get(header.exchange_type)
        if mode is not None and header.message_id != 0:
            why = f"phase 1 message with message ID {header.message_id:#010x}"
            self._drop(addr, why, Drop.MALFORMED)
            return
        if mode is not None and header.responder_cookie == ZERO_COOKIE:
            self._receive_first_message(data, header, mode, addr, now)
            return
        sa = self._table.find(header.initiator_cookie, header.responder_cookie)
        if sa is None and mode is Mode.MAIN:
            self._receive_third_message(data, header, addr, now)
        elif sa is None:
            self._drop(addr, Drop.NO_SA, Drop.NO_SA)
        elif sa.peer != addr:
            why = f"message for the SA with {sa.peer[0]} came from elsewhere"
            self._drop(addr, why, Drop.WRONG_ADDRESS)
        elif header.exchange_type == ExchangeType.INFORMATIONAL:
            self._receive_informational(sa, data, header, now)
        elif mode is sa.mode:
            self._receive_phase1(sa, data, header, now)
        elif sa.state is SaState.ESTABLISHED and header.exchange_type in self._exchange_handlers:
            self._exchange_handlers[header.exchange_type](sa, header, data, now)
        else:
            why = f"exchange type {header.exchange_type} not handled for this SA"
            self._drop(addr, why, Drop.UNEXPECTED)

    def _is_repeat(self, sa: IkeSa, data: bytes) -> bool:
        """Answer or ignore a message this negotiation has already accepted."""
        if data not in sa.accepted:
            return False
        if data == sa.last_received and sa.last_sent is not None:
            self._resend_last(sa, "peer repeated its last message")
        else:
            self._drop(sa.peer, "late repeat of a message already handled", Drop.REPEAT)
        return True

    def _receive_phase1(self, sa: IkeSa, data: bytes, header: IsakmpHeader, now: float) -> None:
        if self._is_repeat(sa, data):
            return
        step_function = phase1.STEPS.get((sa.mode, sa.role, sa.state))
        if step_function is None:
            why = f"unexpected {sa.mode.value} mode message ({sa.state.value})"
            self._drop(sa.peer, why, Drop.UNEXPECTED)
            return
        # The first answer to our offer names the responder's cookie; it is bound to
        # the SA only if that answer checks out (a stray header cannot re-key the SA).
        learning_cookie = sa.responder_cookie == ZERO_COOKIE
        if learning_cookie:
            sa.responder_cookie = header.responder_cookie
        try:
            message = self._open(sa, data, header)
        except DecodeError as exc:
            if learning_cookie:
                sa.responder_cookie = ZERO_COOKIE
            self._undecodable(sa, exc, header, now)
            return
        step = step_function(sa, message, self._env)
        if learning_cookie:
            sa.responder_cookie = ZERO_COOKIE
            if step.drop is None:
                self._table.bind_responder_cookie(sa, header.responder_cookie)
        self._apply(sa, step, now, received=data)

    def _undecodable(self, sa: IkeSa, exc: DecodeError, header: IsakmpHeader, now: float) -> None:
        if sa.keys is not None and header.encrypted and sa.state is not SaState.ESTABLISHED:
            # Garbage after decryption almost always means the two sides derived
            # different keys, i.e. the pre-shared keys differ.  Forging this needs
            # both cookies, which only the peer and the path between us ever see.
            reason = f"cannot decrypt peer's message (pre-shared key mismatch?): {exc.reason}"
            self._fail(sa, Failure(reason, NotifyType.AUTHENTICATION_FAILED))
        else:
            self._drop(sa.peer, f"malformed: {exc}", Drop.MALFORMED)

    def _open(self, sa: IkeSa, data: bytes, header: IsakmpHeader) -> Received:
        if header.encrypted:
            chain = sa.decrypt(data, header)
            return Received(chain.payloads, chain.raw, True)
        message = decode_message(data)
        return Received(message.payloads, message.raw_payloads, False)

    def _receive_informational(
        self, sa: IkeSa, data: bytes, header: IsakmpHeader, now: float
    ) -> None:
        if not header.encrypted:
            self._receive_unprotected_notify(sa, data)
            return
        if sa.keys is None:
            self._drop(sa.peer, "encrypted Informational before keys exist", Drop.UNEXPECTED)
            return
        try:
            payloads = open_protected_informational(sa, data, header).payloads
        except DecodeError as exc:
            if sa.state is not SaState.ESTABLISHED:
                # During MM5/MM6 the peer reports errors under its own keys; if we
                # cannot read them, the keys differ: the pre-shared keys do not match.
                why = f"cannot decrypt the peer's Informational (pre-shared key mismatch?): {exc}"
                self._fail(sa, Failure(why))
            else:
                self._drop(sa.peer, f"Informational rejected: {exc}", Drop.MALFORMED)
            return
        for payload in payloads:
            if isinstance(payload, DeletePayload) and _deletes_isakmp_sa(payload, sa):
                if sa.state is SaState.ESTABLISHED:
                    self._forget(sa)
                    self._events.append(IkeSaDeleted(sa.info(), "deleted by peer", True))
                else:
                    self._fail(sa, Failure("peer deleted the negotiation"))
                return
            if isinstance(payload, NotifyPayload):
                self._events.append(
                    NotifyReceived(sa.peer, payload.notify_type, True, payload.data)
                )
                if payload.notify_type == NotifyType.R_U_THERE and sa.state is SaState.ESTABLISHED:
                    self._send_informational(
                        sa, isakmp_notify(sa, NotifyType.R_U_THERE_ACK, payload.data)
                    )
                elif payload.is_error and sa.state is not SaState.ESTABLISHED:
                    self._fail(sa, Failure(_peer_error(payload.notify_type)))
                    return

    def _receive_unprotected_notify(self, sa: IkeSa, data: bytes) -> None:
        # Honoured only until the SA is established: before that, a cleartext error
        # (NO-PROPOSAL-CHOSEN, AUTHENTICATION-FAILED) is all a peer without our keys can send.
        if sa.state is SaState.ESTABLISHED:
            why = "unprotected Informational for an established SA"
            self._drop(sa.peer, why, Drop.UNEXPECTED)
            return
        message = decode_message(data)
        notifies = [p for p in message.payloads if isinstance(p, NotifyPayload)]
        if len(notifies) != len(message.payloads) or not notifies:
            why = "unprotected Informational may only carry Notify payloads"
            self._drop(sa.peer, why, Drop.MALFORMED)
            return
        for notify in notifies:
            self._events.append(NotifyReceived(sa.peer, notify.notify_type, False))
        errors = [n for n in notifies if n.is_error]
        if errors:
            self._fail(sa, Failure(_peer_error(errors[0].notify_type)))

    # -- acting on steps -------------------------------------------------------------

    def _apply(self, sa: IkeSa, step: Step, now: float, received: bytes | None) -> None:
        if step.drop is not None:
            self._drop(sa.peer, step.drop, Drop.UNEXPECTED)
            return
        if step.failure is not None:
            self._fail(sa, step.failure)
            return
        if received is not None:
            sa.last_received = received
            sa.accepted.append(received)
            if sa.role is Role.RESPONDER:
                sa.give_up_at = now + self._message_budget
        if step.send is not None:
            sa.last_sent = step.send
            sa.retransmits = 0
            sa.retransmit_at = now + self._retransmit_interval if step.expect_reply else None
            self._outbox.append((step.send, sa.peer))
        if step.established:
            assert sa.agreed is not None
            self._half_open.discard(sa)
            sa.state = SaState.ESTABLISHED
            sa.established_at = now
            sa.expires_at = now + sa.agreed.lifetime_seconds
            sa.give_up_at = None
            if step.send is None:
                sa.last_sent = None  # nothing of ours left to repeat (MM6 arrived)
            if not step.expect_reply:
                sa.retransmit_at = None
            self._events.append(IkeSaEstablished(sa.info()))
        self._reschedule(sa)

    def _handle_sa_timer(self, sa: IkeSa, now: float) -> None:
        if sa.expires_at is not None and sa.expires_at <= now:
            self._delete(sa, "lifetime expired")
        elif sa.give_up_at is not None and sa.give_up_at <= now:
            self._fail(sa, Failure(f"negotiation timed out ({sa.state.value})"))
        elif sa.retransmit_at is not None and sa.retransmit_at <= now:
            self._retransmit(sa, now)
        self._reschedule(sa)

    def _reschedule(self, sa: IkeSa) -> None:
        """Call after changing any of the SA's timers (see IkeSa.next_timer)."""
        if sa.state is not SaState.DEAD:
            self._timers.schedule(sa, sa.next_timer())

    def _retransmit(self, sa: IkeSa, now: float) -> None:
        if sa.retransmits >= self._retransmit_limit or sa.last_sent is None:
            if sa.state is SaState.ESTABLISHED:
                sa.retransmit_at = None  # our last message was a courtesy; the SA stands
                return
            reason = f"no answer from peer after {sa.retransmits} retransmissions"
            self._fail(sa, Failure(f"{reason} ({sa.state.value})"))
            return
        sa.retransmits += 1
        # Exponential backoff: interval, 2x, 4x, ... between copies.
        sa.retransmit_at = now + self._retransmit_interval * (2**sa.retransmits)
        self._outbox.append((sa.last_sent, sa.peer))

    def _resend_last(self, sa: IkeSa, why: str) -> None:
        """Answer a repeated message with our last one.

        This shares the retransmission count with our own timer, so however the
        copies are triggered, one message goes out at most 1 + limit times.
        """
        if sa.last_sent is None or sa.retransmits >= self._retransmit_limit:
            self._drop(sa.peer, f"{why}; not answering again", Drop.REPEAT)
            return
        sa.retransmits += 1
        self._outbox.append((sa.last_sent, sa.peer))

    def _fail(self, sa: IkeSa, failure: Failure) -> None:
        if failure.notify is not None:
            self._send_unprotected_notify(
                sa.initiator_cookie, sa.responder_cookie, failure.notify, sa.peer
            )
        self._forget(sa)
        self._events.append(
            IkeSaFailed(sa.peer, sa.policy.gateway, sa.role.value, sa.mode.value,
                        failure.reason, failure.notify)
        )  # fmt: skip

    def _delete(self, sa: IkeSa, reason: str) -> None:
        self._send_informational(sa, isakmp_delete(sa))
        self._forget(sa)
        self._events.append(IkeSaDeleted(sa.info(), reason, False))

    def _send_informational(self, sa: IkeSa, payload: NotifyPayload | DeletePayload) -> None:
        message_id = int.from_bytes(self._env.random_bytes(4), "big") or 1
        self._outbox.append((protected_informational(sa, payload, message_id), sa.peer))

    def _forget(self, sa: IkeSa) -> None:
        self._half_open.discard(sa)
        sa.state = SaState.DEAD
        self._table.remove(sa)
        self._timers.cancel(sa)

    # -- small helpers ------------------------------------------------------------------

    def _new_sa(
        self, role: Role, mode: Mode, peer_address: Address, peer: Phase1Peer,
        initiator_cookie: bytes, responder_cookie: bytes, now: float,
    ) -> IkeSa:  # fmt: skip
        return IkeSa(
            role=role, mode=mode, peer=peer_address, policy=peer,
            initiator_cookie=initiator_cookie, responder_cookie=responder_cookie,
            state=SaState.NEW, local_id=self._local_id(peer), created_at=now,
        )  # fmt: skip

    def _cookie(self) -> bytes:
        while (cookie := self._env.random_bytes(8)) == ZERO_COOKIE:
            pass
        return cookie

    def _local_id(self, peer: Phase1Peer) -> IdPayload:
        return peer.local_identity or IdPayload.ipv4(self.local_address)


def _peer_error(notify_type: int) -> str:
    return f"peer sent {notify_name(notify_type)}{_ERROR_HINTS.get(notify_type, '')}"


def _deletes_isakmp_sa(delete: DeletePayload, sa: IkeSa) -> bool:
    return delete.protocol_id == ProtocolId.ISAKMP and (
        sa.initiator_cookie + sa.responder_cookie in delete.spis
    )
