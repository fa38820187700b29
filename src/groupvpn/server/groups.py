"""The key server's groups: who may join, what they get, and who has joined.

Pure state, no I/O: the server daemon feeds it GROUPKEY-PULL admissions and
commits.  A member is admitted to a group only if it authenticated through one
of that group's IKE gateways *and* asked for that group's ID; anyone else gets
a refusal with a reason (sent as a Notify) and leaves no record.  Records are
made only when the member proved, with HASH(3), that it received the policy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.gdoi.pull import GroupOffer, PullError
from groupvpn.ike.sa import IkeSa
from groupvpn.server.tek import GroupPolicySpec, Tek, new_tek
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import Doi, NotifyType
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi import GapPayload, GdoiSaPayload, KeyDownloadPayload, SaTekPayload
from groupvpn.wire.gdoi_numbers import GapAttribute, TekProtocol


@dataclass(frozen=True, slots=True)
class GroupDefinition:
    """A configured group, reduced to what the key server needs."""

    name: str
    group_id: int
    #: Names of the IKE gateways (members) allowed to register to this group.
    gateways: frozenset[str]
    policies: tuple[GroupPolicySpec, ...]
    activation_time_delay: int = 15
    server_address: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One registered member, as `show ... registered-members` lists it."""

    group: str
    group_id: int
    address: str
    gateway: str
    registered_at: float


@dataclass
class _GroupState:
    definition: GroupDefinition
    #: The current TEK of each group policy, by policy name.
    current: dict[str, Tek] = field(default_factory=dict)
    #: Every SPI handed out and not yet expired, so none is reused too early.
    spis: dict[bytes, float] = field(default_factory=dict)
    members: dict[str, MemberRecord] = field(default_factory=dict)


class GroupKeyServer:
    def __init__(self, groups: Iterable[GroupDefinition], dialect: Dialect) -> None:
        self.dialect = dialect
        self._groups: dict[int, _GroupState] = {}
        for group in groups:
            if group.group_id in self._groups:
                raise ValueError(f"group-id {group.group_id} configured twice")
            self._groups[group.group_id] = _GroupState(group)

    def admit(self, group_id: int, sa: IkeSa, now: float) -> GroupOffer | PullError:
        """Decide a GROUPKEY-PULL: the group's policy and keys, or why not."""
        state = self._groups.get(group_id)
        if state is None:
            return PullError(
                f"group-id {group_id} is not configured", NotifyType.INVALID_ID_INFORMATION
            )
        gateway = sa.policy.gateway
        if gateway not in state.definition.gateways:
            return PullError(
                f"IKE gateway {gateway} is not an ike-gateway of group {state.definition.name}",
                NotifyType.INVALID_ID_INFORMATION,
            )
        return self._offer(state, now)

    def commit(self, group_id: int, sa: IkeSa, now: float) -> MemberRecord:
        """Record a member whose HASH(3) verified (it has the policy; keys follow)."""
        state = self._groups[group_id]
        record = MemberRecord(state.definition.name, group_id, sa.peer[0], sa.policy.gateway, now)
        state.members[record.address] = record
        return record

    def definitions(self) -> list[GroupDefinition]:
        return [state.definition for state in self._groups.values()]

    def members(self, group: str | None = None) -> list[MemberRecord]:
        return [
            record
            for state in self._groups.values()
            if group is None or state.definition.name == group
            for record in state.members.values()
        ]

    def current_teks(self, group_id: int, now: float) -> list[Tek]:
        state = self._groups[group_id]
        return [self._tek(state, policy, now) for policy in state.definition.policies]

    # -- building what a member downloads -------------------------------------------

    def _offer(self, state: _GroupState, now: float) -> GroupOffer:
        teks = [self._tek(state, policy, now) for policy in state.definition.policies]
        v2 = self.dialect.has_gap
        sa_teks = tuple(
            SaTekPayload(
                TekProtocol.IPSEC_ESP,
                tek.sa_tek(now, address_preservation=v2),
                id_length_octets=self.dialect.sat_id_length_octets,
            )
            for tek in teks
        )
        gap = None
        if v2:
            # RFC 6407 tells members the activation delay in the GAP payload.
            gap = GapPayload(
                (
                    DataAttribute.basic(
                        GapAttribute.ACTIVATION_TIME_DELAY,
                        state.definition.activation_time_delay,
                    ),
                )
            )
        policy = GdoiSaPayload(Doi.GDOI, 0, kek=None, gap=gap, teks=sa_teks)
        keys = KeyDownloadPayload(tuple(tek.key_packet() for tek in teks))
        return GroupOffer(policy, keys, sequence=None)

    def _tek(self, state: _GroupState, policy: GroupPolicySpec, now: float) -> Tek:
        """The policy's current key, replaced by a fresh one once it has expired."""
        for spi, expires in list(state.spis.items()):
            if expires <= now:
                del state.spis[spi]
        tek = state.current.get(policy.name)
        if tek is None or tek.expires_at <= now:
            tek = new_tek(policy, now, set(state.spis))
            state.current[policy.name] = tek
            state.spis[tek.spi] = tek.expires_at
        return tek
