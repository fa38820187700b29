"""Main Mode and Aggressive Mode with pre-shared keys (RFC 2409 §5, §5.4), both roles.

Each step is a function ``(sa, message, env) -> Step``: it checks the message
against its rule (:mod:`groupvpn.ike.rules`), updates the SA and says what to
send.  :data:`STEPS` maps (mode, role, state) to the step that handles the next
message, so the whole state machine can be read in one table.  The steps never
raise for anything a peer sends: every problem becomes a :class:`Failure`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from groupvpn.crypto import keymat
from groupvpn.crypto.dh import DhExchange, DhGroup
from groupvpn.ike.policy import (
    Phase1Peer,
    Phase1Proposal,
    UnacceptableTransform,
    check_answer,
    sa_offer,
)
from groupvpn.ike.rules import (
    AGGRESSIVE_MODE_RULES,
    MAIN_MODE_RULES,
    MessageRule,
    first_of,
    violation,
)
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.wire.constants import ExchangeType, IdType, NotifyType
from groupvpn.wire.message import encode_message
from groupvpn.wire.payloads import (
    HashPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    Payload,
    SaPayload,
)

NONCE_LENGTH = 32


@dataclass(frozen=True, slots=True)
class Received:
    """A message that passed header checks and, if encrypted, decrypted."""

    payloads: tuple[Payload, ...]
    raw: tuple[bytes, ...]
    encrypted: bool


@dataclass(frozen=True, slots=True)
class Failure:
    reason: str
    #: Notify type to send to the peer (unprotected), or None to stay silent.
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class Step:
    send: bytes | None = None
    established: bool = False
    #: True when ``send`` is a request we retransmit until the peer answers.
    expect_reply: bool = False
    failure: Failure | None = None
    #: The message does not belong here (a late repeat, the wrong message): ignore
    #: it and leave the SA exactly as it was.  Steps decide this before changing
    #: anything, so an unauthenticated stray packet cannot end a negotiation.
    drop: str | None = None


class Env:
    """What steps may take from outside: randomness.  Tests substitute their own."""

    def __init__(self, random_bytes: Callable[[int], bytes]) -> None:
        self.random_bytes = random_bytes


def _misplaced(rule: MessageRule, message: Received) -> Step | None:
    """A drop when the message is not the one ``rule`` describes."""
    problem = violation(rule, message.payloads, message.encrypted)
    return Step(drop=problem) if problem else None


# --- shared pieces (the strongSwan "phase1" helper idea, written for us) --------


def expected_remote_id(sa: IkeSa) -> IdPayload:
    return sa.policy.remote_identity or IdPayload.ipv4(sa.peer[0])


def identity_matches(expected: IdPayload, received: IdPayload) -> bool:
    """Compare type and data.  Protocol and port are not compared: peers send 0/0 or
    UDP/500 (RFC 2407 §4.6.2) for the same identity."""
    if expected.id_type != received.id_type:
        return False
    if received.id_type in (IdType.FQDN, IdType.USER_FQDN):
        return expected.data.lower() == received.data.lower()
    return expected.data == received.data


def _check_remote_id(sa: IkeSa, received: IdPayload) -> Failure | None:
    expected = expected_remote_id(sa)
    if not identity_matches(expected, received):
        return Failure(
            f"peer identity {received.describe()} does not match {expected.describe()}",
            NotifyType.INVALID_ID_INFORMATION,
        )
    sa.remote_id = received
    return None


def _agreed(sa: IkeSa) -> Phase1Proposal:
    """The negotiated proposal; every step after the SA exchange has one."""
    if sa.agreed is None:
        raise RuntimeError(f"{sa.state.value}: no proposal agreed yet")
    return sa.agreed


def _start_dh(sa: IkeSa, env: Env, group: DhGroup) -> tuple[KePayload, NoncePayload]:
    sa.dh = DhExchange(group)
    nonce = env.random_bytes(NONCE_LENGTH)
    if sa.role is Role.INITIATOR:
        sa.g_xi, sa.ni_b = sa.dh.public_value, nonce
    else:
        sa.g_xr, sa.nr_b = sa.dh.public_value, nonce
    return KePayload(sa.dh.public_value), NoncePayload(nonce)


def _take_peer_ke(sa: IkeSa, message: Received) -> None:
    """Keep the peer's KE and nonce bodies; the DH value is checked when it is used."""
    ke = first_of(message.payloads, KePayload).data
    nonce = first_of(message.payloads, NoncePayload).data
    if sa.role is Role.INITIATOR:
        sa.g_xr, sa.nr_b = ke, nonce
    else:
        sa.g_xi, sa.ni_b = ke, nonce


def _derive_keys(sa: IkeSa) -> Failure | None:
    """SKEYID and friends from the DH secret; sets the phase 1 IV (RFC 2409 App. B)."""
    assert sa.dh is not None and sa.agreed is not None
    peer_value = sa.g_xr if sa.role is Role.INITIATOR else sa.g_xi
    try:
        g_xy = sa.dh.shared_secret(peer_value)
    except ValueError as exc:
        return Failure(f"bad Diffie-Hellman value: {exc}", NotifyType.INVALID_KEY_INFORMATION)
    sa.keys = keymat.derive_phase1_keys(
        sa.agreed.hash,
        sa.agreed.encryption,
        sa.policy.pre_shared_key,
        sa.ni_b,
        sa.nr_b,
        g_xy,
        sa.initiator_cookie,
        sa.responder_cookie,
    )
    sa.ivs.set_phase1_iv(
        keymat.phase1_initial_iv(sa.agreed.hash, sa.g_xi, sa.g_xr, sa.agreed.encryption.block_size)
    )
    sa.dh = None  # the private exponent is not needed any more
    return None


def _auth_hash(sa: IkeSa, of_initiator: bool, id_body: bytes) -> bytes:
    assert sa.keys is not None and sa.agreed is not None
    formula = keymat.hash_i if of_initiator else keymat.hash_r
    return formula(
        sa.agreed.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.initiator_cookie,
        sa.responder_cookie,
        sa.sai_b,
        id_body,
    )


def _received_body(message: Received, cls: type[Payload]) -> bytes:
    """The body of the first ``cls`` payload exactly as it arrived (hash input)."""
    for payload, raw in zip(message.payloads, message.raw, strict=True):
        if isinstance(payload, cls):
            return raw[4:]
    raise LookupError(cls.__name__)


def _verify_peer_auth(sa: IkeSa, message: Received) -> Failure | None:
    """Check the peer's ID and HASH_I/HASH_R from the same message."""
    peer_id = first_of(message.payloads, IdPayload)
    received_hash = first_of(message.payloads, HashPayload)
    expected = _auth_hash(sa, sa.role is Role.RESPONDER, _received_body(message, IdPayload))
    if not hmac.compare_digest(expected, received_hash.data):
        name = "HASH_I" if sa.role is Role.RESPONDER else "HASH_R"
        return Failure(
            f"{name} does not verify (pre-shared key mismatch?)",
            NotifyType.AUTHENTICATION_FAILED,
        )
    return _check_remote_id(sa, peer_id)


def _own_auth_payloads(sa: IkeSa) -> list[Payload]:
    own_hash = _auth_hash(sa, sa.role is Role.INITIATOR, sa.local_id.encode_body())
    return [sa.local_id, HashPayload(own_hash)]


def _cleartext(sa: IkeSa, exchange: int, payloads: list[Payload]) -> bytes:
    return encode_message(sa.initiator_cookie, sa.responder_cookie, exchange, payloads)


# --- Main Mode ---------------------------------------------------------------------
#  1 I->R  HDR, SA            2 R->I  HDR, SA
#  3 I->R  HDR, KE, Ni        4 R->I  HDR, KE, Nr
#  5 I->R  HDR*, IDii, HASH_I 6 R->I  HDR*, IDir, HASH_R


def main_mode_offer(sa: IkeSa) -> bytes:
    """MM1: remember SAi_b, the input to both authentication hashes."""
    offer = sa_offer(sa.policy)
    sa.sai_b = offer.encode_body()
    sa.state = SaState.MM_SA_SENT
    return _cleartext(sa, ExchangeType.IDENTITY_PROTECTION, [offer])


def mm_initiator_got_sa(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(MAIN_MODE_RULES[1], message):
        return misplaced
    try:
        sa.agreed = check_answer(first_of(message.payloads, SaPayload), sa.policy.proposals)
    except UnacceptableTransform as exc:
        return Step(failure=Failure(str(exc), NotifyType.NO_PROPOSAL_CHOSEN))
    ke, nonce = _start_dh(sa, env, _agreed(sa).dh_group)
    sa.state = SaState.MM_KE_SENT
    return Step(_cleartext(sa, ExchangeType.IDENTITY_PROTECTION, [ke, nonce]), expect_reply=True)


def mm_responder_got_ke(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(MAIN_MODE_RULES[2], message):
        return misplaced
    _take_peer_ke(sa, message)
    ke, nonce = _start_dh(sa, env, _agreed(sa).dh_group)
    if failure := _derive_keys(sa):
        return Step(failure=failure)
    sa.state = SaState.MM_KE_ANSWERED
    return Step(_cleartext(sa, ExchangeType.IDENTITY_PROTECTION, [ke, nonce]))


def mm_initiator_got_ke(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(MAIN_MODE_RULES[3], message):
        return misplaced
    _take_peer_ke(sa, message)
    if failure := _derive_keys(sa):
        return Step(failure=failure)
    sa.state = SaState.MM_AUTH_SENT
    data = sa.encrypt(ExchangeType.IDENTITY_PROTECTION, _own_auth_payloads(sa))
    return Step(data, expect_reply=True)


def mm_responder_got_auth(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(MAIN_MODE_RULES[4], message):
        return misplaced
    if failure := _verify_peer_auth(sa, message):
        return Step(failure=failure)
    sa.ivs.confirm(0)
    data = sa.encrypt(ExchangeType.IDENTITY_PROTECTION, _own_auth_payloads(sa))
    return Step(data, established=True)


def mm_initiator_got_auth(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(MAIN_MODE_RULES[5], message):
        return misplaced
    if failure := _verify_peer_auth(sa, message):
        return Step(failure=failure)
    sa.ivs.confirm(0)
    return Step(established=True)


# --- Aggressive Mode ------------------------------------------------------------
#  1 I->R  HDR, SA, KE, Ni, IDii
#  2 R->I  HDR, SA, KE, Nr, IDir, HASH_R
#  3 I->R  HDR*, HASH_I      (encrypted here; either form accepted)


def aggressive_mode_offer(sa: IkeSa, env: Env) -> bytes:
    offer = sa_offer(sa.policy)
    sa.sai_b = offer.encode_body()
    # Only one DH group can be offered: KE travels in the first message.  The
    # configuration check makes every proposal of a policy share it.
    ke, nonce = _start_dh(sa, env, sa.policy.proposals[0].dh_group)
    sa.state = SaState.AM_OFFER_SENT
    return _cleartext(sa, ExchangeType.AGGRESSIVE, [offer, ke, nonce, sa.local_id])


def am_initiator_got_answer(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(AGGRESSIVE_MODE_RULES[1], message):
        return misplaced
    try:
        sa.agreed = check_answer(first_of(message.payloads, SaPayload), sa.policy.proposals)
    except UnacceptableTransform as exc:
        return Step(failure=Failure(str(exc), NotifyType.NO_PROPOSAL_CHOSEN))
    if sa.dh is None or sa.agreed.dh_group != sa.dh.group:
        return Step(failure=Failure("responder chose another DH group than our KE"))
    _take_peer_ke(sa, message)
    if failure := _derive_keys(sa):
        return Step(failure=failure)
    if failure := _verify_peer_auth(sa, message):
        return Step(failure=failure)
    own_hash = _auth_hash(sa, True, sa.local_id.encode_body())
    data = sa.encrypt(ExchangeType.AGGRESSIVE, [HashPayload(own_hash)])
    return Step(data, established=True)


def aggressive_mode_answer(sa: IkeSa, message: Received, env: Env, answer: SaPayload) -> Step:
    """AM2 for a new responder SA whose proposal the endpoint already selected."""
    if failure := _check_remote_id(sa, first_of(message.payloads, IdPayload)):
        return Step(failure=failure)
    sa.remote_id_b = _received_body(message, IdPayload)  # IDii_b for HASH_I in AM3
    _take_peer_ke(sa, message)
    ke, nonce = _start_dh(sa, env, _agreed(sa).dh_group)
    if failure := _derive_keys(sa):
        return Step(failure=failure)
    own_hash = _auth_hash(sa, False, sa.local_id.encode_body())
    sa.state = SaState.AM_ANSWERED
    payloads: list[Payload] = [answer, ke, nonce, sa.local_id, HashPayload(own_hash)]
    return Step(_cleartext(sa, ExchangeType.AGGRESSIVE, payloads), expect_reply=True)


def am_responder_got_auth(sa: IkeSa, message: Received, env: Env) -> Step:
    if misplaced := _misplaced(AGGRESSIVE_MODE_RULES[2], message):
        return misplaced
    received_hash = first_of(message.payloads, HashPayload)
    expected = _auth_hash(sa, True, sa.remote_id_b)
    if not hmac.compare_digest(expected, received_hash.data):
        return Step(
            failure=Failure(
                "HASH_I does not verify (pre-shared key mismatch?)",
                NotifyType.AUTHENTICATION_FAILED,
            )
        )
    if message.encrypted:
        sa.ivs.confirm(0)
    return Step(established=True)


StepFunction = Callable[[IkeSa, Received, Env], Step]

#: The state machine: which step handles the next message of an SA.
STEPS: dict[tuple[Mode, Role, SaState], StepFunction] = {
    (Mode.MAIN, Role.INITIATOR, SaState.MM_SA_SENT): mm_initiator_got_sa,
    (Mode.MAIN, Role.INITIATOR, SaState.MM_KE_SENT): mm_initiator_got_ke,
    (Mode.MAIN, Role.INITIATOR, SaState.MM_AUTH_SENT): mm_initiator_got_auth,
    (Mode.MAIN, Role.RESPONDER, SaState.MM_SA_ANSWERED): mm_responder_got_ke,
    (Mode.MAIN, Role.RESPONDER, SaState.MM_KE_ANSWERED): mm_responder_got_auth,
    (Mode.AGGRESSIVE, Role.INITIATOR, SaState.AM_OFFER_SENT): am_initiator_got_answer,
    (Mode.AGGRESSIVE, Role.RESPONDER, SaState.AM_ANSWERED): am_responder_got_auth,
}


__all__ = [
    "STEPS",
    "Env",
    "Failure",
    "Phase1Peer",
    "Received",
    "Step",
    "aggressive_mode_answer",
    "aggressive_mode_offer",
    "main_mode_offer",
]
