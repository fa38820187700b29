"""The typed configuration model: what the rest of groupvpn reads.

Every object is a frozen dataclass built only from a configuration that passed all checks,
so fields hold final values: defaults applied, references resolved (a policy holds its
proposals, a gateway its policy), proposal sets expanded.  Algorithm and mode fields keep
the Junos keyword (``"3des-cbc"``); their ``Literal`` types are also the schema's list of
allowed keywords, so the two cannot drift apart.  Groups and member VPNs are in
:mod:`groupvpn.config.model_groups`, zones, policies and interfaces in
:mod:`groupvpn.config.model_security`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

from groupvpn.config.model_groups import IpsecProposal, MemberVpn, ServerGroup
from groupvpn.config.model_security import Interface, SecurityConfig

AuthenticationMethod = Literal["pre-shared-keys", "rsa-signatures"]
AuthenticationAlgorithm = Literal["md5", "sha1", "sha-256", "sha-384"]
EncryptionAlgorithm = Literal["des-cbc", "3des-cbc", "aes-128-cbc", "aes-192-cbc", "aes-256-cbc"]
DhGroup = Literal[1, 2, 5, 14]
IkeMode = Literal["main", "aggressive"]
IdentityKind = Literal["inet", "hostname", "user-at-hostname", "key-id"]
ProposalSet = Literal["basic", "compatible", "standard"]

# The Junos IKE Phase 1 SA lifetime when a proposal does not set one.
DEFAULT_IKE_LIFETIME_SECONDS = 28800


class Secret:
    """Key material that must never reach a log, an error message or ``show`` output.

    ``repr`` and ``str`` print ``<secret>``; only :meth:`reveal` gives the bytes.  This is
    deliberately not a dataclass, so ``dataclasses.asdict`` on a model cannot unpack it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return "<secret>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __len__(self) -> int:
        return len(self._value)


@dataclass(frozen=True, slots=True)
class IkeProposal:
    name: str
    authentication_method: AuthenticationMethod
    authentication_algorithm: AuthenticationAlgorithm
    dh_group: DhGroup
    encryption_algorithm: EncryptionAlgorithm
    lifetime_seconds: int = DEFAULT_IKE_LIFETIME_SECONDS
    description: str | None = None


@dataclass(frozen=True, slots=True)
class IkePolicy:
    name: str
    mode: IkeMode
    proposals: tuple[IkeProposal, ...]
    """In the order offered (``proposals [ ... ]`` order, or the proposal set's order)."""
    pre_shared_key: Secret
    description: str | None = None
    proposal_set: ProposalSet | None = None
    """The predefined set the proposals came from, if any."""


@dataclass(frozen=True, slots=True)
class Identity:
    kind: IdentityKind
    value: IPv4Address | str
    """An IPv4Address for ``inet``, the text otherwise."""


@dataclass(frozen=True, slots=True)
class IkeGateway:
    name: str
    policy: IkePolicy
    addresses: tuple[IPv4Address, ...]
    local_address: IPv4Address | None = None
    local_identity: Identity | None = None
    remote_identity: Identity | None = None


@dataclass(frozen=True, slots=True)
class IkeConfig:
    """``[edit security group-vpn (server | member) ike]``; the dicts keep file order.

    Plain dicts (not read-only proxies) so models can be copied, pickled and compared;
    treat them as read-only.
    """

    proposals: dict[str, IkeProposal]
    policies: dict[str, IkePolicy]
    gateways: dict[str, IkeGateway]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    ike: IkeConfig
    ipsec_proposals: dict[str, IpsecProposal] = field(default_factory=dict)
    groups: dict[str, ServerGroup] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberConfig:
    ike: IkeConfig
    vpns: dict[str, MemberVpn] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig | None
    member: MemberConfig | None
    co_location: bool = False
    security: SecurityConfig = field(default_factory=SecurityConfig)
    interfaces: dict[str, Interface] = field(default_factory=dict)


def predefined_proposal(
    name: str, dh_group: DhGroup, encryption: EncryptionAlgorithm, auth: AuthenticationAlgorithm
) -> IkeProposal:
    """One of Junos's built-in pre-shared-key proposals (lifetime 28800 s)."""
    return IkeProposal(name, "pre-shared-keys", auth, dh_group, encryption)


# Junos's predefined IKE proposal sets, in the order Junos offers them.
PROPOSAL_SETS: Mapping[ProposalSet, tuple[IkeProposal, ...]] = {
    "basic": (
        predefined_proposal("pre-g1-des-sha", 1, "des-cbc", "sha1"),
        predefined_proposal("pre-g1-des-md5", 1, "des-cbc", "md5"),
    ),
    "compatible": (
        predefined_proposal("pre-g2-3des-sha", 2, "3des-cbc", "sha1"),
        predefined_proposal("pre-g2-3des-md5", 2, "3des-cbc", "md5"),
        predefined_proposal("pre-g2-des-sha", 2, "des-cbc", "sha1"),
        predefined_proposal("pre-g2-des-md5", 2, "des-cbc", "md5"),
    ),
    "standard": (
        predefined_proposal("pre-g2-aes128-sha", 2, "aes-128-cbc", "sha1"),
        predefined_proposal("pre-g2-3des-sha", 2, "3des-cbc", "sha1"),
    ),
}
