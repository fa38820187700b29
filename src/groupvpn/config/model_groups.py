"""Model of the Group VPN groups: the server's IPsec proposals and groups, the member's VPNs.

Built only from checked configurations, like :mod:`groupvpn.config.model`: defaults
applied and references resolved (a group holds its IKE gateways, an ``ipsec-sa`` its
proposal, a member VPN its gateway).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from groupvpn.config.model import IkeGateway

#: `server-member-communication encryption-algorithm`: the KEK's CBC ciphers.
KekEncryptionAlgorithm = Literal["des-cbc", "3des-cbc", "aes-128-cbc", "aes-192-cbc", "aes-256-cbc"]
#: `ipsec proposal encryption-algorithm`: the CBC ciphers, and AES-GCM under the keywords
#: of `[edit security ipsec proposal]` (v2 dialect only: it needs sender IDs).
IpsecEncryptionAlgorithm = Literal[
    "des-cbc", "3des-cbc", "aes-128-cbc", "aes-192-cbc", "aes-256-cbc",
    "aes-128-gcm", "aes-256-gcm",
]  # fmt: skip
#: The combined modes: they authenticate, so a proposal with one has no
#: `authentication-algorithm`.
COMBINED_ENCRYPTION_ALGORITHMS = frozenset({"aes-128-gcm", "aes-256-gcm"})
IpsecAuthenticationAlgorithm = Literal["hmac-md5-96", "hmac-sha1-96", "hmac-sha-256-128"]
SigHashAlgorithm = Literal["md5", "sha1", "sha-256"]
CommunicationType = Literal["unicast", "multicast"]

DEFAULT_IPSEC_LIFETIME_SECONDS = 3600
DEFAULT_ACTIVATION_TIME_DELAY = 15
DEFAULT_ANTI_REPLAY_TIME_WINDOW = 100
DEFAULT_KEK_LIFETIME_SECONDS = 3600
DEFAULT_HEARTBEAT = 300
DEFAULT_NUMBER_OF_RETRANSMISSION = 2
DEFAULT_RETRANSMISSION_PERIOD = 10
DEFAULT_HEARTBEAT_THRESHOLD = 3
# The spec: IPsec and KEK lifetimes must be at least this many activation-time-delays.
LIFETIME_PER_ACTIVATION_DELAY = 10


@dataclass(frozen=True, slots=True)
class IpsecProposal:
    """``[edit security group-vpn server ipsec proposal NAME]``."""

    name: str
    encryption_algorithm: IpsecEncryptionAlgorithm
    #: None exactly with AES-GCM (a combined mode).
    authentication_algorithm: IpsecAuthenticationAlgorithm | None
    lifetime_seconds: int = DEFAULT_IPSEC_LIFETIME_SECONDS
    description: str | None = None


@dataclass(frozen=True, slots=True)
class MatchPolicy:
    """One group policy; ports and protocol 0 mean any, ``0.0.0.0/0`` any address."""

    name: str
    source: IPv4Network
    destination: IPv4Network
    source_port: int = 0
    destination_port: int = 0
    protocol: int = 0

    @property
    def selector(self) -> tuple[IPv4Network, IPv4Network, int, int, int]:
        """What makes two group policies identical."""
        return (
            self.source,
            self.destination,
            self.source_port,
            self.destination_port,
            self.protocol,
        )


@dataclass(frozen=True, slots=True)
class IpsecSa:
    """``ipsec-sa NAME``: a proposal and the group policies keyed with it, in file order."""

    name: str
    proposal: IpsecProposal
    match_policies: tuple[MatchPolicy, ...]


@dataclass(frozen=True, slots=True)
class ServerMemberCommunication:
    """``server-member-communication``: how the server pushes rekeys (the KEK)."""

    encryption_algorithm: KekEncryptionAlgorithm
    sig_hash_algorithm: SigHashAlgorithm
    communication_type: CommunicationType = "unicast"
    lifetime_seconds: int = DEFAULT_KEK_LIFETIME_SECONDS
    heartbeat: int = DEFAULT_HEARTBEAT
    number_of_retransmission: int = DEFAULT_NUMBER_OF_RETRANSMISSION
    retransmission_period: int = DEFAULT_RETRANSMISSION_PERIOD
    multicast_group: IPv4Address | None = None
    multicast_outgoing_interface: str | None = None
    certificate: str | None = None


@dataclass(frozen=True, slots=True)
class ServerGroup:
    """``[edit security group-vpn server group NAME]``."""

    name: str
    group_id: int
    ike_gateways: tuple[IkeGateway, ...]
    """The members allowed to register, in file order."""
    ipsec_sas: tuple[IpsecSa, ...]
    server_address: IPv4Address | None = None
    activation_time_delay: int = DEFAULT_ACTIVATION_TIME_DELAY
    anti_replay_time_window: int | None = DEFAULT_ANTI_REPLAY_TIME_WINDOW
    """Seconds; None with ``no-anti-replay``."""
    server_member_communication: ServerMemberCommunication | None = None
    description: str | None = None

    @property
    def match_policies(self) -> tuple[tuple[IpsecSa, MatchPolicy], ...]:
        """Every group policy of the group with its ``ipsec-sa``, in file order."""
        return tuple((sa, policy) for sa in self.ipsec_sas for policy in sa.match_policies)


@dataclass(frozen=True, slots=True)
class MemberVpn:
    """``[edit security group-vpn member ipsec vpn NAME]``."""

    name: str
    ike_gateway: IkeGateway
    group_id: int
    external_interface: str | None = None
    heartbeat_threshold: int = DEFAULT_HEARTBEAT_THRESHOLD
