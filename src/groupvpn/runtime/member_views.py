"""The group member's `show` views (keys documented in docs/operational-commands.md)."""

from __future__ import annotations

from collections.abc import Iterable

from groupvpn.gdoi.push import PushRejection
from groupvpn.member.core import MemberCore
from groupvpn.member.keyring import KeyState, KeyStatus
from groupvpn.member.keys import GroupKek
from groupvpn.member.rekeys import RekeyStatus
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


def ipsec_security_associations(keys: Iterable[KeyStatus], clock: Clock) -> JsonDict:
    """Every group SA the member holds: what each policy encrypts and decrypts with.

    A policy has at most two keys: the active one (encrypts and decrypts) and a
    pending (newer, decrypts until it activates) or retiring (older, decrypts
    until it goes) one.
    """
    return {
        "security-associations": [
            {
                "vpn": key.vpn,
                "group-id": key.group_id,
                "spi": key.spi.hex(),
                "encryption": key.cipher,
                "authentication": key.integrity,
                "sender-id": None if key.sender_id is None else key.sender_id.value,
                "anti-replay-window": key.anti_replay_window,
                "lifetime-remaining": clock.remaining(key.expires_at),
                **_selectors(key),
                "state": key.state.value,
                "activates-in": (
                    clock.remaining(key.activates_at)
                    if key.state is KeyState.PENDING and key.activates_at is not None
                    else None
                ),
                "removed-in": clock.remaining(key.removed_at),
                "delivery": key.delivery.value,
                "received": clock.utc(key.received_at),
            }
            for key in keys
        ]
    }


def _selectors(key: KeyStatus) -> JsonDict:
    policy = key.selectors
    return selectors(
        policy.source, policy.destination, policy.source_port, policy.destination_port,
        policy.protocol,
    )  # fmt: skip


def kek_security_associations(keks: Iterable[GroupKek], clock: Clock) -> JsonDict:
    """The KEK each group VPN holds, and the last SEQ accepted under it."""
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


def member_kek_security_associations(cores: Iterable[MemberCore], clock: Clock) -> JsonDict:
    """`kek_security_associations` with the rekeys, heartbeats and drops of each core."""
    cores = list(cores)
    statuses = [status for core in cores for status in core.rekey_status(clock.now)]
    view = kek_security_associations((status.kek for status in statuses), clock)
    for row, status in zip(view["security-associations"], statuses, strict=True):
        row.update(_rekey_fields(status, clock))
    drops = {reason.value: 0 for reason in PushRejection}
    for core in cores:
        for reason, count in core.push_drops.counts.items():
            drops[reason] = drops.get(reason, 0) + count
    view["push-rejections"] = drops
    return view


def _rekey_fields(status: RekeyStatus, clock: Clock) -> JsonDict:
    kek = status.kek
    group = kek.multicast_group
    return {
        "communication-type": "unicast" if group is None else "multicast",
        "acks-requested": kek.acks_requested,
        "rekeys-received": status.rekeys,
        "heartbeats-received": status.heartbeats,
        "acks-sent": status.acks_sent,
        "heartbeat-interval": kek.heartbeat_interval,
        "heartbeat-threshold": status.heartbeat_threshold,
        "heartbeat-detection": status.watching,
        "heartbeat-last-heard": None if status.last_heard is None else clock.utc(status.last_heard),
        "heartbeats-missed": status.heartbeats_missed,
        # The group clock for anti-replay, in milliseconds like on the wire.
        "group-time": None if status.group_time is None else int(status.group_time * 1000),
    }
