"""The group member's `show` views (keys documented in docs/operational-commands.md)."""

from __future__ import annotations

from collections.abc import Iterable

from groupvpn.member.core import MemberCore
from groupvpn.member.keys import GroupKek, GroupSa
from groupvpn.runtime import views
from groupvpn.runtime.views import Clock, JsonDict, selectors


def ike_security_associations(cores: Iterable[MemberCore], clock: Clock) -> JsonDict:
    cores = list(cores)
    view = views.ike_security_associations((core.ike for core in cores), clock)
    view["registrations"] = [
        {
            "vpn": status.vpn,
            "gateway": status.gateway,
            "group-id": status.group_id,
            "state": status.state,
            "failures": status.failures,
            "last-error": status.last_error,
            "next-attempt-seconds": (
                None if status.next_attempt is None else round(status.next_attempt, 1)
            ),
            "registered": None if status.registered_at is None else clock.utc(status.registered_at),
        }
        for core in cores
        for status in core.status(clock.now)
    ]
    return view


def ipsec_security_associations(sas: Iterable[GroupSa], clock: Clock) -> JsonDict:
    return {
        "security-associations": [
            {
                "vpn": sa.vpn,
                "group-id": sa.group_id,
                "spi": sa.spi.hex(),
                "encryption": sa.cipher.name,
                "authentication": sa.integrity.name,
                "lifetime-remaining": clock.remaining(sa.expires_at),
                **selectors(
                    sa.source, sa.destination, sa.source_port, sa.destination_port, sa.protocol
                ),
            }
            for sa in sas
        ]
    }


def kek_security_associations(keks: Iterable[GroupKek], clock: Clock) -> JsonDict:
    """The KEK each group VPN received at registration, and its SEQ baseline."""
    return {
        "security-associations": [
            {
                "index": index,
                "vpn": kek.vpn,
                "group-id": kek.group_id,
                "spi": kek.spi.hex(),
                "initiator-cookie": kek.spi[:8].hex(),
                "responder-cookie": kek.spi[8:].hex(),
                "source": kek.source.describe(),
                "destination": kek.destination.describe(),
                "encryption": kek.cipher.name,
                "signature-hash": kek.sig_hash.name,
                "signature-algorithm": "rsa",
                "signature-key-length": kek.signature_bits,
                "signing-key-fingerprint": kek.public_key_fingerprint,
                "lifetime-remaining": clock.remaining(kek.expires_at),
                "sequence": kek.sequence,
            }
            for index, kek in enumerate(keks, start=1)
        ]
    }
