"""One group's state at the key server, and how it goes to and comes back from disk.

``server.groups.GroupKeyServer`` owns one :class:`GroupState` per configured
group.  :func:`snapshot_group` and :func:`snapshot_member` turn it into the plain
values of ``server.snapshot`` (wall-clock times); :func:`restore_group` puts a
stored group back into a fresh state built from the *current* configuration.

A stored key is restored only under the same policy it was made for (its
policy's ``repr`` must be identical): a key handed out for other selectors or
another algorithm must not come back.  A policy changed while the server was
stopped gets a fresh key, and its old TEK is withdrawn by the first push, as a
reload would (``restore_group`` says which, so the daemon can push).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.config.model_groups import DEFAULT_ANTI_REPLAY_TIME_WINDOW
from groupvpn.gdoi.push_ack import AckKey
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.gdoi.sender_ids import SenderId
from groupvpn.server.delivery import DeliverySettings
from groupvpn.server.kek import Kek, KekPolicy
from groupvpn.server.snapshot import (
    SENDER_ID_RESERVATION,
    SEQ_RESERVATION,
    GroupSnapshot,
    KeySnapshot,
    MemberSnapshot,
)
from groupvpn.server.tek import GroupPolicySpec, Tek
from groupvpn.wire.gdoi import KeyPacket, SaTekPayload

#: The GDOI port, where rekeys come from and go to unless the daemon says otherwise.
GDOI_PORT = 848


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
    #: `server-member-communication`: the group has a KEK and a SEQ; None: neither.
    kek: KekPolicy | None = None
    #: `number-of-retransmission` and `retransmission-period` (unicast rekeys).
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    #: `multicast-outgoing-interface` (the Junos name) and its address, resolved
    #: through `[edit interfaces]`; None when it names no configured address.
    multicast_interface: str | None = None
    multicast_interface_address: IPv4Address | None = None
    #: `anti-replay-time-window` in seconds; None with `no-anti-replay`.
    anti_replay_time_window: int | None = DEFAULT_ANTI_REPLAY_TIME_WINDOW


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One registered member, as `show ... registered-members` lists it."""

    group: str
    group_id: int
    address: str
    gateway: str
    registered_at: float
    #: The sender ID this registration got (counter modes, v2), if it asked for one.
    sender_id: SenderId | None = None
    #: The UDP port its registration came from (where unicast rekeys go) and the
    #: key server's address it reached (where they come from).
    peer_port: int = GDOI_PORT
    local_address: str | None = None


@dataclass
class GroupState:
    definition: GroupDefinition
    #: The current TEK of each group policy, by policy name.
    current: dict[str, Tek] = field(default_factory=dict)
    #: Every SPI handed out and not yet expired, so none is reused too early.
    spis: dict[bytes, float] = field(default_factory=dict)
    members: dict[str, MemberRecord] = field(default_factory=dict)
    #: The group's current KEK (None until first needed, or without a KEK policy).
    kek: Kek | None = None
    #: The KEK the last rollover replaced: copies of that rollover push, and their
    #: ACKs, still name it until it expires.
    previous_kek: Kek | None = None
    #: Each member's ACK key (secret), by address, made when its HASH(3) verified.
    ack_keys: dict[str, AckKey] = field(default_factory=dict, repr=False)
    #: SPIs of TEKs whose group policy a reload deleted or changed: the next push deletes them.
    withdrawn_spis: list[bytes] = field(default_factory=list)
    #: The rekey sequence number: 0 until the first GROUPKEY-PUSH, which sends 1
    #: (gdoi-wire.md §4.6).  Registrations carry the current value as the baseline.
    sequence: int = 0
    #: SEQs up to this one are reserved on disk (``server.snapshot``): the next
    #: push beyond it must reserve a new block first.
    sequence_reserved: int = 0
    #: The SA TEKs and TEK key packets last offered, with what they were built from
    #: (the TEKs' SPIs and remaining seconds).  A burst of registrations gets the
    #: same octets, so they are built once per second rather than once per member.
    offered_teks: tuple[object, tuple[SaTekPayload, ...], tuple[KeyPacket, ...]] | None = None
    #: The next sender ID to hand out: every registration that asks gets a new one,
    #: and none is ever given twice (``server.groups`` module docstring).
    next_sender_id: int = 0
    #: Sender IDs below this are reserved on disk.
    sender_ids_reserved: int = 0

    def take_sequence(self) -> tuple[int, bool]:
        """The next SEQ, and whether a new block had to be reserved for it."""
        self.sequence += 1
        if self.sequence <= self.sequence_reserved:
            return self.sequence, False
        self.sequence_reserved = self.sequence + SEQ_RESERVATION - 1
        return self.sequence, True

    def take_sender_id(self) -> tuple[int, bool]:
        """The next sender ID value, and whether a new block had to be reserved for it."""
        value = self.next_sender_id
        self.next_sender_id = value + 1
        if value < self.sender_ids_reserved:
            return value, False
        self.sender_ids_reserved = value + SENDER_ID_RESERVATION
        return value, True


def snapshot_group(state: GroupState, clock_offset: float) -> GroupSnapshot:
    """The group as stored: keys and lifetimes in wall time (core time + ``clock_offset``)."""

    def wall(t: float) -> float:
        return t + clock_offset

    def tek(key: Tek) -> KeySnapshot:
        return KeySnapshot(repr(key.policy), key.spi, key.encryption_key, key.integrity_key,
                           wall(key.created_at), wall(key.expires_at))  # fmt: skip

    def kek(key: Kek | None) -> KeySnapshot | None:
        if key is None:
            return None
        return KeySnapshot(repr(key.policy), key.spi, key.key, key.iv,
                           wall(key.created_at), wall(key.expires_at))  # fmt: skip

    return GroupSnapshot(
        group_id=state.definition.group_id,
        name=state.definition.name,
        sequence_reserved=state.sequence_reserved,
        sender_ids_reserved=state.sender_ids_reserved,
        teks={name: tek(key) for name, key in state.current.items()},
        kek=kek(state.kek),
        previous_kek=kek(state.previous_kek),
        tek_spis={spi: expires + clock_offset for spi, expires in state.spis.items()},
        withdrawn_spis=tuple(state.withdrawn_spis),
    )


def snapshot_member(state: GroupState, address: str, clock_offset: float) -> MemberSnapshot | None:
    record = state.members.get(address)
    if record is None:
        return None
    ack_key = state.ack_keys.get(address)
    sender_id = record.sender_id
    return MemberSnapshot(
        group_id=record.group_id,
        address=address,
        gateway=record.gateway,
        registered_at=record.registered_at + clock_offset,
        peer_port=record.peer_port,
        local_address=record.local_address,
        sender_id=None if sender_id is None else (sender_id.value, sender_id.bits),
        ack_key=None if ack_key is None else ack_key.key,
    )


@dataclass(frozen=True, slots=True)
class RestoredGroup:
    """What came back of one group, for the log and for the first push."""

    group: str
    teks: tuple[str, ...]  # policies whose key came back
    fresh: tuple[str, ...]  # policies whose stored key was made for another policy
    kek_restored: bool
    members: int
    sequence: int  # the SEQ the next push goes beyond

    def describe(self) -> str:
        parts = [f"SEQ continues after {self.sequence}",
                 f"{len(self.teks)} TEK(s) restored", f"{self.members} member(s)"]  # fmt: skip
        parts.append("KEK restored" if self.kek_restored else "no KEK restored")
        if self.fresh:
            parts.append(f"changed while stopped, new keys: {', '.join(self.fresh)}")
        return "; ".join(parts)


def restore_group(
    state: GroupState,
    stored: GroupSnapshot,
    members: list[MemberSnapshot],
    clock_offset: float,
    now: float,
) -> RestoredGroup:
    """Put ``stored`` into ``state`` (fresh, from the current configuration).

    SEQ and sender IDs always continue after the stored reservation, whatever
    else changed: they must never be reused.  Expired keys are not restored;
    keys of policies changed meanwhile are withdrawn by the next push.
    """
    definition = state.definition
    state.sequence = state.sequence_reserved = stored.sequence_reserved
    state.next_sender_id = state.sender_ids_reserved = stored.sender_ids_reserved

    def local(wall: float) -> float:
        return wall - clock_offset

    state.spis = {spi: local(t) for spi, t in stored.tek_spis.items() if local(t) > now}
    policies = {policy.name: policy for policy in definition.policies}
    restored, fresh = [], []
    for name, key in stored.teks.items():
        policy = policies.get(name)
        if local(key.expires_at) <= now:
            continue
        if policy is None or repr(policy) != key.policy:
            fresh.append(name)
            if definition.kek is not None:  # only pushes delete keys
                state.withdrawn_spis.append(key.spi)
            continue
        state.current[name] = Tek(policy, key.spi, key.key, key.extra,
                                  local(key.created_at), local(key.expires_at))  # fmt: skip
        state.spis[key.spi] = local(key.expires_at)
        restored.append(name)
    state.withdrawn_spis += [spi for spi in stored.withdrawn_spis if spi in state.spis]

    kek_policy = definition.kek
    for slot, stored_kek in (("kek", stored.kek), ("previous_kek", stored.previous_kek)):
        if kek_policy is None or stored_kek is None or stored_kek.policy != repr(kek_policy):
            continue
        if local(stored_kek.expires_at) <= now:
            continue
        kek = Kek(kek_policy, stored_kek.spi, stored_kek.key, stored_kek.extra,
                  local(stored_kek.created_at), local(stored_kek.expires_at))  # fmt: skip
        setattr(state, slot, kek)
    if state.kek is None:
        state.previous_kek = None  # ACKs of an old rollover cannot matter any more

    count = 0
    for member in members:
        if member.gateway not in definition.gateways:
            continue  # its IKE gateway left the group while the server was stopped
        sender_id = None if member.sender_id is None else SenderId(*member.sender_id)
        state.members[member.address] = MemberRecord(
            definition.name, definition.group_id, member.address, member.gateway,
            local(member.registered_at), sender_id, member.peer_port, member.local_address,
        )  # fmt: skip
        if state.kek is not None and member.ack_key is not None:
            algorithm = sig_hash(state.kek.policy.sig_hash.algorithm)
            state.ack_keys[member.address] = AckKey(algorithm, member.ack_key)
        count += 1
    return RestoredGroup(definition.name, tuple(restored), tuple(fresh),
                         state.kek is not None, count, state.sequence)  # fmt: skip
