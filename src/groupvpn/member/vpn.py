"""A member's group VPNs as the core tracks them: configuration, state, events, status.

Split from :mod:`groupvpn.member.core` (which re-exports the public names) so the
core module is only the coordination.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from groupvpn.config.model_groups import DEFAULT_HEARTBEAT_THRESHOLD
from groupvpn.gdoi.pull import PullInitiator, Registration
from groupvpn.gdoi.sender_ids import SenderId
from groupvpn.ike.sa import IkeSa
from groupvpn.member.keyring import KeyChange
from groupvpn.member.keys import GroupKek, GroupSa
from groupvpn.member.push_inbox import PushDropped
from groupvpn.member.rekeys import HeartbeatReceived, RekeyApplied

__all__ = [
    "GroupVpn",
    "MemberEvent",
    "Registered",
    "RegistrationFailed",
    "Reregistering",
    "VpnRecord",
    "VpnState",
    "VpnStatus",
]


@dataclass(frozen=True, slots=True)
class GroupVpn:
    """`[edit security group-vpn member ipsec vpn NAME]` as the core needs it."""

    name: str
    gateway: str
    group_id: int
    #: Heartbeats missed before registering again; 0 turns heartbeat detection off.
    heartbeat_threshold: int = DEFAULT_HEARTBEAT_THRESHOLD


class VpnState(enum.Enum):
    CONNECTING = "connecting"  # phase 1 to the key server in progress
    REGISTERING = "registering"  # GROUPKEY-PULL in progress
    REGISTERED = "registered"
    WAITING = "waiting to retry"


@dataclass(frozen=True, slots=True)
class Registered:
    vpn: str
    registration: Registration
    #: The registration's group SAs with their keys (no key material in repr).
    sas: tuple[GroupSa, ...] = ()
    #: The group KEK, when the group has server-member communication.
    kek: GroupKek | None = None
    #: How many of ``sas`` a scope policy accepted (the rest were discarded).
    installed: int = 0
    #: The sender ID the registration brought (AES-GCM, v2; None: none).
    sender_id: SenderId | None = None


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    vpn: str
    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class Reregistering:
    """A registered VPN registers again on its own (keys nearly out, heartbeats, ...)."""

    vpn: str
    reason: str
    #: Seconds it waits first (the core's ``reregistration_spread``).
    delay: float = 0.0


MemberEvent = (
    Registered
    | RegistrationFailed
    | Reregistering
    | RekeyApplied
    | HeartbeatReceived
    | PushDropped
    | KeyChange
)


@dataclass
class VpnRecord:
    """One VPN's registration progress (the core's mutable bookkeeping)."""

    config: GroupVpn
    state: VpnState = VpnState.WAITING
    pull: PullInitiator | None = None
    pull_sa: IkeSa | None = None
    last_sent: bytes | None = None
    retransmits: int = 0
    timer_at: float | None = 0.0  # start at once
    failures: int = 0
    last_error: str = ""
    registration: Registration | None = None
    registered_at: float | None = None
    #: Set when the server may have lost our IKE SA: the next attempt starts phase 1 anew.
    fresh_phase1: bool = False


@dataclass(frozen=True, slots=True)
class VpnStatus:
    """What `show security group-vpn member ike security-associations` reports per VPN."""

    vpn: str
    gateway: str
    group_id: int
    state: str
    failures: int
    last_error: str
    next_attempt: float | None
    registered_at: float | None
