"""The key server's groups: who may join, what they get, and who has joined.

Pure state, no I/O: the server daemon feeds it GROUPKEY-PULL admissions and
commits.  A member is admitted to a group only if it authenticated through one
of that group's IKE gateways *and* asked for that group's ID; anyone else gets
a refusal with a reason (sent as a Notify) and leaves no record.  Records are
made only when the member proved, with HASH(3), that it received the policy.

A group with `server-member-communication` also has a KEK (the rekey SA) and a
SEQ counter: the offer then carries the SA KEK first in the SA, the KD KEK
packet first in the KD, and the current SEQ (gdoi-wire.md §4.1, §4.5, §5.1).
Every SA TEK of an offer carries the group clock (docs/rekey-wire.md §4).

For rekeys (``server.rekeying`` decides when) it hands out SEQs, replaces TEKs
and the KEK, and says what a push carries: the group's whole current policy set,
the next KEK on a rollover, and (v2) Deletes for the keys of withdrawn policies.
It also keeps each member's ACK key, derived when HASH(3) verified; the key is
secret and never appears in a repr, a view or a log.

Sender IDs (v2, RFC 6054 / RFC 6407 §5.6.4): a member that asks in PULL message 3
gets one fresh SID of its group, from a counter that only goes up, 0, 1, 2, ...
(:meth:`GroupKeyServer.grant_sender_ids`).  A member keeps its SID for every key
of the group, pushed ones too, until it registers again (then it gets a new one),
so a SID handed out is never handed out again: no two senders ever share a GCM
nonce under any key of ours.  The count is persisted with the keys, reserved
ahead like SEQ (``server.snapshot``), so a restarted key server that continues
with the same keys continues the count too.  When a group has
given out all 2^24 SIDs, further registrations that ask for one are refused with a
Notify and a log line (docs/rekey-wire.md §6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from groupvpn.gdoi.pull import GroupOffer, PullError
from groupvpn.gdoi.push import PushContent, stamp_group_clock
from groupvpn.gdoi.push_ack import AckKey, derive_ack_key
from groupvpn.gdoi.push_deletes import tek_delete
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId
from groupvpn.ike.sa import IkeSa
from groupvpn.server.group_state import GDOI_PORT as GDOI_PORT  # re-exported
from groupvpn.server.group_state import GroupDefinition as GroupDefinition
from groupvpn.server.group_state import (
    GroupState,
    RestoredGroup,
    restore_group,
    snapshot_group,
    snapshot_member,
)
from groupvpn.server.group_state import MemberRecord as MemberRecord
from groupvpn.server.kek import Kek, new_kek
from groupvpn.server.reconfigure import GroupChange, diff_groups
from groupvpn.server.signing import SigningKey
from groupvpn.server.snapshot import GroupSnapshot, MemberSnapshot, StateChanges
from groupvpn.server.tek import GroupPolicySpec, Tek, new_tek
from groupvpn.wire.attributes import DataAttribute
from groupvpn.wire.constants import Doi, NotifyType
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi import (
    GapPayload,
    GdoiId,
    GdoiSaPayload,
    KeyDownloadPayload,
    KeyPacket,
    SaKekPayload,
    SaTekPayload,
)
from groupvpn.wire.gdoi_numbers import GapAttribute, TekProtocol
from groupvpn.wire.payloads import DeletePayload


def counter_mode_problem(group: GroupDefinition, dialect: Dialect) -> str | None:
    """Why ``group`` cannot run in ``dialect``: a counter-mode cipher without sender IDs.

    AES-GCM with a key shared by the whole group is safe only with sender IDs
    (RFC 6054), and only RFC 6407 (v2) carries them.
    """
    if dialect.sender_ids:
        return None
    for policy in group.policies:
        if policy.cipher.counter_mode:
            return (
                f"group {group.name}: match-policy {policy.name} uses {policy.cipher.name}, "
                f"which needs sender IDs (RFC 6054) that only the v2 dialect (RFC 6407) "
                f"hands out; run the key server with --dialect v2 or use a CBC proposal"
            )
    return None


@dataclass(frozen=True, slots=True)
class Eviction:
    """What a member removal withdraws: the KEK pushes went under, and the old TEKs."""

    kek: Kek
    tek_spis: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class KekStatus:
    """A group's KEK and SEQ, as `show ... server kek security-associations` lists them."""

    group: str
    group_id: int
    kek: Kek
    sequence: int
    signature_bits: int
    #: Identifies the signing key members verify rekeys with (see SigningKey.fingerprint).
    signing_key_fingerprint: str


class GroupKeyServer:
    def __init__(
        self,
        groups: Iterable[GroupDefinition],
        dialect: Dialect,
        *,
        signing_key: SigningKey | None = None,
        port: int = GDOI_PORT,
        clock_offset: float = 0.0,
    ) -> None:
        self.dialect = dialect
        self.signing_key = signing_key
        #: The key server's UDP port: the source port of its rekeys.
        self.port = port
        #: Wall-clock seconds minus the core's clock: the group clock is wall time,
        #: so members of a restarted server see it go on, not start over.
        self.clock_offset = clock_offset
        self._groups: dict[int, GroupState] = {}
        #: Every KEK SPI handed out and not yet expired, over all groups: a member
        #: tells the KEKs of its groups apart by SPI (the PUSH cookies) alone.
        self._kek_spis: dict[bytes, float] = {}
        #: What changed since the daemon last wrote the state (``take_changes``).
        self._changes = StateChanges()
        for group in groups:
            if group.group_id in self._groups:
                raise ValueError(f"group-id {group.group_id} configured twice")
            if group.kek is not None and signing_key is None:
                raise ValueError(
                    f"group {group.name} has server-member-communication: a signing key is needed"
                )
            if (problem := counter_mode_problem(group, dialect)) is not None:
                raise ValueError(problem)
            self._groups[group.group_id] = GroupState(group)
            self._changes.groups.add(group.group_id)

    def admit(
        self, group_id: int, sa: IkeSa, now: float, local_address: str | None = None
    ) -> GroupOffer | PullError:
        """Decide a GROUPKEY-PULL: the group's policy and keys, or why not.

        ``local_address`` is the key server's address on that IKE SA: the source
        of rekeys when the group configures no `server-address`.
        """
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
        return self._offer(state, sa, now, local_address)

    def grant_sender_ids(self, group_id: int, wanted: int) -> tuple[SenderId, ...] | PullError:
        """The sender ID of a registration that asked for ``wanted`` (we give one).

        Called when the member's HASH(3) verified; the SID goes in message 4 and is
        never given again in this process, whether or not message 4 arrives.  A
        group out of SIDs refuses the registration (module docstring).
        """
        state = self._groups.get(group_id)
        if state is None:
            return PullError(
                f"group-id {group_id} is not configured", NotifyType.INVALID_ID_INFORMATION
            )
        if wanted < 1:
            return ()
        if state.next_sender_id >= 1 << SID_BITS:
            return PullError(
                f"group {state.definition.name} has handed out all {1 << SID_BITS} sender IDs: "
                f"registrations asking for one (AES-GCM) are refused until the group's stored "
                f"state is cleared (docs/persistence.md)",
                NotifyType.NO_PROPOSAL_CHOSEN,
            )
        value, reserved = state.take_sender_id()
        if reserved:
            self._changes.groups.add(group_id)
        return (SenderId(value, SID_BITS),)

    def sender_ids_left(self, group_id: int) -> int:
        """How many sender IDs the group can still hand out in this process."""
        return max(0, (1 << SID_BITS) - self._groups[group_id].next_sender_id)

    def commit(
        self,
        group_id: int,
        sa: IkeSa,
        now: float,
        sender_ids: tuple[SenderId, ...] = (),
        local_address: str | None = None,
    ) -> MemberRecord:
        """Record a member whose HASH(3) verified (it has the policy; keys follow)."""
        state = self._groups[group_id]
        record = MemberRecord(
            state.definition.name, group_id, sa.peer[0], sa.policy.gateway, now,
            sender_ids[0] if sender_ids else None, sa.peer[1], local_address,
        )  # fmt: skip
        state.members[record.address] = record
        self._changes.members.add((group_id, record.address))
        kek = self._kek(state, now)
        if kek is not None and sa.keys is not None:
            # The member derives the same key from the same phase 1 SA and the
            # SIG_HASH_ALGORITHM of the KEK it was just given (docs/rekey-wire.md §5).
            cookies = sa.initiator_cookie + sa.responder_cookie
            algorithm = sig_hash(kek.policy.sig_hash.algorithm)
            state.ack_keys[record.address] = derive_ack_key(algorithm, sa.keys.skeyid_a, cookies)
        else:
            state.ack_keys.pop(record.address, None)
        return record

    def remove_member(self, group_id: int, address: str) -> MemberRecord | None:
        """Forget a member (it stopped ACKing): no record, no ACK key."""
        state = self._groups.get(group_id)
        if state is None:
            return None
        state.ack_keys.pop(address, None)
        self._changes.members.add((group_id, address))
        return state.members.pop(address, None)

    def reconfigure(self, groups: Iterable[GroupDefinition]) -> list[GroupChange]:
        """Run the groups of a reloaded configuration; say what changed.

        Checked whole before anything changes, so a refused reload leaves the
        server exactly as it was.  Unchanged groups keep everything.  A changed
        group keeps the keys of its unchanged policies and its KEK and SEQ (a
        rekey must still reach the members under the KEK they hold); members
        whose IKE gateway left the group are removed.
        """
        wanted: dict[int, GroupDefinition] = {}
        for group in groups:
            if group.group_id in wanted:
                raise ValueError(f"group-id {group.group_id} configured twice")
            if group.kek is not None and self.signing_key is None:
                raise ValueError(
                    f"group {group.name} has server-member-communication: a signing key is needed"
                )
            if (problem := counter_mode_problem(group, self.dialect)) is not None:
                raise ValueError(problem)
            wanted[group.group_id] = group
        running = {group_id: state.definition for group_id, state in self._groups.items()}
        changes = diff_groups(running, wanted)
        for change in changes:
            self._changes.groups.add(change.group_id)
            if change.kind == "removed":
                self._changes.members |= {
                    (change.group_id, address) for address in self._groups[change.group_id].members
                }
                del self._groups[change.group_id]
            elif change.kind == "added":
                self._groups[change.group_id] = GroupState(wanted[change.group_id])
            else:
                self._redefine(self._groups[change.group_id], wanted[change.group_id])
        return changes

    def _redefine(self, state: GroupState, new: GroupDefinition) -> None:
        self._changes.members |= {(new.group_id, address) for address in state.members}
        kept = {policy.name for policy in new.policies if policy in state.definition.policies}
        if new.kek is not None:
            # Deleted *and* changed policies: a changed policy's old key must stop
            # encrypting under its old selectors (v2 members get a Delete for it).
            # Only a group with rekeys drains this list, so only such a group fills it.
            state.withdrawn_spis += [
                tek.spi for name, tek in state.current.items() if name not in kept
            ]
        state.current = {name: tek for name, tek in state.current.items() if name in kept}
        state.members = {
            address: record
            for address, record in state.members.items()
            if record.gateway in new.gateways
        }
        if state.definition.kek is None and new.kek is not None:
            # The spec: "When server-member communication for a group is configured,
            # the group membership list is cleared."  Those members hold no KEK; they
            # come back with their next registration.
            state.members = {}
        state.ack_keys = {a: k for a, k in state.ack_keys.items() if a in state.members}
        if new.name != state.definition.name:
            state.members = {
                address: replace(record, group=new.name)
                for address, record in state.members.items()
            }
        state.offered_teks = None
        state.definition = new

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

    def current_kek(self, group_id: int, now: float) -> Kek | None:
        """The group's KEK (a fresh one if the last expired), None without a KEK policy."""
        return self._kek(self._groups[group_id], now)

    def definition(self, group_id: int) -> GroupDefinition | None:
        state = self._groups.get(group_id)
        return None if state is None else state.definition

    def group_clock(self, now: float) -> int:
        """The group clock in milliseconds (docs/rekey-wire.md §4): wall time."""
        return max(0, int((now + self.clock_offset) * 1000))

    def sequence(self, group_id: int) -> int | None:
        """The group's current SEQ, None for a group without a KEK (it sends no SEQ)."""
        state = self._groups[group_id]
        return state.sequence if state.definition.kek is not None else None

    def kek_status(self, now: float) -> list[KekStatus]:
        result = []
        for group_id, state in self._groups.items():
            kek = self._kek(state, now)
            if kek is not None:
                assert self.signing_key is not None  # checked in __init__
                key = self.signing_key
                result.append(
                    KekStatus(state.definition.name, group_id, kek, state.sequence,
                              key.bits, key.fingerprint)
                )  # fmt: skip
        return result

    # -- persistence (the daemon writes, ``server.snapshot``) -------------------------

    def take_changes(self) -> StateChanges:
        """What changed since the last call: the groups and members to write again."""
        changes, self._changes = self._changes, StateChanges()
        return changes

    def snapshot_group(self, group_id: int) -> GroupSnapshot | None:
        """The group as stored; None once it is no longer configured (delete it)."""
        state = self._groups.get(group_id)
        return None if state is None else snapshot_group(state, self.clock_offset)

    def snapshot_member(self, group_id: int, address: str) -> MemberSnapshot | None:
        """The member as stored; None once it is no longer registered (delete it)."""
        state = self._groups.get(group_id)
        return None if state is None else snapshot_member(state, address, self.clock_offset)

    def restore(
        self, groups: Iterable[GroupSnapshot], members: Iterable[MemberSnapshot], now: float
    ) -> list[RestoredGroup]:
        """Continue from stored state (at start, before anything is served).

        Stored groups that are no longer configured are dropped, and so are
        members whose group or IKE gateway is gone; what is restored and what
        is not is reported, one entry per configured group that was stored.
        """
        groups, members = list(groups), list(members)
        by_group: dict[int, list[MemberSnapshot]] = {}
        for member in members:
            by_group.setdefault(member.group_id, []).append(member)
        restored = []
        for stored in groups:
            state = self._groups.get(stored.group_id)
            if state is None:
                continue
            fresh = GroupState(state.definition)
            result = restore_group(
                fresh, stored, by_group.get(stored.group_id, []), self.clock_offset, now
            )
            self._groups[stored.group_id] = fresh
            for kek in (fresh.kek, fresh.previous_kek):
                if kek is not None:
                    self._kek_spis[kek.spi] = kek.expires_at
            restored.append(result)
        # Write the groups once (restored or new); of the members only those dropped
        # (the others are stored as they are): 8,000 unchanged rows are not rewritten.
        self._changes.groups |= {stored.group_id for stored in groups} | set(self._groups)
        self._changes.members |= {
            (m.group_id, m.address)
            for m in members
            if m.group_id not in self._groups or m.address not in self._groups[m.group_id].members
        }
        return restored

    # -- rekeys ---------------------------------------------------------------------

    def next_sequence(self, group_id: int) -> int:
        """The SEQ of the group's next push (1 for the first); every push takes one."""
        sequence, reserved = self._groups[group_id].take_sequence()
        if reserved:
            self._changes.groups.add(group_id)  # on disk before the push leaves
        return sequence

    def rotate_teks(self, group_id: int, policies: Iterable[str], now: float) -> list[Tek]:
        """A fresh TEK for each named group policy.  An old SPI stays reserved until it expires."""
        state = self._groups[group_id]
        by_name = {policy.name: policy for policy in state.definition.policies}
        fresh = []
        for name in policies:
            policy = by_name.get(name)
            if policy is None:
                continue  # deleted by a reload meanwhile: nothing to renew
            self._tek(state, policy, now)  # prunes expired SPIs
            tek = new_tek(policy, now, set(state.spis))
            state.current[name] = tek
            state.spis[tek.spi] = tek.expires_at
            fresh.append(tek)
        state.offered_teks = None
        self._changes.groups.add(group_id)
        return fresh

    def next_kek(self, group_id: int, now: float) -> Kek:
        """A fresh KEK for a rollover, its SPI reserved; current only after :meth:`activate_kek`.

        The rollover push must still be protected by the current KEK, which the
        members hold (docs/rekey-wire.md §2).
        """
        state = self._groups[group_id]
        policy = state.definition.kek
        if policy is None:
            raise ValueError(f"group {state.definition.name} has no KEK")
        self._kek(state, now)  # prunes expired SPIs
        kek = new_kek(policy, now, set(self._kek_spis))
        self._kek_spis[kek.spi] = kek.expires_at
        return kek

    def activate_kek(self, group_id: int, kek: Kek) -> None:
        """``kek`` (from :meth:`next_kek`, now pushed) becomes current; the old one is kept."""
        state = self._groups[group_id]
        state.previous_kek, state.kek = state.kek, kek
        self._changes.groups.add(group_id)

    def evict(self, group_id: int, now: float) -> Eviction:
        """A member was removed: every TEK and the KEK are replaced, current at once.

        None of the new keys goes in a push: pushes travel under the KEK the
        removed member holds.  The remaining members get them by registering
        again, each over its own phase 1 SA, and the removed member's
        registration is refused.  What this returns is what to delete: the KEK
        (now the previous one, so ACKs of the eviction push still find the
        group) and every TEK handed out before.
        """
        state = self._groups[group_id]
        old_kek = self._kek(state, now)
        if old_kek is None:
            raise ValueError(f"group {state.definition.name} has no KEK")
        self.rotate_teks(group_id, [policy.name for policy in state.definition.policies], now)
        fresh = {tek.spi for tek in state.current.values()}
        stale = tuple(spi for spi in state.spis if spi not in fresh)
        self.activate_kek(group_id, self.next_kek(group_id, now))
        state.withdrawn_spis = []  # among the stale ones
        self._changes.groups.add(group_id)
        return Eviction(old_kek, stale)

    def group_for_kek(self, spi: bytes, now: float) -> int | None:
        """The group whose current or previous (not expired) KEK has this SPI."""
        for group_id, state in self._groups.items():
            for kek in (state.kek, state.previous_kek):
                if kek is not None and kek.spi == spi and now < kek.expires_at:
                    return group_id
        return None

    def ack_key(self, group_id: int, address: str) -> AckKey | None:
        state = self._groups.get(group_id)
        return None if state is None else state.ack_keys.get(address)

    def push_content(
        self,
        group_id: int,
        sequence: int,
        now: float,
        *,
        new_kek: Kek | None = None,
        local_address: str | None = None,
    ) -> PushContent:
        """A rekey: every current SA TEK and its key, the next KEK on a rollover, Deletes.

        The SA KEK of a rollover names the group's `server-address` (else
        ``local_address``) as the source.  Its destination is the multicast group,
        or for unicast rekeys 0.0.0.0 port 0: one datagram goes to every member,
        each at the address and port of its own registration.  Deletes (RFC 3547
        §4.6, RFC 6407) name the TEKs of policies a reload withdrew or changed.
        """
        state = self._groups[group_id]
        sa_teks, packets = self._tek_payloads(state, now)
        sa_kek = None
        if new_kek is not None:
            assert self.signing_key is not None  # a KEK needs one (checked in __init__)
            source = str(state.definition.server_address or local_address or "0.0.0.0")
            multicast = new_kek.policy.multicast_group
            destination = (
                GdoiId.ipv4(str(multicast), self.port) if multicast is not None
                else GdoiId.ipv4("0.0.0.0", 0)
            )  # fmt: skip
            sa_kek = new_kek.sa_kek(
                now, GdoiId.ipv4(source, self.port), destination, self.signing_key.bits
            )
            packets = (new_kek.key_packet(self.signing_key.public_der), *packets)
        deletes: tuple[DeletePayload, ...] = ()
        if state.withdrawn_spis:
            deletes = (tek_delete(state.withdrawn_spis),)
            state.withdrawn_spis = []
            self._changes.groups.add(group_id)
        sa = GdoiSaPayload(Doi.GDOI, 0, kek=sa_kek, teks=sa_teks) if sa_teks or sa_kek else None
        key_download = KeyDownloadPayload(packets) if packets else None
        return PushContent(sequence, sa, key_download, deletes, self.group_clock(now))

    def heartbeat_teks(self, group_id: int, now: float) -> tuple[SaTekPayload, ...]:
        """The SA TEKs a heartbeat lists: the current keys as a registration would get them."""
        return self._tek_payloads(self._groups[group_id], now)[0]

    # -- building what a member downloads -------------------------------------------

    def _offer(
        self, state: GroupState, sa: IkeSa, now: float, local_address: str | None
    ) -> GroupOffer:
        sa_teks, packets = self._tek_payloads(state, now)
        kek = self._kek(state, now)
        v2 = self.dialect.has_gap
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
        sa_kek = None
        if kek is not None:
            assert self.signing_key is not None  # checked in __init__
            sa_kek = self._sa_kek(state, kek, sa, now, local_address)
            # The KEK packet first, as in the Cisco reference trace (gdoi-wire.md §4.5).
            packets = (kek.key_packet(self.signing_key.public_der), *packets)
        policy = GdoiSaPayload(Doi.GDOI, 0, kek=sa_kek, gap=gap, teks=sa_teks)
        sequence = state.sequence if kek is not None else None
        return GroupOffer(policy, KeyDownloadPayload(packets), sequence=sequence)

    def _tek_payloads(
        self, state: GroupState, now: float
    ) -> tuple[tuple[SaTekPayload, ...], tuple[KeyPacket, ...]]:
        teks = [self._tek(state, policy, now) for policy in state.definition.policies]
        built_from = tuple((tek.spi, tek.remaining(now)) for tek in teks)
        cached = state.offered_teks
        if cached is not None and cached[0] == built_from:
            return cached[1], cached[2]
        v2 = self.dialect.has_gap
        sa_teks = tuple(
            SaTekPayload(
                TekProtocol.IPSEC_ESP,
                tek.sa_tek(now, v2, state.definition.anti_replay_time_window),
                id_length_octets=self.dialect.sat_id_length_octets,
            )
            for tek in teks
        )
        # The group clock as of this build, like the remaining lifetimes: at most
        # a second old while the cache holds, far inside any anti-replay window.
        # (Pushes stamp their own exact clock over it.)
        unstamped = GdoiSaPayload(Doi.GDOI, 0, teks=sa_teks)
        sa_teks = stamp_group_clock(unstamped, self.group_clock(now), self.dialect).teks
        packets = tuple(tek.key_packet() for tek in teks)
        state.offered_teks = (built_from, sa_teks, packets)
        return sa_teks, packets

    def _sa_kek(
        self, state: GroupState, kek: Kek, sa: IkeSa, now: float, local_address: str | None
    ) -> SaKekPayload:
        """The SA KEK for one member: rekeys come from the server to where it will send them.

        SRC is the group's `server-address`, else the address the member reached
        us on.  DST is the multicast group for multicast rekeys; for unicast
        rekeys it is the member itself, at the address and port its IKE SA
        uses (gdoi-wire.md §4.2: "the GM for unicast rekey").
        """
        assert self.signing_key is not None
        definition = state.definition
        source_address = definition.server_address or local_address or "0.0.0.0"
        source = GdoiId.ipv4(str(source_address), self.port)
        multicast = kek.policy.multicast_group
        if multicast is not None:
            destination = GdoiId.ipv4(str(multicast), self.port)
        else:
            destination = GdoiId.ipv4(sa.peer[0], sa.peer[1])
        return kek.sa_kek(now, source, destination, self.signing_key.bits)

    def _tek(self, state: GroupState, policy: GroupPolicySpec, now: float) -> Tek:
        """The policy's current key, replaced by a fresh one once it has expired."""
        for spi, expires in list(state.spis.items()):
            if expires <= now:
                del state.spis[spi]
        tek = state.current.get(policy.name)
        if tek is None or tek.expires_at <= now:
            tek = new_tek(policy, now, set(state.spis))
            state.current[policy.name] = tek
            state.spis[tek.spi] = tek.expires_at
            self._changes.groups.add(state.definition.group_id)
        return tek

    def _kek(self, state: GroupState, now: float) -> Kek | None:
        """The group's KEK, replaced by a fresh one once it has expired."""
        policy = state.definition.kek
        if policy is None:
            return None
        for spi, expires in list(self._kek_spis.items()):
            if expires <= now:
                del self._kek_spis[spi]
        kek = state.kek
        if kek is None or kek.expires_at <= now:
            kek = new_kek(policy, now, set(self._kek_spis))
            state.kek = kek
            self._kek_spis[kek.spi] = kek.expires_at
            self._changes.groups.add(state.definition.group_id)
        return kek
