"""Informational exchanges (RFC 2409 §5.7, RFC 2408 §4.8).

After phase 1 an Informational is ``HDR*, HASH(1), N/D`` under a fresh message
ID with ``HASH(1) = prf(SKEYID_a, M-ID | N/D)``.  Before keys exist, errors go
out as a lone cleartext Notify.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from groupvpn.crypto import keymat
from groupvpn.ike.sa import IkeSa
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import Doi, ExchangeType, NotifyType, ProtocolId
from groupvpn.wire.message import IsakmpHeader, encode_message, encode_payloads
from groupvpn.wire.payloads import DeletePayload, HashPayload, NotifyPayload, Payload


def unprotected_notify(initiator_cookie: bytes, responder_cookie: bytes, notify_type: int) -> bytes:
    """A cleartext error Notify about the ISAKMP SA named by the cookies."""
    notify = NotifyPayload(
        Doi.IPSEC, ProtocolId.ISAKMP, notify_type, initiator_cookie + responder_cookie
    )
    return encode_message(initiator_cookie, responder_cookie, ExchangeType.INFORMATIONAL, [notify])


def isakmp_notify(sa: IkeSa, notify_type: int, data: bytes = b"") -> NotifyPayload:
    return NotifyPayload(
        Doi.IPSEC, ProtocolId.ISAKMP, notify_type, sa.initiator_cookie + sa.responder_cookie, data
    )


def isakmp_delete(sa: IkeSa) -> DeletePayload:
    """Delete of the ISAKMP SA itself: protocol ISAKMP, SPI = the two cookies."""
    return DeletePayload(
        Doi.IPSEC, ProtocolId.ISAKMP, 16, (sa.initiator_cookie + sa.responder_cookie,)
    )


def protected_informational(sa: IkeSa, payload: Payload, message_id: int) -> bytes:
    """``HDR*, HASH(1), N/D`` encrypted under the SA with its own message ID chain."""
    assert sa.keys is not None and sa.agreed is not None
    _, protected = encode_payloads([payload])
    digest = keymat.informational_hash(sa.agreed.hash, sa.keys.skeyid_a, message_id, protected)
    return sa.encrypt(ExchangeType.INFORMATIONAL, [HashPayload(digest), payload], message_id)


@dataclass(frozen=True, slots=True)
class InformationalContent:
    payloads: tuple[Payload, ...]


def open_protected_informational(
    sa: IkeSa, data: bytes, header: IsakmpHeader
) -> InformationalContent:
    """Decrypt and verify; raise DecodeError for anything that does not check out."""
    if header.message_id == 0:
        raise DecodeError(
            "protected Informational with message ID 0", 20, NotifyType.INVALID_MESSAGE_ID
        )
    chain = sa.decrypt(data, header)
    if len(chain.payloads) < 2 or not isinstance(chain.payloads[0], HashPayload):
        raise DecodeError("Informational must start with HASH and carry N or D", 28)
    if not all(isinstance(p, NotifyPayload | DeletePayload) for p in chain.payloads[1:]):
        raise DecodeError("Informational may only carry Notify and Delete payloads", 28)
    assert sa.keys is not None and sa.agreed is not None
    expected = keymat.informational_hash(
        sa.agreed.hash, sa.keys.skeyid_a, header.message_id, b"".join(chain.raw[1:])
    )
    if not hmac.compare_digest(expected, chain.payloads[0].data):
        raise DecodeError(
            "Informational HASH(1) does not verify", 28, NotifyType.INVALID_HASH_INFORMATION
        )
    sa.ivs.confirm(header.message_id)
    return InformationalContent(chain.payloads[1:])
