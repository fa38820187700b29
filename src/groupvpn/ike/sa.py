"""One IKE (ISAKMP) SA: its negotiation state, keys, IV chains and message protection.

Encryption follows RFC 2409 Appendix B / RFC 2408 §3.1: everything after the
28-octet header is CBC-encrypted with the key derived from SKEYID_e, padded
with zeros to the block size; the header stays clear and its Length counts the
padding.  IVs advance only when a message was sent or verified (two-step
update/confirm in :class:`IvManager`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from groupvpn.crypto.ciphers import cbc_decrypt, cbc_encrypt
from groupvpn.crypto.dh import DhExchange
from groupvpn.crypto.iv import IvManager
from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.ike.events import Address, IkeSaInfo
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import HEADER_LENGTH, Flag
from groupvpn.wire.dialect import V1, Dialect
from groupvpn.wire.message import IsakmpHeader, PayloadChain, decode_payloads, encode_payloads
from groupvpn.wire.payloads import DecodeContext, IdPayload, Payload


class Role(enum.StrEnum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class Mode(enum.StrEnum):
    MAIN = "main"
    AGGRESSIVE = "aggressive"


class SaState(enum.Enum):
    """Where a negotiation stands.  Names say what was last *sent*."""

    NEW = "new"
    MM_SA_SENT = "MM1 sent"  # initiator
    MM_KE_SENT = "MM3 sent"
    MM_AUTH_SENT = "MM5 sent"
    MM_SA_ANSWERED = "MM2 sent"  # responder
    MM_KE_ANSWERED = "MM4 sent"
    AM_OFFER_SENT = "AM1 sent"  # initiator
    AM_ANSWERED = "AM2 sent"  # responder
    ESTABLISHED = "established"
    DEAD = "dead"


@dataclass(eq=False)
class IkeSa:
    role: Role
    mode: Mode
    peer: Address
    policy: Phase1Peer
    initiator_cookie: bytes
    responder_cookie: bytes
    state: SaState
    local_id: IdPayload
    created_at: float
    #: Body of the initiator's SA payload (SAi_b), input to HASH_I and HASH_R.
    sai_b: bytes = b""
    agreed: Phase1Proposal | None = None
    dh: DhExchange | None = field(default=None, repr=False)
    g_xi: bytes = field(default=b"", repr=False)
    g_xr: bytes = field(default=b"", repr=False)
    ni_b: bytes = field(default=b"", repr=False)
    nr_b: bytes = field(default=b"", repr=False)
    keys: Phase1Keys | None = field(default=None, repr=False)
    ivs: IvManager = field(default_factory=IvManager, repr=False)
    remote_id: IdPayload | None = None
    #: Aggressive Mode responder: IDii_b as received in AM1, for HASH_I in AM3.
    remote_id_b: bytes = b""
    #: Every message accepted in this negotiation, to tell late repeats apart.
    accepted: list[bytes] = field(default_factory=list, repr=False)
    #: Retransmission: the last message we sent and the last one we accepted.
    last_sent: bytes | None = field(default=None, repr=False)
    last_received: bytes | None = field(default=None, repr=False)
    retransmits: int = 0
    retransmit_at: float | None = None
    #: A negotiation that has not finished by then is abandoned.
    give_up_at: float | None = None
    established_at: float | None = None
    expires_at: float | None = None

    @property
    def cookies(self) -> tuple[bytes, bytes]:
        return self.initiator_cookie, self.responder_cookie

    def next_timer(self) -> float | None:
        times = [t for t in (self.retransmit_at, self.give_up_at, self.expires_at) if t is not None]
        return min(times) if times else None

    def info(self) -> IkeSaInfo:
        agreed = self.agreed
        return IkeSaInfo(
            initiator_cookie=self.initiator_cookie,
            responder_cookie=self.responder_cookie,
            peer=self.peer,
            gateway=self.policy.gateway,
            role=self.role.value,
            mode=self.mode.value,
            encryption=agreed.encryption.name if agreed else "",
            hash=agreed.hash.name if agreed else "",
            dh_group=agreed.dh_group.number if agreed else 0,
            lifetime_seconds=agreed.lifetime_seconds if agreed else 0,
            established_at=self.established_at or 0.0,
            local_identity=self.local_id.describe(),
            remote_identity=self.remote_id.describe() if self.remote_id else "",
        )

    # -- message protection ------------------------------------------------

    def encrypt(
        self,
        exchange_type: int,
        payloads: list[Payload],
        message_id: int = 0,
        iv: bytes | None = None,
    ) -> bytes:
        """Encode, pad and encrypt a message; advance the chain of ``message_id``."""
        assert self.keys is not None and self.agreed is not None, "no keys yet"
        cipher = self.agreed.encryption
        first, body = encode_payloads(payloads)
        pad = -len(body) % cipher.block_size
        plaintext = body + bytes(pad)
        if iv is None:
            iv = self.current_iv(message_id)
        ciphertext = cbc_encrypt(cipher, self.keys.encryption_key, iv, plaintext)
        header = IsakmpHeader(
            self.initiator_cookie,
            self.responder_cookie,
            first,
            exchange_type,
            Flag.ENCRYPTION,
            message_id,
            HEADER_LENGTH + len(ciphertext),
        )
        self.ivs.update(message_id, ciphertext[-cipher.block_size :])
        self.ivs.confirm(message_id)
        return header.encode() + ciphertext

    def current_iv(self, message_id: int) -> bytes:
        assert self.agreed is not None
        if message_id == 0:
            return self.ivs.phase1_iv()
        return self.ivs.iv_for(message_id, self.agreed.hash, self.agreed.encryption.block_size)

    def decrypt(self, data: bytes, header: IsakmpHeader, dialect: Dialect = V1) -> PayloadChain:
        """Decrypt and decode; the IV moves only when the caller calls ``confirm``.

        ``dialect`` matters only for GDOI payloads (GROUPKEY-PULL/PUSH bodies).
        """
        if self.keys is None or self.agreed is None:
            raise DecodeError("encrypted message before keys exist", 19)
        cipher = self.agreed.encryption
        ciphertext = data[HEADER_LENGTH:]
        if not ciphertext or len(ciphertext) % cipher.block_size:
            raise DecodeError(
                f"encrypted body of {len(ciphertext)} octets is not a multiple of the "
                f"{cipher.block_size}-octet block",
                HEADER_LENGTH,
            )
        iv = self.current_iv(header.message_id)
        plaintext = cbc_decrypt(cipher, self.keys.encryption_key, iv, ciphertext)
        chain = decode_payloads(
            plaintext,
            header.next_payload,
            DecodeContext(header.exchange_type, dialect),
            allow_trailing=True,
        )
        self.ivs.update(header.message_id, ciphertext[-cipher.block_size :])
        return chain
