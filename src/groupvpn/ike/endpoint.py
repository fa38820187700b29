"""The sans-IO IKEv1 phase 1 endpoint: one local address, many peers, many SAs.

Driven like aioquic's connection::

    endpoint.receive_datagram(data, addr, now)   # or initiate(gateway, now)
    for data, addr in endpoint.datagrams_to_send(): sock.sendto(data, addr)
    deadline = endpoint.get_timer()              # call handle_timer(now) then
    while (event := endpoint.next_event()): ...

It never touches a socket or a clock.  A responder creates state only for a
well-formed first message from a configured gateway that offers an acceptable
proposal; everything else is a :class:`PacketDropped` or an unprotected Notify,
and no exception leaves :meth:`receive_datagram`.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, ip_address

from groupvpn.ike import phase1
from groupvpn.ike.events import (
    Address,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    IkeSaInfo,
    NotifyReceived,
    PacketDropped,
)
from groupvpn.ike.informational import (
    isakmp_delete,
    isakmp_notify,
    open_protected_informational,
    protected_informational,
    unprotected_notify,
)
from groupvpn.ike.phase1 import Env, Failure, Received, Step
from groupvpn.ike.policy import Phase1Peer, sa_answer, select_proposal
from groupvpn.ike.rules import (
    AGGRESSIVE_MODE_RULES,
    MAIN_MODE_RULES,
    MessageRule,
    first_of,
    violation,
)
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import (
    Doi,
    ExchangeType,
    NotifyType,
    ProtocolId,
    notify_name,
)
from groupvpn.wire.message import IsakmpHeader, decode_message, pull_header
from groupvpn.wire.payloads import DeletePayload, IdPayload, NotifyPayload, SaPayload

_ZERO_COOKIE = bytes(8)
_PHASE1_EXCHANGES: dict[int, Mode] = {
    ExchangeType.IDENTITY_PROTECTION: Mode.MAIN,
    ExchangeType.AGGRESSIVE: Mode.AGGRESSIVE,
}


class UnknownGateway(KeyError):
    """``initiate`` was asked for a gateway that is not configured."""


class IkeEndpoint:
    def __init__(
        self,
        local_address: str,
        peers: Iterable[Phase1Peer],
        *,
        peer_port: int = 848,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        retransmit_interval: float = 2.0,
        retransmit_limit: int = 4,
        negotiation_timeout: float = 40.0,
    ) -> None:
        self.local_address = local_address
        self.peer_port = peer_port
        self._env = Env(random_bytes)
        self._retransmit_interval = retransmit_interval
        self._retransmit_limit = retransmit_limit
        self._negotiation_timeout = negotiation_timeout
        self._peers_by_name: dict[str, Phase1Peer] = {}
        self._peers_by_address: dict[IPv4Address, Phase1Peer] = {}
        for peer in peers:
            self._peers_by_name[peer.gateway] = peer
            for address in peer.addresses:
                self._peers_by_address.setdefault(address, peer)
        self._sas: dict[tuple[bytes, bytes], IkeSa] = {}
        #: SAs we initiated whose responder cookie we do not know yet.
        self._initiated: dict[bytes, IkeSa] = {}
        #: Responder SAs by (initiator cookie, peer), to recognise a repeated first message.
        self._half_open: dict[tuple[bytes, Address], IkeSa] = {}
        self._outbox: list[tuple[bytes, Address]] = []
        self._events: deque[IkeEvent] = deque()

    # -- the sans-IO interface ---------------------------------------------------

    def initiate(self, gateway: str, now: float) -> None:
        peer = self._peers_by_name.get(gateway)
        if peer is None:
            raise UnknownGateway(gateway)
        address = (str(peer.addresses[0]), self.peer_port)
        mode = Mode(peer.mode)
        sa = IkeSa(
            role=Role.INITIATOR,
            mode=mode,
            peer=address,
            policy=peer,
            initiator_cookie=self._cookie(),
            responder_cookie=_ZERO_COOKIE,
            state=SaState.MM_SA_SENT,
            local_id=self._local_id(peer),
            created_at=now,
        )
        if mode is Mode.MAIN:
            data = phase1.main_mode_offer(sa)
        else:
            data = phase1.aggressive_mode_offer(sa, self._env)
        self._initiated[sa.initiator_cookie] = sa
        self._apply(sa, Step(data, expect_reply=True), now, received=None)

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        try:
            self._receive(data, addr, now)
        except DecodeError as exc:
            self._drop(addr, f"malformed: {exc}")
        except Exception as exc:  # a bug must not stop the daemon: report it as a drop
            self._drop(addr, f"internal error: {type(exc).__name__}: {exc}")

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        times = [t for sa in self._all_sas() if (t := sa.next_timer()) is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for sa in list(self._all_sas()):
            if sa.expires_at is not None and sa.expires_at <= now:
                self._delete(sa, now, "lifetime expired")
            elif sa.give_up_at is not None and sa.give_up_at <= now:
                self._fail(sa, Failure(f"negotiation timed out ({sa.state.value})"), now)
            elif sa.retransmit_at is not None and sa.retransmit_at <= now:
                self._retransmit(sa, now)

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- operations for shells ----------------------------------------------------

    def established(self) -> list[IkeSaInfo]:
        return [sa.info() for sa in self._sas.values() if sa.state is SaState.ESTABLISHED]

    def delete(self, initiator_cookie: bytes, responder_cookie: bytes, now: float) -> bool:
        sa = self._sas.get((initiator_cookie, responder_cookie))
        if sa is None or sa.state is not SaState.ESTABLISHED:
            return False
        self._delete(sa, now, "cleared by operator")
        return True

    def decryption_key(self, initiator_cookie: bytes, responder_cookie: bytes) -> bytes | None:
        """The SA's encryption key, for tshark's IKEv1 decryption table when debugging.

        Only ``--debug-keys`` uses this; nothing else may let key material out.
        """
        sa = self._sas.get((initiator_cookie, responder_cookie))
        return sa.keys.encryption_key if sa is not None and sa.keys is not None else None

    def close(self, now: float) -> None:
        """Delete every established SA (telling the peers) and forget the rest."""
        for sa in list(self._all_sas()):
            if sa.state is SaState.ESTABLISHED:
                self._delete(sa, now, "shutting down")
            else:
                self._forget(sa)

    # -- receiving -----------------------------------------------------------------

    def _receive(self, data: bytes, addr: Address, now: float) -> None:
        header = pull_header(data)
        if header.initiator_cookie == _ZERO_COOKIE:
            raise DecodeError("initiator cookie is zero", 0, NotifyType.INVALID_COOKIE)
        mode = _PHASE1_EXCHANGES.get(header.exchange_type)
        if mode is not None and header.responder_cookie == _ZERO_COOKIE:
            self._receive_first_message(data, header, mode, addr, now)
            return
        sa = self._find(header, addr)
        if sa is None:
            self._drop(addr, "no IKE SA for these cookies")
            return
        if header.exchange_type == ExchangeType.INFORMATIONAL:
            self._receive_informational(sa, data, header, now)
        elif mode is not None and mode is sa.mode:
            self._receive_phase1(sa, data, header, now)
        else:
            self._drop(addr, f"exchange type {header.exchange_type} not handled for this SA")

    def _find(self, header: IsakmpHeader, addr: Address) -> IkeSa | None:
        sa = self._sas.get((header.initiator_cookie, header.responder_cookie))
        if sa is None:
            pending = self._initiated.get(header.initiator_cookie)
            if pending is not None and header.exchange_type == ExchangeType.INFORMATIONAL:
                sa = pending  # the responder refused our first message
            elif pending is not None and header.responder_cookie != _ZERO_COOKIE:
                del self._initiated[header.initiator_cookie]
                pending.responder_cookie = header.responder_cookie
                self._sas[pending.cookies] = pending
                sa = pending
        if sa is not None and sa.peer != addr:
            self._drop(addr, f"message for the SA with {sa.peer[0]} came from elsewhere")
            return None
        return sa

    def _receive_phase1(self, sa: IkeSa, data: bytes, header: IsakmpHeader, now: float) -> None:
        if data == sa.last_received:
            self._resend_last(sa, now, "peer repeated its last message")
            return
        step_function = phase1.STEPS.get((sa.mode, sa.role, sa.state))
        if step_function is None:
            self._drop(
                sa.peer, f"unexpected {sa.mode.value} mode message in state {sa.state.value}"
            )
            return
        try:
            message = self._open(sa, data, header)
        except DecodeError as exc:
            if sa.keys is not None and header.encrypted and sa.state is not SaState.ESTABLISHED:
                # Garbage after decryption almost always means the two sides derived
                # different keys, i.e. the pre-shared keys differ.
                reason = f"cannot decrypt peer's message (pre-shared key mismatch?): {exc.reason}"
                self._fail(sa, Failure(reason, NotifyType.AUTHENTICATION_FAILED), now)
            else:
                self._drop(sa.peer, f"malformed: {exc}")
            return
        self._apply(sa, step_function(sa, message, self._env), now, received=data)

    def _open(self, sa: IkeSa, data: bytes, header: IsakmpHeader) -> Received:
        if header.encrypted:
            chain = sa.decrypt(data, header)
            return Received(chain.payloads, chain.raw, True)
        message = decode_message(data)
        return Received(message.payloads, message.raw_payloads, False)

    def _receive_first_message(
        self, data: bytes, header: IsakmpHeader, mode: Mode, addr: Address, now: float
    ) -> None:
        existing = self._half_open.get((header.initiator_cookie, addr))
        if existing is not None:
            if data == existing.last_received:
                self._resend_last(existing, now, "peer repeated its first message")
            else:
                self._drop(addr, "different first message for a negotiation in progress")
            return
        if header.initiator_cookie in self._initiated:
            self._drop(addr, "first message carries one of our own initiator cookies")
            return
        peer = self._peers_by_address.get(_ipv4(addr[0]))
        if peer is None:
            self._drop(addr, f"no IKE gateway configured for {addr[0]}")
            return
        message = decode_message(data)
        received = Received(message.payloads, message.raw_payloads, header.encrypted)
        rule = (MAIN_MODE_RULES if mode is Mode.MAIN else AGGRESSIVE_MODE_RULES)[0]
        refusal = self._refuse_first(peer, mode, rule, received)
        if refusal is not None:
            self._refuse(header, addr, peer, mode, refusal)
            return
        offer = first_of(received.payloads, SaPayload)
        selection = select_proposal(offer, peer.proposals)
        if selection is None:
            configured = ", ".join(p.describe() for p in peer.proposals)
            reason = f"no acceptable proposal (we accept {configured})"
            self._refuse(header, addr, peer, mode, Failure(reason, NotifyType.NO_PROPOSAL_CHOSEN))
            return
        sa = IkeSa(
            role=Role.RESPONDER,
            mode=mode,
            peer=addr,
            policy=peer,
            initiator_cookie=header.initiator_cookie,
            responder_cookie=self._cookie(),
            state=SaState.MM_SA_ANSWERED,
            local_id=self._local_id(peer),
            created_at=now,
            sai_b=received.raw[received.payloads.index(offer)][4:],
            agreed=selection.agreed,
            give_up_at=now + self._negotiation_timeout,
        )
        self._sas[sa.cookies] = sa
        self._half_open[(sa.initiator_cookie, addr)] = sa
        answer = sa_answer(offer, selection)
        if mode is Mode.MAIN:
            step = Step(phase1.main_mode_answer(sa, answer))
        else:
            step = phase1.aggressive_mode_answer(sa, received, self._env, answer)
        self._apply(sa, step, now, received=data)

    def _refuse_first(
        self, peer: Phase1Peer, mode: Mode, rule: MessageRule, received: Received
    ) -> Failure | None:
        if mode.value != peer.mode:
            return Failure(
                f"peer uses {mode.value} mode, gateway {peer.gateway} is configured for "
                f"{peer.mode} mode",
                NotifyType.INVALID_EXCHANGE_TYPE,
            )
        if problem := violation(rule, received.payloads, received.encrypted):
            return Failure(problem, NotifyType.PAYLOAD_MALFORMED)
        offer = first_of(received.payloads, SaPayload)
        if offer.doi not in (Doi.IPSEC, Doi.GDOI):
            return Failure(f"SA DOI {offer.doi} not supported", NotifyType.DOI_NOT_SUPPORTED)
        if offer.situation not in (0, 1):  # none (GDOI) or SIT_IDENTITY_ONLY (IPsec DOI)
            return Failure(
                f"SA situation {offer.situation} not supported", NotifyType.SITUATION_NOT_SUPPORTED
            )
        return None

    def _refuse(
        self, header: IsakmpHeader, addr: Address, peer: Phase1Peer, mode: Mode, failure: Failure
    ) -> None:
        """Answer a first message we will not take, keeping no state for it."""
        if failure.notify is not None:
            notify = unprotected_notify(header.initiator_cookie, _ZERO_COOKIE, failure.notify)
            self._outbox.append((notify, addr))
        self._events.append(
            IkeSaFailed(
                addr, peer.gateway, Role.RESPONDER.value, mode.value, failure.reason, failure.notify
            )
        )

    def _receive_informational(
        self, sa: IkeSa, data: bytes, header: IsakmpHeader, now: float
    ) -> None:
        if not header.encrypted:
            self._receive_unprotected_notify(sa, data, now)
            return
        if sa.keys is None:
            self._drop(sa.peer, "encrypted Informational before keys exist")
            return
        try:
            content = open_protected_informational(sa, data, header)
        except DecodeError as exc:
            if sa.state is not SaState.ESTABLISHED:
                # During MM5/MM6 the peer reports errors under its own keys; if we
                # cannot read them, the keys differ: the pre-shared keys do not match.
                reason = (
                    f"cannot decrypt the peer's Informational (pre-shared key mismatch?): {exc}"
                )
                self._fail(sa, Failure(reason), now)
            else:
                self._drop(sa.peer, f"Informational rejected: {exc}")
            return
        for payload in content.payloads:
            if isinstance(payload, DeletePayload):
                if _deletes_isakmp_sa(payload, sa):
                    was_established = sa.state is SaState.ESTABLISHED
                    self._forget(sa)
                    if was_established:
                        self._events.append(IkeSaDeleted(sa.info(), "deleted by peer", True))
                    else:
                        self._events.append(self._failed_event(sa, "peer deleted the negotiation"))
                    return
            elif isinstance(payload, NotifyPayload):
                self._events.append(NotifyReceived(sa.peer, payload.notify_type, True))
                if payload.notify_type == NotifyType.R_U_THERE and sa.state is SaState.ESTABLISHED:
                    ack = isakmp_notify(sa, NotifyType.R_U_THERE_ACK, payload.data)
                    self._send_informational(sa, ack)
                elif payload.is_error and sa.state is not SaState.ESTABLISHED:
                    reason = _peer_error(payload.notify_type)
                    self._fail(sa, Failure(reason), now)
                    return

    def _receive_unprotected_notify(self, sa: IkeSa, data: bytes, now: float) -> None:
        if sa.state is SaState.ESTABLISHED:
            self._drop(sa.peer, "unprotected Informational for an established SA")
            return
        message = decode_message(data)
        notifies = [p for p in message.payloads if isinstance(p, NotifyPayload)]
        if len(notifies) != len(message.payloads) or not notifies:
            self._drop(sa.peer, "unprotected Informational may only carry Notify payloads")
            return
        for notify in notifies:
            self._events.append(NotifyReceived(sa.peer, notify.notify_type, False))
        errors = [n for n in notifies if n.is_error]
        if errors:
            self._fail(sa, Failure(_peer_error(errors[0].notify_type)), now)

    # -- acting on steps -------------------------------------------------------------

    def _apply(self, sa: IkeSa, step: Step, now: float, received: bytes | None) -> None:
        if step.failure is not None:
            self._fail(sa, step.failure, now)
            return
        if received is not None:
            sa.last_received = received
        if step.send is not None:
            sa.last_sent = step.send
            sa.retransmits = 0
            sa.retransmit_at = now + self._retransmit_interval if step.expect_reply else None
            self._outbox.append((step.send, sa.peer))
        if step.established:
            sa.state = SaState.ESTABLISHED
            sa.established_at = now
            assert sa.agreed is not None
            sa.expires_at = now + sa.agreed.lifetime_seconds
            sa.give_up_at = None
            if not step.expect_reply:
                sa.retransmit_at = None
            self._half_open.pop((sa.initiator_cookie, sa.peer), None)
            self._events.append(IkeSaEstablished(sa.info()))

    def _retransmit(self, sa: IkeSa, now: float) -> None:
        if sa.retransmits >= self._retransmit_limit or sa.last_sent is None:
            reason = (
                f"no answer from peer after {sa.retransmits} retransmissions ({sa.state.value})"
            )
            if sa.state is SaState.ESTABLISHED:
                sa.retransmit_at = None  # our last message was a courtesy; the SA stands
                return
            self._fail(sa, Failure(reason), now)
            return
        sa.retransmits += 1
        # Exponential backoff: interval, 2x, 4x, ... between copies.
        sa.retransmit_at = now + self._retransmit_interval * (2**sa.retransmits)
        self._outbox.append((sa.last_sent, sa.peer))

    def _resend_last(self, sa: IkeSa, now: float, why: str) -> None:
        """Answer a repeated message with our last one, a bounded number of times."""
        if sa.last_sent is None or sa.retransmits >= self._retransmit_limit:
            self._drop(sa.peer, f"{why}; not answering again")
            return
        sa.retransmits += 1
        self._outbox.append((sa.last_sent, sa.peer))

    def _fail(self, sa: IkeSa, failure: Failure, now: float) -> None:
        if failure.notify is not None:
            self._outbox.append(
                (
                    unprotected_notify(sa.initiator_cookie, sa.responder_cookie, failure.notify),
                    sa.peer,
                )
            )
        self._forget(sa)
        self._events.append(self._failed_event(sa, failure.reason, failure.notify))

    def _failed_event(self, sa: IkeSa, reason: str, notify: int | None = None) -> IkeSaFailed:
        return IkeSaFailed(sa.peer, sa.policy.gateway, sa.role.value, sa.mode.value, reason, notify)

    def _delete(self, sa: IkeSa, now: float, reason: str) -> None:
        self._send_informational(sa, isakmp_delete(sa))
        self._forget(sa)
        self._events.append(IkeSaDeleted(sa.info(), reason, False))

    def _send_informational(self, sa: IkeSa, payload: NotifyPayload | DeletePayload) -> None:
        message_id = int.from_bytes(self._env.random_bytes(4), "big") or 1
        self._outbox.append((protected_informational(sa, payload, message_id), sa.peer))

    def _forget(self, sa: IkeSa) -> None:
        sa.state = SaState.DEAD
        self._sas.pop(sa.cookies, None)
        self._initiated.pop(sa.initiator_cookie, None)
        self._half_open.pop((sa.initiator_cookie, sa.peer), None)

    # -- small helpers ------------------------------------------------------------------

    def _all_sas(self) -> Iterable[IkeSa]:
        yield from self._sas.values()
        yield from self._initiated.values()

    def _cookie(self) -> bytes:
        while (cookie := self._env.random_bytes(8)) == _ZERO_COOKIE:
            pass
        return cookie

    def _local_id(self, peer: Phase1Peer) -> IdPayload:
        return peer.local_identity or IdPayload.ipv4(self.local_address)

    def _drop(self, addr: Address, reason: str) -> None:
        self._events.append(PacketDropped(addr, reason))


#: What an operator should check first when the peer reports these errors.
_ERROR_HINTS: dict[int, str] = {
    NotifyType.AUTHENTICATION_FAILED: " (pre-shared key mismatch?)",
    NotifyType.INVALID_ID_INFORMATION: " (local-identity/remote-identity mismatch?)",
}


def _peer_error(notify_type: int) -> str:
    return f"peer sent {notify_name(notify_type)}{_ERROR_HINTS.get(notify_type, '')}"


def _deletes_isakmp_sa(delete: DeletePayload, sa: IkeSa) -> bool:
    return delete.protocol_id == ProtocolId.ISAKMP and (
        sa.initiator_cookie + sa.responder_cookie in delete.spis
    )


def _ipv4(text: str) -> IPv4Address:
    address = ip_address(text)
    if not isinstance(address, IPv4Address):
        return IPv4Address(0)
    return address
