"""Build the group model objects (server IPsec proposals and groups, member VPNs) from a
checked tree; see :mod:`groupvpn.config.loader` for the conventions."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import TypeVar, cast

from groupvpn.config import model_groups as mg
from groupvpn.config.model import IkeGateway
from groupvpn.config.tree import Node

T = TypeVar("T")


def get(node: Node, keyword: str, kind: type[T]) -> T:
    """A leaf's value (or default) of the expected type; a gap in the checks fails loudly."""
    value = node.value(keyword)
    if not isinstance(value, kind):
        raise AssertionError(f"{' '.join(node.path)} {keyword}: expected {kind.__name__}")
    return value


def optional(node: Node, keyword: str, kind: type[T]) -> T | None:
    return get(node, keyword, kind) if node.value(keyword) is not None else None


def _name(node: Node) -> str:
    assert node.name is not None
    return node.name


def ipsec_proposal(node: Node) -> mg.IpsecProposal:
    return mg.IpsecProposal(
        name=_name(node),
        encryption_algorithm=cast(
            mg.IpsecEncryptionAlgorithm, get(node, "encryption-algorithm", str)
        ),
        authentication_algorithm=cast(
            mg.IpsecAuthenticationAlgorithm | None, optional(node, "authentication-algorithm", str)
        ),
        lifetime_seconds=get(node, "lifetime-seconds", int),
        description=optional(node, "description", str),
    )


def _match_policy(node: Node) -> mg.MatchPolicy:
    return mg.MatchPolicy(
        name=_name(node),
        source=get(node, "source", IPv4Network),
        destination=get(node, "destination", IPv4Network),
        source_port=get(node, "source-port", int),
        destination_port=get(node, "destination-port", int),
        protocol=get(node, "protocol", int),
    )


def _ipsec_sa(node: Node, proposals: dict[str, mg.IpsecProposal]) -> mg.IpsecSa:
    return mg.IpsecSa(
        name=_name(node),
        proposal=proposals[get(node, "proposal", str)],
        match_policies=tuple(_match_policy(p) for p in node.objects("match-policy").values()),
    )


def _server_member_communication(node: Node) -> mg.ServerMemberCommunication:
    return mg.ServerMemberCommunication(
        encryption_algorithm=cast(
            mg.KekEncryptionAlgorithm, get(node, "encryption-algorithm", str)
        ),
        sig_hash_algorithm=cast(mg.SigHashAlgorithm, get(node, "sig-hash-algorithm", str)),
        communication_type=cast(mg.CommunicationType, get(node, "communication-type", str)),
        lifetime_seconds=get(node, "lifetime-seconds", int),
        heartbeat=get(node, "heartbeat", int),
        number_of_retransmission=get(node, "number-of-retransmission", int),
        retransmission_period=get(node, "retransmission-period", int),
        multicast_group=optional(node, "multicast-group", IPv4Address),
        multicast_outgoing_interface=optional(node, "multicast-outgoing-interface", str),
        certificate=optional(node, "certificate", str),
    )


def server_group(
    node: Node, gateways: dict[str, IkeGateway], proposals: dict[str, mg.IpsecProposal]
) -> mg.ServerGroup:
    smc = node.container("server-member-communication")
    # The spec's Group VPNv2 interop: "disabled ... with the deactivate security
    # group-vpn server group group-name anti-replay-time-window command".
    no_anti_replay = "no-anti-replay" in node.leaves or "anti-replay-time-window" in node.inactive
    return mg.ServerGroup(
        name=_name(node),
        group_id=get(node, "group-id", int),
        ike_gateways=tuple(gateways[str(g)] for g in node.values("ike-gateway")),
        ipsec_sas=tuple(_ipsec_sa(sa, proposals) for sa in node.objects("ipsec-sa").values()),
        server_address=optional(node, "server-address", IPv4Address),
        activation_time_delay=get(node, "activation-time-delay", int),
        anti_replay_time_window=None
        if no_anti_replay
        else get(node, "anti-replay-time-window", int),
        server_member_communication=_server_member_communication(smc) if smc else None,
        description=optional(node, "description", str),
    )


def member_vpn(node: Node, gateways: dict[str, IkeGateway]) -> mg.MemberVpn:
    return mg.MemberVpn(
        name=_name(node),
        ike_gateway=gateways[get(node, "ike-gateway", str)],
        group_id=get(node, "group", int),
        external_interface=optional(node, "group-vpn-external-interface", str),
        # The spec: heartbeat detection "must be disabled on the Group VPNv1 member with
        # the deactivate ... heartbeat-threshold command"; 0 is off.
        heartbeat_threshold=0
        if "heartbeat-threshold" in node.inactive
        else get(node, "heartbeat-threshold", int),
    )
