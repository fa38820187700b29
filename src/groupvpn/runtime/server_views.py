"""The key server's `show` views (keys documented in docs/operational-commands.md)."""

from __future__ import annotations

from groupvpn.runtime.views import Clock, JsonDict, selectors
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.rekey_events import RekeySent
from groupvpn.server.rekeying import KeyServerRekeying, registered_state


def registered_members(
    groups: GroupKeyServer,
    clock: Clock,
    group: str | None = None,
    rekeying: KeyServerRekeying | None = None,
) -> JsonDict:
    """Each group's members, and how each follows the rekeys (spec semantics per type).

    Unicast: only members that keep ACKing (one that stops is removed); multicast:
    everyone who registered since the configuration was made; without
    `server-member-communication`: everyone who registered, active or not.
    """
    by_group: dict[str, JsonDict] = {}
    statuses = {}
    for definition in groups.definitions():
        if group is None or definition.name == group:
            kek = definition.kek
            by_group[definition.name] = {
                "group": definition.name,
                "group-id": definition.group_id,
                "communication-type": None if kek is None else kek.communication_type,
                "members": [],
            }
            if rekeying is not None:
                statuses[definition.name] = rekeying.member_statuses(definition.group_id)
    for record in groups.members(group):
        status = statuses.get(record.group, {}).get(record.address)
        by_group[record.group]["members"].append(
            {
                "address": record.address,
                "gateway": record.gateway,
                "registered": clock.utc(record.registered_at),
                "sender-id": None if record.sender_id is None else record.sender_id.value,
                "state": registered_state(status),
                "last-acked-sequence": None if status is None else status.last_acked_seq,
                "last-ack": (
                    None
                    if status is None or status.last_ack_at is None
                    else clock.utc(status.last_ack_at)
                ),
                "pending-sequence": None if status is None else status.pending_seq,
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
                    "authentication": None if policy.integrity is None else policy.integrity.name,
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


def kek_security_associations(
    groups: GroupKeyServer, clock: Clock, rekeying: KeyServerRekeying | None = None
) -> JsonDict:
    """Each group's KEK (the rekey SA) and SEQ; groups without one are not listed.

    With the daemon's rekeying, each also says when the next scheduled rekey
    and the next heartbeat go out.
    """
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
        if rekeying is not None:
            rows[-1]["next-rekey-seconds"] = clock.remaining(
                rekeying.next_rekey_at(status.group_id)
            )
            rows[-1]["next-heartbeat-seconds"] = clock.remaining(
                rekeying.next_heartbeat_at(status.group_id)
            )
    return {"security-associations": rows}


def rekey_sent(sent: RekeySent) -> JsonDict:
    """What a requested rekey (operator or reload) sent: group, SEQ, why, to whom."""
    return {
        "group": sent.group,
        "group-id": sent.group_id,
        "sequence": sent.seq,
        "reasons": list(sent.reasons),
        "members": sent.members,
        "multicast-destination": sent.destination,
        "new-teks": list(sent.renewed),
        "kek-rollover": sent.kek_rollover,
        "kek-deleted": sent.kek_deleted,
    }
