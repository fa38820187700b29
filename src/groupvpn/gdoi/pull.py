"""GROUPKEY-PULL, the member's registration (RFC 3547 §3.2, RFC 6407 §3.2).

::

    1  GM -> KS  HDR*, HASH(1), Ni, ID         HASH(1) = prf(SKEYID_a, M-ID | Ni | ID)
    2  KS -> GM  HDR*, HASH(2), Nr, SA         HASH(2) = prf(SKEYID_a, M-ID | Ni_b | Nr | SA)
    3  GM -> KS  HDR*, HASH(3) [, GAP]         HASH(3) = prf(SKEYID_a, M-ID | Ni_b | Nr_b [| GAP])
    4  KS -> GM  HDR*, HASH(4) [, SEQ], KD     HASH(4) = prf(SKEYID_a, M-ID | Ni_b | Nr_b
                                                                  [| SEQ] | KD)

All four messages share one random message ID, are encrypted under the phase 1
SA and chain their IVs per message ID (gdoi-wire.md §2.5).  Each hash covers
every payload after HASH in its message, exactly as sent.  The key server
commits nothing until HASH(3) proves the member received the policy.

Sender IDs (v2 only, RFC 6407 §3.2, §5.5, §5.6.4; RFC 6054): a member offered a
counter-mode TEK (AES-GCM) in message 2 asks for one SID with a GAP carrying
``SENDER_ID_REQUEST`` in message 3, under HASH(3).  The key server allocates it when
HASH(3) verifies and appends a KD key packet of type SID to message 4's KD
(:mod:`groupvpn.gdoi.sender_ids`); or refuses the registration with a Notify when it
has none left.

:class:`PullInitiator` and :class:`PullResponder` only turn datagrams into
datagrams; retransmission, timers and what a registration means for a group
belong to the member and server cores.  Both raise :class:`PullError` for a
message that must end the exchange and ignore exact repeats of what they
already handled (answering with their last message, so a lost reply recovers).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from groupvpn.crypto import keymat
from groupvpn.crypto.hashes import HashAlgorithm
from groupvpn.gdoi.sender_ids import (
    SenderId,
    offers_counter_mode,
    requested_sender_ids,
    sender_id_request,
    sid_key_packet,
)
from groupvpn.ike.rules import MessageRule, violation
from groupvpn.ike.sa import IkeSa
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import ExchangeType, IdType, NotifyType
from groupvpn.wire.constants import PayloadType as P
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GapPayload, GdoiSaPayload, KeyDownloadPayload, SeqPayload
from groupvpn.wire.message import IsakmpHeader, PayloadChain, encode_payloads
from groupvpn.wire.payloads import HashPayload, IdPayload, NoncePayload, Payload

NONCE_LENGTH = 16  # what the Cisco reference sends; RFC 2409 allows 8..256

#: What each message carries after its leading HASH.  (RFC 3547's optional KE,
#: CERT and POP for PFS and group-specific identities are not supported: no peer
#: we interoperate with sends them.)
PULL_RULES: dict[int, MessageRule] = {
    1: MessageRule("GROUPKEY-PULL 1", (P.HASH, P.NONCE, P.ID), frozenset(), True),
    2: MessageRule("GROUPKEY-PULL 2", (P.HASH, P.NONCE, P.SA), frozenset(), True),
    3: MessageRule("GROUPKEY-PULL 3", (P.HASH,), frozenset({P.GAP}), True),
    4: MessageRule("GROUPKEY-PULL 4", (P.HASH, P.KD), frozenset({P.SEQ}), True),
}


class PullError(Exception):
    """The exchange cannot go on.  ``notify`` is the Notify type to tell the peer, if any."""

    def __init__(self, reason: str, notify: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.notify = notify


@dataclass(frozen=True, slots=True)
class GroupOffer:
    """What the key server hands a member it admits: policy, keys, and the rekey SEQ."""

    sa: GdoiSaPayload
    key_download: KeyDownloadPayload
    #: Present exactly when the group has a KEK (gdoi-wire.md §5.1).
    sequence: int | None = None
    #: The sender IDs the member was given in message 4 (its KD then ends with their
    #: SID packet); set by the responder when it answers message 3.
    sender_ids: tuple[SenderId, ...] = ()


@dataclass(frozen=True, slots=True)
class Registration:
    """A completed pull as the member sees it."""

    group_id: int
    sa: GdoiSaPayload
    key_download: KeyDownloadPayload
    sequence: int | None
    #: How many sender IDs our message 3 asked for (0: no GAP was sent).
    sender_ids_requested: int = 0


@dataclass(frozen=True, slots=True)
class PullProgress:
    """What a received message led to: a datagram to send and/or the finished result."""

    send: bytes | None = None
    registration: Registration | None = None  # member: keys received
    admitted: GroupOffer | None = None  # key server: member committed (HASH(3) verified)


def group_id_payload(group_id: int) -> IdPayload:
    """The group identity: ID_KEY_ID with a 4-octet group number (gdoi-wire.md §3.2)."""
    return IdPayload(IdType.KEY_ID, 0, 0, group_id.to_bytes(4, "big"))


def group_id_of(identity: IdPayload) -> int:
    if identity.id_type != IdType.KEY_ID or len(identity.data) != 4:
        raise PullError(
            f"group identity {identity.describe()} is not a 4-octet KEY_ID",
            NotifyType.INVALID_ID_INFORMATION,
        )
    return int.from_bytes(identity.data, "big")


class _Stage(enum.Enum):
    SENT_1 = "sent message 1"
    SENT_3 = "sent message 3"
    WAIT_1 = "waiting for message 1"
    SENT_2 = "sent message 2"
    SENT_4 = "sent message 4"
    DONE = "done"


class _PullExchange:
    """What both roles share: protection, verification and repeat handling."""

    def __init__(self, sa: IkeSa, message_id: int, dialect: Dialect) -> None:
        if sa.keys is None or sa.agreed is None:
            raise ValueError("GROUPKEY-PULL needs an established phase 1 SA")
        self.sa = sa
        self.message_id = message_id
        self.dialect = dialect
        self.ni_b = b""
        self.nr_b = b""
        self._last_received: bytes | None = None
        self._last_sent: bytes | None = None

    def _protect(self, hash_of: Callable[[bytes], bytes], payloads: list[Payload]) -> bytes:
        """Prepend HASH over ``payloads`` as they will be sent, encrypt, remember for repeats."""
        _, after_hash = encode_payloads(payloads)
        data = self.sa.encrypt(
            ExchangeType.GROUPKEY_PULL, [HashPayload(hash_of(after_hash)), *payloads],
            self.message_id,
        )  # fmt: skip
        self._last_sent = data
        return data

    def _decrypt(self, data: bytes, header: IsakmpHeader) -> PayloadChain:
        return self.sa.decrypt(data, header, self.dialect)

    def _repeat(self, data: bytes) -> PullProgress | None:
        if data == self._last_received and self._last_sent is not None:
            return PullProgress(send=self._last_sent)
        return None

    def _open(
        self, header: IsakmpHeader, data: bytes, number: int, hash_of: Callable[[bytes], bytes]
    ) -> PayloadChain:
        """Decrypt, check the payloads and the HASH; only then advance the IV chain."""
        if header.message_id != self.message_id or not header.encrypted:
            raise DecodeError("not a protected message of this GROUPKEY-PULL", 20)
        chain = self._decrypt(data, header)
        rule = PULL_RULES[number]
        if problem := violation(rule, chain.payloads, True):
            raise PullError(problem, NotifyType.PAYLOAD_MALFORMED)
        first = chain.payloads[0]
        if not isinstance(first, HashPayload):
            raise PullError(f"{rule.name} does not start with HASH", NotifyType.PAYLOAD_MALFORMED)
        expected = hash_of(b"".join(chain.raw[1:]))
        if not hmac.compare_digest(expected, first.data):
            raise PullError(
                f"{rule.name}: HASH({number}) does not verify", NotifyType.INVALID_HASH_INFORMATION
            )
        self.sa.ivs.confirm(self.message_id)
        self._last_received = data
        return chain

    # The four hashes (gdoi-wire.md §5.2; formulas in crypto.keymat), each over
    # "every payload after HASH" as sent.
    def _hash1(self, after: bytes) -> bytes:
        hash_alg, skeyid_a = self._hash_key()
        return keymat.pull_hash1(hash_alg, skeyid_a, self.message_id, after)

    def _hash2(self, after: bytes) -> bytes:
        hash_alg, skeyid_a = self._hash_key()
        return keymat.pull_hash2(hash_alg, skeyid_a, self.message_id, self.ni_b, after)

    def _hash3(self, after: bytes) -> bytes:
        hash_alg, skeyid_a = self._hash_key()
        return keymat.pull_hash3(hash_alg, skeyid_a, self.message_id, self.ni_b, self.nr_b, after)

    def _hash4(self, after: bytes) -> bytes:
        hash_alg, skeyid_a = self._hash_key()
        return keymat.pull_hash4(hash_alg, skeyid_a, self.message_id, self.ni_b, self.nr_b, after)

    def _hash_key(self) -> tuple[HashAlgorithm, bytes]:
        assert self.sa.keys is not None and self.sa.agreed is not None
        return self.sa.agreed.hash, self.sa.keys.skeyid_a


T = TypeVar("T", bound=Payload)


def _first(chain: PayloadChain, cls: type[T]) -> T | None:
    return next((p for p in chain.payloads if isinstance(p, cls)), None)


class PullInitiator(_PullExchange):
    """The member's side: ask for ``group_id``, check the answer, return the keys."""

    def __init__(
        self, sa: IkeSa, group_id: int, *, message_id: int, nonce: bytes, dialect: Dialect
    ) -> None:
        super().__init__(sa, message_id, dialect)
        self.group_id = group_id
        self.ni_b = nonce
        self._stage = _Stage.SENT_1
        self._policy: GdoiSaPayload | None = None
        self._sender_ids_requested = 0
        #: The dialect the key server answers in when it is not ours (``_decrypt``).
        self._answer_dialect: Dialect | None = None

    def first_message(self) -> bytes:
        return self._protect(
            self._hash1, [NoncePayload(self.ni_b), group_id_payload(self.group_id)]
        )

    def _decrypt(self, data: bytes, header: IsakmpHeader) -> PayloadChain:
        """The answer in our dialect, or (a v1 member) in RFC 6407's.

        Junos Group VPNv1 members register with Group VPNv2 key servers (the spec's
        interop notes), whose answers carry a GAP payload and 2-octet SA TEK ID
        lengths.  A v1 member reads such an answer as RFC 6407 and goes on in v1
        itself: it asks for no sender IDs and takes no pushes (that interop runs
        without server-member-communication).  Once an answer was read as RFC 6407,
        message 4 is read that way too.
        """
        if self._answer_dialect is not None:
            return self.sa.decrypt(data, header, self._answer_dialect)
        try:
            return self.sa.decrypt(data, header, self.dialect)
        except DecodeError:
            if self.dialect != V1:
                raise
            chain = self.sa.decrypt(data, header, V2)
        self._answer_dialect = V2
        return chain

    def receive(self, header: IsakmpHeader, data: bytes) -> PullProgress:
        if (repeat := self._repeat(data)) is not None:
            return repeat
        if self._stage is _Stage.SENT_1:
            # Nr is needed for HASH(2) only as a whole payload, so it can be read after.
            chain = self._open(header, data, 2, self._hash2)
            nonce, policy = _first(chain, NoncePayload), _first(chain, GdoiSaPayload)
            assert nonce is not None and policy is not None  # the rule guarantees both
            self.nr_b, self._policy = nonce.data, policy
            self._stage = _Stage.SENT_3
            third: list[Payload] = []
            if self.dialect.sender_ids and offers_counter_mode(policy):
                # RFC 6407 §3.2: GAP with SENDER_ID_REQUEST, covered by HASH(3).
                self._sender_ids_requested = 1
                third.append(sender_id_request(self._sender_ids_requested))
            return PullProgress(send=self._protect(self._hash3, third))
        if self._stage is _Stage.SENT_3:
            chain = self._open(header, data, 4, self._hash4)
            key_download = _first(chain, KeyDownloadPayload)
            sequence = _first(chain, SeqPayload)
            assert key_download is not None and self._policy is not None
            if (sequence is not None) != (self._policy.kek is not None):
                raise PullError(
                    "SEQ must come with a KEK and only then", NotifyType.PAYLOAD_MALFORMED
                )
            self._stage = _Stage.DONE
            self._last_sent = None  # nothing to repeat: a copy of message 4 is just dropped
            result = Registration(
                self.group_id, self._policy, key_download,
                sequence.sequence if sequence is not None else None,
                self._sender_ids_requested,
            )  # fmt: skip
            return PullProgress(registration=result)
        raise DecodeError(f"GROUPKEY-PULL message after the exchange {self._stage.value}", 0)


#: The key server's policy decision for a member: (group id, IKE SA) -> offer or refusal.
Admission = Callable[[int, IkeSa], GroupOffer | PullError]
#: The key server's sender IDs for a member that asked in message 3: (group id, how
#: many it asked for) -> the SIDs it gets, or a refusal of the registration.
SenderIdGrant = Callable[[int, int], tuple[SenderId, ...] | PullError]


class PullResponder(_PullExchange):
    """The key server's side: authorise, send policy, commit on HASH(3), send keys."""

    def __init__(
        self,
        sa: IkeSa,
        *,
        message_id: int,
        nonce: bytes,
        dialect: Dialect,
        admit: Admission,
        grant_sender_ids: SenderIdGrant | None = None,
    ) -> None:
        super().__init__(sa, message_id, dialect)
        self.nr_b = nonce
        self._admit = admit
        self._grant_sender_ids = grant_sender_ids
        self._stage = _Stage.WAIT_1
        self._offer: GroupOffer | None = None
        self.group_id: int | None = None

    def receive(self, header: IsakmpHeader, data: bytes) -> PullProgress:
        if (repeat := self._repeat(data)) is not None:
            return repeat
        if self._stage is _Stage.WAIT_1:
            # Ni enters HASH(1) whole, so the hash is checked before the body is used.
            chain = self._open(header, data, 1, self._hash1)
            nonce, identity = _first(chain, NoncePayload), _first(chain, IdPayload)
            assert nonce is not None and identity is not None
            self.ni_b = nonce.data
            self.group_id = group_id_of(identity)
            decision = self._admit(self.group_id, self.sa)
            if isinstance(decision, PullError):
                raise decision
            self._offer = decision
            self._stage = _Stage.SENT_2
            return PullProgress(
                send=self._protect(self._hash2, [NoncePayload(self.nr_b), decision.sa])
            )
        if self._stage is _Stage.SENT_2:
            chain = self._open(header, data, 3, self._hash3)
            assert self._offer is not None and self.group_id is not None
            offer = self._offer
            wanted = requested_sender_ids(_first(chain, GapPayload))
            if wanted and self.dialect.sender_ids and self._grant_sender_ids is not None:
                # RFC 6407 §5.6.4: the SIDs go in message 4's KD, as a SID key packet.
                granted = self._grant_sender_ids(self.group_id, wanted)
                if isinstance(granted, PullError):
                    raise granted
                if granted:
                    packets = (*offer.key_download.packets, sid_key_packet(granted))
                    offer = replace(
                        offer, key_download=KeyDownloadPayload(packets), sender_ids=granted
                    )
                    self._offer = offer
            payloads: list[Payload] = []
            if offer.sequence is not None:
                payloads.append(SeqPayload(offer.sequence))
            payloads.append(offer.key_download)
            self._stage = _Stage.SENT_4
            return PullProgress(send=self._protect(self._hash4, payloads), admitted=offer)
        raise DecodeError(f"GROUPKEY-PULL message after the exchange {self._stage.value}", 0)
