"""From the Junos configuration model to what the protocol cores need."""

from __future__ import annotations

from groupvpn.config.model import Config, Identity, IkeGateway, IkeProposal
from groupvpn.crypto.ciphers import CIPHERS
from groupvpn.crypto.dh import MODP_GROUPS
from groupvpn.crypto.hashes import HASHES
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.member.core import GroupVpn
from groupvpn.server.groups import GroupDefinition
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
    """The key server's groups.  The group statements join the configuration model next;
    until they do, a server answers phase 1 and refuses every GROUPKEY-PULL."""
    return []


def group_vpns(config: Config) -> list[GroupVpn]:
    """The member's group VPNs; see group_definitions."""
    return []
