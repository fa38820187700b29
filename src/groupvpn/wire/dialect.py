"""The two GDOI wire dialects.

``v1`` is RFC 3547 as Juniper Group VPNv1 and the Cisco reference
implementation send it; ``v2`` is RFC 6407.  They differ only in a few field
widths and optional payloads, so the protocol cores take a :class:`Dialect`
and never branch on the version themselves.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    #: Width of the SRC/DST "ID Data Len" fields inside an ESP/AH SA TEK body.
    #: RFC 3547 and the Cisco reference trace use 1 octet; RFC 6407 as
    #: implemented by Wireshark and DigiCert uses 2 (gdoi-wire.md §0.2).
    sat_id_length_octets: int
    #: RFC 3547 puts POP Algorithm + POP Key Length after the SA KEK SPI;
    #: RFC 6407 calls the same four octets RESERVED2.
    sak_has_pop_fields: bool
    #: RFC 6407 defines the GAP payload (22); RFC 3547 does not.
    has_gap: bool
    #: RFC 3547 defines the POP payload (19); RFC 6407 removed it.
    has_pop: bool
    #: RFC 6407 hands out sender IDs for counter-mode ciphers in GROUPKEY-PULL (GAP
    #: SENDER_ID_REQUEST in message 3, a KD SID packet in message 4); RFC 3547 cannot,
    #: so AES-GCM is offered in v2 only (docs/rekey-wire.md §6).
    sender_ids: bool = False


V1 = Dialect(
    name="v1", sat_id_length_octets=1, sak_has_pop_fields=True, has_gap=False, has_pop=True
)
V2 = Dialect(
    name="v2", sat_id_length_octets=2, sak_has_pop_fields=False, has_gap=True, has_pop=False,
    sender_ids=True,
)  # fmt: skip

DIALECTS = {dialect.name: dialect for dialect in (V1, V2)}
