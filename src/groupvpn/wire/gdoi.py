"""GDOI payloads (RFC 3547 / RFC 6407): SA KEK, SA TEK, KD, SEQ, GAP and the GDOI SA body.

Placeholder: the payload classes are being written; until then no GDOI-specific
payload decodes and GROUPKEY exchanges fall back to the common table.
"""

from __future__ import annotations

from groupvpn.wire.dialect import Dialect
from groupvpn.wire.payloads import Payload


def gdoi_payload_class(payload_type: int, dialect: Dialect) -> type[Payload] | None:
    """The class that decodes ``payload_type`` inside GROUPKEY-PULL/PUSH, if GDOI-specific."""
    return None
