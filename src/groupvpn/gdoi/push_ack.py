"""The unicast rekey acknowledgement (RFC 8263 as far as it could be established).

::

    GM -> KS   HDR, HASH, SEQ, ID          HASH = prf(ack key, KEK SPI | SEQ | ID)
               ack key = prf(SKEYID_a, "GROUPKEY-PUSH ACK" | CKY-I | CKY-R)

* HDR: the two cookies are the KEK SPI of the push being acknowledged (so the key
  server finds the group without any state), exchange :data:`ACK_EXCHANGE_TYPE`,
  no flags (nothing in it is secret), message ID 0.
* SEQ: the acknowledged push's sequence number; ID: the member's identity as it
  registered (its phase 1 ID payload).  SEQ and ID enter the HASH whole, generic
  headers included, as every GDOI hash takes "the payloads after HASH" (§5.2).
  The KEK SPI (the header's cookies) enters it too: one phase 1 SA, and so one ack
  key, serves every group VPN a member has on that gateway, and without the SPI an
  ACK of SEQ n in one group, re-headered, would acknowledge SEQ n in another.
* The ack key is the member's own: SKEYID_a and the cookies are those of the
  phase 1 SA its GROUPKEY-PULL ran under, which only that member and the key server
  know.  A KEK-derived key would be shared by the whole group, and any member could
  then keep a dead one on the list with a forged ACK.  It changes with each
  registration, so an old ACK never vouches for a new one.
* prf is HMAC with the KEK's SIG_HASH_ALGORITHM, so an ACK is as strong as the
  signatures it answers whatever hash phase 1 used.

The KS asks for ACKs with the SA KEK attribute :data:`KEK_ACK_REQUESTED`.

What is unverified (RFC 8263's text was not available; the shape ``HDR, HASH, SEQ,
ID``, a HASH over SEQ and ID, an ack key derived with the label "GROUPKEY-PUSH ACK"
from a key and the SPI of the registration's phase 1 SA, and KEK_ACK_REQUESTED in
the SA KEK come from a third-party summary of it): the exchange type number, the
attribute's number and value, which phase 1 key is the base (SKEYID_a here), the
exact derivation input (the summary also names a length L we could not pin down),
and which hash the prf uses.  Each is one constant or one function below, and
docs/rekey-wire.md lists them.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from groupvpn.gdoi.push_sig import SigHashSpec
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType, PayloadType
from groupvpn.wire.dialect import V2
from groupvpn.wire.gdoi import SaKekPayload, SeqPayload
from groupvpn.wire.gdoi_sa import KEK_SPI_LENGTH
from groupvpn.wire.message import IsakmpHeader, decode_payloads, encode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, HashPayload, IdPayload

#: ISAKMP exchange type of the ACK.  [UNVERIFIED] RFC 8263 registers a new one; 35
#: follows GROUPKEY-PULL (32) and GROUPKEY-PUSH (33) in the DOI-specific range.
ACK_EXCHANGE_TYPE = 35
#: SA KEK attribute asking members to ACK.  [UNVERIFIED] 9 is the next KEK attribute
#: number after RFC 3547's eight (gdoi-wire.md §4.2 guesses the same).
KEK_ACK_REQUESTED = 9
#: Its value: which ACK we want.  [UNVERIFIED]
KEK_ACK_REQUESTED_VALUE = 1
#: The label of the ack key derivation (as the summary of RFC 8263 quotes it).
ACK_KEY_LABEL = b"GROUPKEY-PUSH ACK"
ACK_MESSAGE_ID = 0
IKE_COOKIES_LENGTH = 16

#: HASH, SEQ, ID exactly, in this order.
_ACK_PAYLOADS = (PayloadType.HASH, PayloadType.SEQ, PayloadType.ID)


@dataclass(frozen=True, slots=True)
class AckKey:
    """One member's ACK key (secret: never in a repr) and the hash its prf uses."""

    sig_hash: SigHashSpec
    key: bytes = field(repr=False)

    def prf(self, data: bytes) -> bytes:
        return hmac.digest(self.key, data, self.sig_hash.hashlib_name)


# ack key = prf(SKEYID_a, "GROUPKEY-PUSH ACK" | CKY-I | CKY-R)   [UNVERIFIED details above]
def derive_ack_key(sig_hash: SigHashSpec, skeyid_a: bytes, ike_cookies: bytes) -> AckKey:
    """The ack key of a member registered through the phase 1 SA with these cookies."""
    if len(ike_cookies) != IKE_COOKIES_LENGTH:
        raise ValueError(f"phase 1 cookies are {IKE_COOKIES_LENGTH} octets")
    key = hmac.digest(skeyid_a, ACK_KEY_LABEL + ike_cookies, sig_hash.hashlib_name)
    return AckKey(sig_hash, key)


def ack_requested_attribute() -> DataAttribute:
    """The SA KEK attribute a key server with unicast rekeys adds."""
    return DataAttribute.basic(KEK_ACK_REQUESTED, KEK_ACK_REQUESTED_VALUE)


def acks_requested(kek: SaKekPayload) -> bool:
    """Whether the key server asks for ACKs of the pushes under this SA KEK.

    We send KEK_ACK_REQUESTED_VALUE; any non-zero value is taken as a request,
    because RFC 8263 registers several values (ACK methods) and a member that
    ignored one would be removed for not ACKing.
    """
    return any(a.type == KEK_ACK_REQUESTED and a.as_int() != 0 for a in kek.attributes)


def build_ack(kek_spi: bytes, sequence: int, identity: IdPayload, key: AckKey) -> bytes:
    """The member's ACK of push ``sequence`` received under KEK ``kek_spi``."""
    if len(kek_spi) != KEK_SPI_LENGTH:
        raise ValueError(f"a KEK SPI has {KEK_SPI_LENGTH} octets")
    if not 0 <= sequence <= 0xFFFFFFFF:
        raise ValueError(f"SEQ {sequence} does not fit 32 bits")
    # SEQ | ID encode the same alone as after HASH: SEQ names ID next, ID ends the chain.
    _, signed = encode_payloads([SeqPayload(sequence), identity])
    digest = key.prf(kek_spi + signed)
    first, body = encode_payloads([HashPayload(digest), SeqPayload(sequence), identity])
    half = KEK_SPI_LENGTH // 2
    header = IsakmpHeader(
        kek_spi[:half], kek_spi[half:], first, ACK_EXCHANGE_TYPE, 0, ACK_MESSAGE_ID,
        HEADER_LENGTH + len(body),
    )  # fmt: skip
    return header.encode() + body


class AckRejection(enum.StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_MEMBER = "unknown-member"  # no ack key for this KEK SPI and identity
    BAD_HASH = "bad-hash"  # forged, or from a registration that is no longer current


@dataclass(frozen=True, slots=True)
class AckRejected:
    reason: AckRejection
    detail: str  # log-safe: numbers, hex and IdPayload.describe() only
    kek_spi: bytes | None = None


@dataclass(frozen=True, slots=True)
class AckOpened:
    """An authentic ACK: ``identity`` received push ``sequence`` of KEK ``kek_spi``."""

    kek_spi: bytes
    sequence: int
    identity: IdPayload


#: The key server's lookup: (KEK SPI, member identity) -> that member's ack key.
AckKeyLookup = Callable[[bytes, IdPayload], AckKey | None]


def open_ack(data: bytes, key_for: AckKeyLookup) -> AckOpened | AckRejected:
    """Decode strictly and check the HASH; never raises for peer input.

    Whether the SEQ is the one this member owes is the delivery's business.
    """
    try:
        header = pull_header(data)
        if header.exchange_type != ACK_EXCHANGE_TYPE:
            raise DecodeError(f"exchange type {header.exchange_type}", 18)
        if header.flags or header.message_id != ACK_MESSAGE_ID:
            raise DecodeError(f"flags 0x{header.flags:02x}, message ID {header.message_id}", 19)
        # message.payload_class knows GDOI payloads (SEQ) only in exchanges 32 and 33,
        # so the chain is read with GROUPKEY-PUSH's payload table.
        ctx = DecodeContext(ExchangeType.GROUPKEY_PUSH, V2)
        chain = decode_payloads(data, header.next_payload, ctx, HEADER_LENGTH)
    except DecodeError as exc:
        return AckRejected(AckRejection.MALFORMED, str(exc))
    spi = header.initiator_cookie + header.responder_cookie
    if tuple(p.payload_type for p in chain.payloads) != _ACK_PAYLOADS:
        return AckRejected(AckRejection.MALFORMED, "payloads are not HASH, SEQ, ID", spi)
    digest, seq, identity = chain.payloads
    assert isinstance(digest, HashPayload) and isinstance(seq, SeqPayload)
    assert isinstance(identity, IdPayload)
    key = key_for(spi, identity)
    if key is None:
        detail = f"KEK SPI {spi.hex()}, {identity.describe()}"
        return AckRejected(AckRejection.UNKNOWN_MEMBER, detail, spi)
    expected = key.prf(spi + chain.raw[1] + chain.raw[2])
    if not hmac.compare_digest(expected, digest.data):
        detail = f"SEQ {seq.sequence} from {identity.describe()}"
        return AckRejected(AckRejection.BAD_HASH, detail, spi)
    return AckOpened(spi, seq.sequence, identity)
