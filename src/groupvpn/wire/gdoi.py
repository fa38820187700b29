"""GDOI payloads (RFC 3547 / RFC 6407) and their dispatch inside GROUPKEY-PULL/PUSH.

The classes live in :mod:`groupvpn.wire.gdoi_sa` (SA, SA KEK, SA TEK, GAP) and
:mod:`groupvpn.wire.gdoi_kd` (KD, SEQ); numbers in :mod:`groupvpn.wire.gdoi_numbers`.

Not supported: the RFC 3547 Proof-of-Possession payload (19).  No peer we
interoperate with sends it (the Cisco reference, Juniper v1 and RFC 6407
implementations all omit it), so a POP decodes as INVALID-PAYLOAD-TYPE in both
dialects.
"""

from __future__ import annotations

from groupvpn.wire.constants import PayloadType
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi_kd import KeyDownloadPayload, KeyPacket, SeqPayload
from groupvpn.wire.gdoi_sa import (
    GapPayload,
    GdoiId,
    GdoiSaPayload,
    IpsecTek,
    SaKekPayload,
    SaTekPayload,
)
from groupvpn.wire.payloads import Payload

__all__ = [
    "GapPayload",
    "GdoiId",
    "GdoiSaPayload",
    "IpsecTek",
    "KeyDownloadPayload",
    "KeyPacket",
    "SaKekPayload",
    "SaTekPayload",
    "SeqPayload",
    "gdoi_payload_class",
]

#: GDOI-specific payload bodies in both dialects (SA replaces the RFC 2408 layout).
_GDOI_PAYLOADS: dict[int, type[Payload]] = {
    cls.payload_type: cls
    for cls in (GdoiSaPayload, SaKekPayload, SaTekPayload, KeyDownloadPayload, SeqPayload)
}


def gdoi_payload_class(payload_type: int, dialect: Dialect) -> type[Payload] | None:
    """The class that decodes ``payload_type`` inside GROUPKEY-PULL/PUSH, if GDOI-specific."""
    if payload_type == PayloadType.GAP:
        return GapPayload if dialect.has_gap else None
    return _GDOI_PAYLOADS.get(payload_type)
