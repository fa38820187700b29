"""The key server's `show` views (keys documented in docs/operational-commands.md)."""

from __future__ import annotations

from groupvpn.runtime.views import Clock, JsonDict, selectors
from groupvpn.server.groups import GroupKeyServer


def registered_members(groups: GroupKeyServer, clock: Clock, group: str | None = None) -> JsonDict:
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


def ipsec_security_associations(groups: GroupKeyServer, clock: Clock) -> JsonDict:
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
                    **selectors(policy.source, policy.destination, policy.source_port,
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


def kek_security_associations(groups: GroupKeyServer, clock: Clock) -> JsonDict:
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
