"""Delete payloads of a GROUPKEY-PUSH: which TEKs, or which KEK, the key server withdraws.

RFC 3547 §4.6 ("Deletion of SAs"), kept by RFC 6407: one or more Delete payloads
follow SEQ; the Protocol-Id is a TEK protocol ID, and "to delete a KEK SA the
value zero MUST be used as protocol-id"; a TEK and a KEK deletion go in separate
Delete payloads.  TEK SPIs are 4 octets (ESP), a KEK SPI is 16 (the cookie pair).

What a member does with a deleted KEK is ours (docs/rekey-wire.md §2a): it stops
taking pushes under that KEK and registers again.  The key server evicts members
that way (``server.rekeying``), so the new keys reach only the members that may
register, over their own phase 1 SAs.
"""

from __future__ import annotations

from collections.abc import Iterable

from groupvpn.wire.constants import Doi
from groupvpn.wire.gdoi_numbers import TekProtocol
from groupvpn.wire.gdoi_sa import KEK_SPI_LENGTH, TEK_SPI_LENGTH
from groupvpn.wire.payloads import DeletePayload

__all__ = ["KEK_PROTOCOL_ID", "deleted_kek_spis", "deleted_tek_spis", "kek_delete", "tek_delete"]

#: RFC 3547 §4.6: the Protocol-Id of a Delete payload that deletes a KEK SA.
KEK_PROTOCOL_ID = 0


def tek_delete(spis: Iterable[bytes]) -> DeletePayload:
    """One Delete payload for ESP TEKs."""
    return DeletePayload(Doi.GDOI, TekProtocol.IPSEC_ESP, TEK_SPI_LENGTH, tuple(spis))


def kek_delete(spi: bytes) -> DeletePayload:
    """The Delete payload for a KEK (its 16-octet SPI)."""
    if len(spi) != KEK_SPI_LENGTH:
        raise ValueError(f"a KEK SPI has {KEK_SPI_LENGTH} octets")
    return DeletePayload(Doi.GDOI, KEK_PROTOCOL_ID, KEK_SPI_LENGTH, (spi,))


def deleted_tek_spis(deletes: Iterable[DeletePayload]) -> list[bytes]:
    """The ESP SPIs the Delete payloads name (others are not keys a member could hold)."""
    return [
        spi
        for delete in deletes
        if delete.protocol_id == TekProtocol.IPSEC_ESP and delete.spi_size == TEK_SPI_LENGTH
        for spi in delete.spis
    ]


def deleted_kek_spis(deletes: Iterable[DeletePayload]) -> set[bytes]:
    """The KEK SPIs the Delete payloads name."""
    return {
        spi
        for delete in deletes
        if delete.protocol_id == KEK_PROTOCOL_ID and delete.spi_size == KEK_SPI_LENGTH
        for spi in delete.spis
    }
