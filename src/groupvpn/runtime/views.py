"""What the `show` commands return: JSON-ready dicts with stable, Junos-style keys.

The keys are hyphenated like Junos's own JSON output and documented in
docs/operational-commands.md; scripts and monitoring read them, so they only
ever grow.  Times inside the cores are monotonic; here they become remaining
seconds or UTC timestamps.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.member.core import MemberCore
from groupvpn.member.keys import GroupKek, GroupSa
from groupvpn.server.groups import GroupKeyServer

JsonDict = dict[str, Any]


class Clock:
    """Converts the cores' monotonic times into wall-clock UTC for display."""

    def __init__(self, monotonic_now: float, wall_now: float | None = None) -> None:
        self.now = monotonic_now
        self._offset = (time.time() if wall_now is None else wall_now) - monotonic_now

    def utc(self, monotonic: float) -> str:
        moment = datetime.fromtimestamp(monotonic + self._offset, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def remaining(self, deadline: float | None) -> int | None:
        return None if deadline is None else max(0, int(deadline - self.now))


def ike_security_associations(endpoints: Iterable[IkeEndpoint], clock: Clock) -> JsonDict:
    rows = []
    for endpoint in endpoints:
        for sa in endpoint.established():
            expires = sa.established_at + sa.lifetime_seconds
            rows.append(
                {
                    "remote-address": sa.peer[0],
                    "remote-port": sa.peer[1],
                    "local-address": endpoint.local_address,
                    "gateway": sa.gateway,
                    "state": "UP",
                    "initiator-cookie": sa.initiator_cookie.hex(),
                    "responder-cookie": sa.responder_cookie.hex(),
                    "role": sa.role,
                    "mode": sa.mode,
                    "encryption": sa.encryption,
                    "authentication": sa.hash,
                    "dh-group": sa.dh_group,
                    "lifetime-remaining": clock.remaining(expires),
                    "established": clock.utc(sa.established_at),
                    "local-identity": sa.local_identity,
                    "remote-identity": sa.remote_identity,
                }
            )
    for index, row in enumerate(rows, start=1):
        row["index"] = index
    return {"security-associations": rows}


def server_registered_members(
    groups: GroupKeyServer, clock: Clock, group: str | None = None
) -> JsonDict:
    by_group: dict[str, JsonDict] = {}
    for definition in groups.definitions():
        if group is None or definition.name == group:
            by_group[definition.name] = {
                "group": definition.name,
                "group-id": definition.group_id,
                "members": [],
            }
    for record in groups.members(group):
        by_group[record.group]["members"].append(
            {
                "address": record.address,
                "gateway": record.gateway,
                "registered": clock.utc(record.registered_at),
            }
        )
    return {"groups": list(by_group.values())}


def server_ipsec_security_associations(groups: GroupKeyServer, clock: Clock) -> JsonDict:
    result = []
    for definition in groups.definitions():
        sas = []
        for tek in groups.current_teks(definition.group_id, clock.now):
            policy = tek.policy
            sas.append(
                {
                    "policy": policy.name,
                    "spi": tek.spi.hex(),
                    "encryption": policy.cipher.name,
                    "authentication": policy.integrity.name,
                    "lifetime-remaining": clock.remaining(tek.expires_at),
                    **_selectors(policy.source, policy.destination, policy.source_port,
                                 policy.destination_port, policy.protocol),
                }
            )  # fmt: skip
        result.append(
            {
                "group": definition.name,
                "group-id": definition.group_id,
                "security-associations": sas,
            }
        )
    return {"groups": result}


def server_kek_security_associations(groups: GroupKeyServer, clock: Clock) -> JsonDict:
    """Each group's KEK (the rekey SA) and SEQ; groups without one are not listed."""
    rows = []
    for index, status in enumerate(groups.kek_status(clock.now), start=1):
        kek = status.kek
        policy = kek.policy
        icookie, rcookie = kek.cookies
        rows.append(
            {
                "index": index,
                "group": status.group,
                "group-id": status.group_id,
                "spi": kek.spi.hex(),
                "initiator-cookie": icookie.hex(),
                "responder-cookie": rcookie.hex(),
                "encryption": policy.cipher.name,
                "signature-hash": policy.sig_hash.name,
                "signature-algorithm": "rsa",
                "signature-key-length": status.signature_bits,
                "signing-key-fingerprint": status.signing_key_fingerprint,
                "communication-type": policy.communication_type,
                "multicast-group": (
                    None if policy.multicast_group is None else str(policy.multicast_group)
                ),
                "lifetime-remaining": clock.remaining(kek.expires_at),
                "sequence": status.sequence,
            }
        )
    return {"security-associations": rows}


def member_ike_security_associations(cores: Iterable[MemberCore], clock: Clock) -> JsonDict:
    cores = list(cores)
    view = ike_security_associations((core.ike for core in cores), clock)
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


def member_ipsec_security_associations(sas: Iterable[GroupSa], clock: Clock) -> JsonDict:
    return {
        "security-associations": [
            {
                "vpn": sa.vpn,
                "group-id": sa.group_id,
                "spi": sa.spi.hex(),
                "encryption": sa.cipher.name,
                "authentication": sa.integrity.name,
                "lifetime-remaining": clock.remaining(sa.expires_at),
                **_selectors(
                    sa.source, sa.destination, sa.source_port, sa.destination_port, sa.protocol
                ),
            }
            for sa in sas
        ]
    }


def _selectors(source: object, destination: object, sport: int, dport: int, proto: int) -> JsonDict:
    return {
        "source": str(source),
        "destination": str(destination),
        "source-port": sport,
        "destination-port": dport,
        "protocol": proto,
    }


def member_kek_security_associations(keks: Iterable[GroupKek], clock: Clock) -> JsonDict:
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
