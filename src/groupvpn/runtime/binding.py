"""From the Junos configuration model to what the protocol cores need."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from groupvpn.config.model import Config, Identity, IkeGateway, IkeProposal
from groupvpn.config.model_groups import ServerGroup, ServerMemberCommunication
from groupvpn.crypto.ciphers import CIPHERS
from groupvpn.crypto.dh import MODP_GROUPS
from groupvpn.crypto.hashes import HASHES
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.member.core import GroupVpn
from groupvpn.policy import Application, PortRange, SecurityPolicy
from groupvpn.server.delivery import DeliverySettings
from groupvpn.server.groups import GroupDefinition
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec
from groupvpn.wire.constants import Doi
from groupvpn.wire.payloads import IdPayload

PHASE1_DOIS = {"gdoi": Doi.GDOI, "ipsec": Doi.IPSEC}


def phase1_proposal(proposal: IkeProposal) -> Phase1Proposal:
    return Phase1Proposal(
        encryption=CIPHERS[proposal.encryption_algorithm],
        hash=HASHES[proposal.authentication_algorithm],
        dh_group=MODP_GROUPS[proposal.dh_group],
        lifetime_seconds=proposal.lifetime_seconds,
    )


def identity_payload(identity: Identity | None) -> IdPayload | None:
    """Junos ``local-identity``/``remote-identity`` as an ID payload (RFC 2407 §4.6.2)."""
    if identity is None:
        return None
    if identity.kind == "inet":
        return IdPayload.ipv4(str(identity.value))
    if identity.kind == "hostname":
        return IdPayload.fqdn(str(identity.value))
    if identity.kind == "user-at-hostname":
        return IdPayload.user_fqdn(str(identity.value))
    return IdPayload.key_id(str(identity.value).encode())


def phase1_peer(gateway: IkeGateway, doi: int = Doi.GDOI) -> Phase1Peer:
    return Phase1Peer(
        gateway=gateway.name,
        addresses=tuple(gateway.addresses),
        mode=gateway.policy.mode,
        proposals=tuple(phase1_proposal(p) for p in gateway.policy.proposals),
        pre_shared_key=gateway.policy.pre_shared_key.reveal(),
        local_identity=identity_payload(gateway.local_identity),
        remote_identity=identity_payload(gateway.remote_identity),
        doi=doi,
    )


def group_definitions(config: Config) -> list[GroupDefinition]:
    """`[edit security group-vpn server group]` as the key server core's groups."""
    if config.server is None:
        return []
    return [group_definition(config, group) for group in config.server.groups.values()]


def group_definition(config: Config, group: ServerGroup) -> GroupDefinition:
    smc = group.server_member_communication
    definition = GroupDefinition(
        name=group.name,
        group_id=group.group_id,
        gateways=frozenset(gateway.name for gateway in group.ike_gateways),
        policies=tuple(
            GroupPolicySpec(
                name=match.name,
                source=match.source,
                destination=match.destination,
                source_port=match.source_port,
                destination_port=match.destination_port,
                protocol=match.protocol,
                cipher=ESP_CIPHERS[sa.proposal.encryption_algorithm],
                integrity=(
                    None
                    if sa.proposal.authentication_algorithm is None
                    else ESP_INTEGRITY[sa.proposal.authentication_algorithm]
                ),
                lifetime_seconds=sa.proposal.lifetime_seconds,
            )
            for sa in group.ipsec_sas
            for match in sa.match_policies
        ),
        activation_time_delay=group.activation_time_delay,
        server_address=group.server_address,
        kek=kek_policy(smc),
        anti_replay_time_window=group.anti_replay_time_window,
    )
    if smc is None:
        return definition
    # How rekeys leave: retransmissions (unicast), the multicast interface and its address.
    interface = smc.multicast_outgoing_interface if smc.communication_type == "multicast" else None
    return replace(
        definition,
        delivery=DeliverySettings(
            number_of_retransmission=smc.number_of_retransmission,
            retransmission_period=float(smc.retransmission_period),
        ),
        multicast_interface=interface,
        multicast_interface_address=(
            None if interface is None else interface_address(config, interface)
        ),
    )


def interface_address(config: Config, name: str) -> IPv4Address | None:
    """The first IPv4 address of a Junos logical interface (``ge-0/0/1.0``; no unit: 0)."""
    physical, _, unit = name.partition(".")
    interface = config.interfaces.get(physical)
    if interface is None or not (unit or "0").isdigit():
        return None
    found = interface.units.get(int(unit or "0"))
    if found is None or not found.addresses:
        return None
    return found.addresses[0].ip


def kek_policy(smc: ServerMemberCommunication | None) -> KekPolicy | None:
    """`server-member-communication` as the group's KEK policy (none: no KEK, no SEQ)."""
    if smc is None:
        return None
    multicast = smc.communication_type == "multicast"
    return KekPolicy(
        cipher=KEK_CIPHERS[smc.encryption_algorithm],
        sig_hash=SIG_HASHES[smc.sig_hash_algorithm],
        lifetime_seconds=smc.lifetime_seconds,
        multicast_group=smc.multicast_group if multicast else None,
        heartbeat=smc.heartbeat,
        # Unicast rekeys are acknowledged; multicast ones are not (the spec).
        acks_requested=not multicast,
    )


def group_vpns(config: Config) -> list[GroupVpn]:
    """`[edit security group-vpn member ipsec vpn]` as the member core's VPNs."""
    if config.member is None:
        return []
    return [
        GroupVpn(vpn.name, vpn.ike_gateway.name, vpn.group_id)
        for vpn in config.member.vpns.values()
    ]


def security_policies(config: Config) -> list[SecurityPolicy]:
    """`[edit security policies]`, in Junos order, for the scope-policy decision."""
    return [
        SecurityPolicy(
            name=policy.name,
            from_zone=policy.from_zone,
            to_zone=policy.to_zone,
            sources=policy.source_addresses,
            destinations=policy.destination_addresses,
            applications=tuple(
                Application(
                    app.name,
                    app.protocol,
                    PortRange(*app.source_ports),
                    PortRange(*app.destination_ports),
                )
                for app in policy.applications
            ),
            action=policy.action,
            group_vpn=policy.group_vpn,
        )
        for policy in config.security.policies
    ]
