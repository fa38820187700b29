"""The key server's rekeys, heartbeats and ACKs for every group with a KEK, sans-IO.

This joins the pure pieces: per group one :class:`GroupRekeyScheduler` (when),
one delivery (:class:`UnicastDelivery` or :class:`MulticastDelivery`: who gets
which copy when) and :class:`GroupKeyServer` (the keys, SEQ and members).  For
each :class:`RekeyAction` it takes a fresh SEQ, renews what the action names
(a fresh TEK per renewed policy; for a rollover the next KEK, which the push
carries under the *current* KEK and which becomes current right after), builds
and signs the push once, and keeps the datagram until the delivery says the
push is complete.  Every paced :class:`Transmission` is a copy of it: unicast
copies to the address and port the member registered from (what its SA KEK
DST says), multicast copies to `multicast-group` at the server's port.

It is driven like the other cores, and shared by the key server cores of
every local address (``server.core.KeyServerCore``): each core folds
:meth:`next_deadline` into its timer, calls :meth:`handle_timer`, sends
:meth:`datagrams_from` its own address, hands it the ACKs that reach its
socket (:func:`is_rekey_ack`) and reports registrations.  Whichever core's
timer fires first does the work; the others find nothing left but their own
datagrams.  The daemon sends :meth:`multicast_datagrams` on its multicast
socket and asks for operator rekeys (:meth:`request_rekey`) and reloads
(:meth:`reconfigure`).  Events (``server.rekey_events``) say what happened.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from groupvpn.gdoi.push import KekMaterial, PushContent, build_heartbeat, build_push
from groupvpn.gdoi.push_ack import ACK_EXCHANGE_TYPE, AckKey, AckRejected, open_ack
from groupvpn.gdoi.push_deletes import kek_delete, tek_delete
from groupvpn.gdoi.push_sig import DEFAULT_SIGNATURE_ENCODING, SignatureEncoding, sig_hash
from groupvpn.ike.events import Address
from groupvpn.server.delivery import (
    DeliveryState,
    MemberDeliveryStatus,
    MemberRemoved,
    MulticastDelivery,
    PushCompleted,
    PushKind,
    UnicastDelivery,
)
from groupvpn.server.groups import GroupDefinition, GroupKeyServer, MemberRecord
from groupvpn.server.kek import Kek
from groupvpn.server.reconfigure import GroupChange
from groupvpn.server.rekey import GroupRekeyScheduler, RekeyAction, RekeyReason, ScheduleSettings
from groupvpn.server.rekey_events import (
    AckDropped,
    AckReceived,
    HeartbeatSent,
    MemberInactive,
    RekeyCompleted,
    RekeyEvent,
    RekeyRetransmitted,
    RekeySent,
)
from groupvpn.server.tek import Tek
from groupvpn.wire.constants import HEADER_LENGTH
from groupvpn.wire.payloads import IdPayload

#: Seconds between two log lines about dropped ACKs of the same reason.
ACK_DROP_REPORT_INTERVAL = 60.0
_EXCHANGE_TYPE_OFFSET = 18


def is_rekey_ack(data: bytes) -> bool:
    """Whether a datagram on the server socket is a rekey ACK (not for the IKE endpoint)."""
    return len(data) >= HEADER_LENGTH and data[_EXCHANGE_TYPE_OFFSET] == ACK_EXCHANGE_TYPE


class RekeyRefused(ValueError):
    """An operator rekey that cannot be done; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class MulticastDatagram:
    data: bytes
    destination: Address
    #: The address of `multicast-outgoing-interface`, when it names one.
    interface: IPv4Address | None
    group: str


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    changes: list[GroupChange]
    #: The rekey each changed group got, by group-id.
    rekeys: dict[int, RekeySent]


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a unicast member's copies go: its registration's peer, from which local address."""

    peer: Address
    local: str


@dataclass(eq=False)
class _GroupRekeys:
    group_id: int
    scheduler: GroupRekeyScheduler
    delivery: UnicastDelivery | MulticastDelivery
    #: The delivery of the communication type a reload replaced.  Members learn the
    #: new type only from the rekey that carries the new SA KEK, so that rekey goes
    #: the old way (unicast copies with ACKs, or the old multicast group); the
    #: handover ends when that push is complete.
    handover: UnicastDelivery | MulticastDelivery | None = None
    handover_seq: int | None = None
    datagrams: dict[int, bytes] = field(default_factory=dict, repr=False)
    routes: dict[str, _Route] = field(default_factory=dict)
    #: The keys the scheduler tracks, to notice the ones it does not know yet.
    teks: dict[str, Tek] = field(default_factory=dict, repr=False)
    kek: Kek | None = field(default=None, repr=False)
    #: Policies a reload gave new keys, named by the next rekey.
    fresh: set[str] = field(default_factory=set)
    #: After an eviction: when to delete the TEKs handed out before it, and their SPIs.
    stale_teks: tuple[float, tuple[bytes, ...]] | None = None
    #: The scheduler's next deadline, kept current after every change to it: the
    #: shell asks for the timer after every datagram (every ACK of a big fan-out).
    schedule_at: float = math.inf


class _DropReports:
    """One report per reason and interval, with the count left out since the last."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def report(self, reason: str, now: float) -> int | None:
        """None while rate limited, else how many went unreported before this one."""
        last = self._last.get(reason)
        if last is not None and now < last + ACK_DROP_REPORT_INTERVAL:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return None
        self._last[reason] = now
        return self._suppressed.pop(reason, 0)


class KeyServerRekeying:
    def __init__(
        self,
        groups: GroupKeyServer,
        now: float,
        *,
        source_address: str | None = None,
        encoding: SignatureEncoding = DEFAULT_SIGNATURE_ENCODING,
    ) -> None:
        self.groups = groups
        #: The SA KEK source of a rollover when a group has no `server-address`.
        self.source_address = source_address
        self._encoding = encoding
        self._rekeys: dict[int, _GroupRekeys] = {}
        self._unicast: dict[str, list[tuple[bytes, Address]]] = {}
        self._multicast: list[MulticastDatagram] = []
        self._events: deque[RekeyEvent] = deque()
        self._ack_drops = _DropReports()
        for definition in groups.definitions():
            self._add_group(definition, now)

    # -- inputs --------------------------------------------------------------------------

    def member_registered(
        self, record: MemberRecord, peer: Address, local: str, sequence: int | None, now: float
    ) -> None:
        """A member's HASH(3) verified; its pull carried SEQ ``sequence``."""
        state = self._rekeys.get(record.group_id)
        if state is None:
            return
        state.routes[record.address] = _Route(peer, local)
        for delivery in _deliveries(state):
            # A registration during a handover brings the new SA KEK: what the
            # member owed the handover is withdrawn, not left to remove it.
            delivery.add_member(record.address, now, sequence)
        self._drain(state)
        self._sync_keys(state, now)  # the offer may have made a key the scheduler lacks

    def restore_members(self, now: float) -> None:
        """After :meth:`GroupKeyServer.restore`: rekeys go on to the members it brought back.

        Each is owed nothing (it holds the keys and SEQ the stored state has) and
        its copies go where its registration came from, from the same local address.
        """
        for state in self._rekeys.values():
            definition = self.groups.definition(state.group_id)
            if definition is None:
                continue
            sequence = self.groups.sequence(state.group_id)
            for record in self.groups.members(definition.name):
                local = record.local_address or self.source_address or "0.0.0.0"
                state.routes[record.address] = _Route((record.address, record.peer_port), local)
                state.delivery.add_member(record.address, now, sequence)
            self._sync_keys(state, now)

    def receive_ack(self, data: bytes, addr: Address, now: float) -> None:
        """An ACK from ``addr``: a member is known by the address its registration came from.

        Not by the ID in the ACK: that is the member's own phase 1 identity (an
        address behind NAT, a name, ...), which the HASH covers, while the key
        server knows the member by the address it saw, the one its copies go to
        (and its ACKs come from: the member answers from its IKE socket).
        """
        found: list[tuple[int, str]] = []

        def key_for(spi: bytes, identity: IdPayload) -> AckKey | None:
            group_id = self.groups.group_for_kek(spi, now)
            if group_id is None:
                return None
            found.append((group_id, addr[0]))
            return self.groups.ack_key(group_id, addr[0])

        opened = open_ack(data, key_for)
        if isinstance(opened, AckRejected):
            suppressed = self._ack_drops.report(opened.reason, now)
            if suppressed is not None:
                self._events.append(AckDropped(addr, opened.reason, opened.detail, suppressed))
            return
        group_id, address = found[0]  # the key that verified it was looked up there
        state = self._rekeys.get(group_id)
        if state is None:
            return
        # During a handover from unicast the ACKs are owed to the old delivery (the
        # new one is multicast, without ACKs); from multicast, to the new one.
        acking = state.handover if isinstance(state.handover, UnicastDelivery) else state.delivery
        result = acking.acked(address, opened.sequence, now)
        self._events.append(AckReceived(state.delivery.group, address, opened.sequence, result))
        self._drain(state)

    def request_rekey(self, group: str, reason: RekeyReason, now: float) -> RekeySent:
        """A rekey of ``group`` now (the operator's `request ... rekey`); what was sent."""
        definition = next((d for d in self.groups.definitions() if d.name == group), None)
        if definition is None:
            raise RekeyRefused(f"group {group} is not configured")
        state = self._rekeys.get(definition.group_id)
        if state is None:
            raise RekeyRefused(
                f"group {group} has no server-member-communication: no rekeys are pushed; "
                "members get new keys when they register again"
            )
        state.scheduler.request_rekey(reason, now)
        sent = self._run(state, now)
        assert sent is not None  # a request is due at once
        return sent

    def reconfigure(self, definitions: Iterable[GroupDefinition], now: float) -> ReloadOutcome:
        """Run a reloaded configuration's groups and push the rekeys the changes need.

        ValueError (from :meth:`GroupKeyServer.reconfigure`) leaves everything as it was.
        """
        before = {gid: self._spis(gid, now) for gid in self._rekeys}
        registered = {gid: self._member_addresses(gid) for gid in self._rekeys}
        changes = self.groups.reconfigure(definitions)
        rekeys: dict[int, RekeySent] = {}
        for change in changes:
            group_id = change.group_id
            definition = self.groups.definition(group_id)
            state = self._rekeys.get(group_id)
            if definition is None or definition.kek is None:
                self._rekeys.pop(group_id, None)
                continue
            if state is None:
                # New, or new to server-member-communication: its member list starts
                # empty (the spec), so nobody holds a KEK to push to yet.
                self._add_group(definition, now)
                continue
            self._redefine(state, definition, now)
            after = self._spis(group_id, now)
            old = before.get(group_id, {})
            state.fresh |= {name for name, spi in after.items() if old.get(name) != spi}
            if registered.get(group_id, set()) - self._member_addresses(group_id):
                # Members left with their gateway: evict them.  That renews every key
                # (by registration), so the change's other reasons need no push.
                rekeys[group_id] = self._evict(state, now)
            elif reasons := [r for r in change.reasons if r is not RekeyReason.MEMBER_REMOVAL]:
                for reason in reasons:
                    state.scheduler.request_rekey(reason, now)
                sent = self._run(state, now)
                if sent is not None:
                    rekeys[group_id] = sent
            if state.handover is not None and state.handover_seq is None:
                state.handover = None  # no rekey to carry: nothing to hand over
        return ReloadOutcome(changes, rekeys)

    def handle_timer(self, now: float) -> None:
        for state in list(self._rekeys.values()):
            self._run(state, now)

    # -- outputs -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = []
        for state in self._rekeys.values():
            times.append(state.schedule_at)
            if state.stale_teks is not None:
                times.append(state.stale_teks[0])
            for delivery in _deliveries(state):
                deadline = delivery.next_deadline()
                if deadline is not None:
                    times.append(deadline)
        earliest = min(times, default=math.inf)
        return None if math.isinf(earliest) else earliest

    def datagrams_from(self, local: str) -> list[tuple[bytes, Address]]:
        """Unicast copies to send from the server socket on ``local``."""
        return self._unicast.pop(local, [])

    def multicast_datagrams(self) -> list[MulticastDatagram]:
        datagrams, self._multicast = self._multicast, []
        return datagrams

    def next_event(self) -> RekeyEvent | None:
        return self._events.popleft() if self._events else None

    # -- views ---------------------------------------------------------------------------

    def member_statuses(self, group_id: int) -> dict[str, MemberDeliveryStatus]:
        state = self._rekeys.get(group_id)
        if state is None:
            return {}
        # Handing over from unicast: who still owes the handover rekey's ACK.
        shown = state.handover if isinstance(state.handover, UnicastDelivery) else state.delivery
        return {status.address: status for status in shown.statuses()}

    def next_rekey_at(self, group_id: int) -> float | None:
        state = self._rekeys.get(group_id)
        return None if state is None else state.scheduler.next_rekey_at()

    def next_heartbeat_at(self, group_id: int) -> float | None:
        state = self._rekeys.get(group_id)
        if state is None:
            return None
        at = state.scheduler.next_heartbeat_at()
        return None if math.isinf(at) else at

    # -- internals -----------------------------------------------------------------------

    def _add_group(self, definition: GroupDefinition, now: float) -> None:
        if definition.kek is None:
            return
        scheduler = GroupRekeyScheduler(_schedule_settings(definition), now)
        state = _GroupRekeys(definition.group_id, scheduler, self._new_delivery(definition))
        self._rekeys[definition.group_id] = state
        self._sync_keys(state, now)

    def _new_delivery(self, definition: GroupDefinition) -> UnicastDelivery | MulticastDelivery:
        assert definition.kek is not None
        multicast = definition.kek.multicast_group
        if multicast is not None:
            return MulticastDelivery(definition.name, str(multicast))
        return UnicastDelivery(definition.name, definition.delivery)

    def _redefine(self, state: _GroupRekeys, definition: GroupDefinition, now: float) -> None:
        settings = _schedule_settings(definition)
        if settings != state.scheduler.settings:
            state.scheduler.reconfigure(settings)
        assert definition.kek is not None
        multicast = definition.kek.multicast_group
        delivery = state.delivery
        same_type = (
            isinstance(delivery, MulticastDelivery) and str(multicast) == delivery.destination
        ) or (isinstance(delivery, UnicastDelivery) and multicast is None)
        listed = [record.address for record in self.groups.members(definition.name)]
        members = set(listed)
        if not same_type:
            # The members still listen the old way: the change's own rekey (it
            # carries the SA KEK that tells them the new way) is handed over to the
            # old delivery, with the copies it still has in flight; the pushes
            # after it go the new way to every member still listed.
            state.handover, state.handover_seq = delivery, None
            state.delivery = self._new_delivery(definition)
            for address in listed:  # in registration order, as copies go out
                state.delivery.add_member(address, now)
        for delivery in _deliveries(state):
            if isinstance(delivery, UnicastDelivery):
                delivery.settings = definition.delivery
            delivery.group = definition.name
            for status in delivery.statuses():
                if status.address not in members:  # its IKE gateway left the group
                    delivery.remove_member(status.address, now)
        state.routes = {a: route for a, route in state.routes.items() if a in members}
        self._sync_keys(state, now)

    def _member_addresses(self, group_id: int) -> set[str]:
        return {record.address for record in self.groups.members() if record.group_id == group_id}

    def _spis(self, group_id: int, now: float) -> dict[str, bytes]:
        return {tek.policy.name: tek.spi for tek in self.groups.current_teks(group_id, now)}

    def _sync_keys(self, state: _GroupRekeys, now: float) -> None:
        """Tell the scheduler about every current key it does not track yet."""
        scheduler = state.scheduler
        current = {tek.policy.name: tek for tek in self.groups.current_teks(state.group_id, now)}
        for name, tek in current.items():
            if state.teks.get(name) is not tek:
                state.teks[name] = tek
                scheduler.track_tek(name, tek)
        for name in [name for name in state.teks if name not in current]:
            del state.teks[name]
            scheduler.forget_tek(name)
        kek = self.groups.current_kek(state.group_id, now)
        if kek is not state.kek:
            state.kek = kek
            scheduler.track_kek(kek)
        state.schedule_at = scheduler.next_deadline()

    def _run(self, state: _GroupRekeys, now: float) -> RekeySent | None:
        """Due pushes, then due copies and what the delivery reports; the rekey sent, if any."""
        self._sync_keys(state, now)
        sent = None
        for action in state.scheduler.due(now):
            event = self._push(state, action, now)
            if isinstance(event, RekeySent):
                sent = event
        if state.stale_teks is not None and state.stale_teks[0] <= now:
            self._delete_stale_teks(state, state.stale_teks[1], now)
            state.stale_teks = None
        state.schedule_at = state.scheduler.next_deadline()
        self._transmit(state, now)
        return sent

    def _evict(self, state: _GroupRekeys, now: float) -> RekeySent:
        """Lock removed members out (docs/rekey-wire.md §2a): delete the KEK they hold.

        The new TEKs and KEK are current at once but go in no push: the push goes
        under the old KEK, which the removed members hold (and with multicast
        rekeys receive).  It deletes that KEK, so the remaining members register
        again and get the new keys over their own phase 1 SAs; the removed ones
        are refused.  Once they all could have, a push under the new KEK deletes
        the old TEKs, so traffic under them is no longer accepted either.
        """
        groups, group_id = self.groups, state.group_id
        eviction = groups.evict(group_id, now)
        seq = groups.next_sequence(group_id)
        content = PushContent(seq, deletes=(kek_delete(eviction.kek.spi),))
        data = self._build(content, eviction.kek)
        definition = groups.definition(group_id)
        assert definition is not None
        delivery, members, destination = self._fan_out(state, PushKind.REKEY)
        self._enqueue(state, delivery, seq, PushKind.REKEY, data, now)
        # Re-registrations take a copy and its retransmissions at worst, then the
        # pulled keys start encrypting ATD later; one ATD more is the margin.
        wait = 2.0 * definition.activation_time_delay
        if isinstance(delivery, UnicastDelivery):
            settings = delivery.settings
            wait += settings.number_of_retransmission * settings.retransmission_period
        state.stale_teks = (now + wait, eviction.tek_spis) if eviction.tek_spis else None
        state.fresh = set()
        self._sync_keys(state, now)
        event = RekeySent(
            definition.name, group_id, seq, (str(RekeyReason.MEMBER_REMOVAL),), members,
            destination, (), False, 0, kek_deleted=True,
        )  # fmt: skip
        self._events.append(event)
        self._transmit(state, now)
        return event

    def _delete_stale_teks(self, state: _GroupRekeys, spis: tuple[bytes, ...], now: float) -> None:
        """The eviction's second push, under the new KEK: delete the TEKs from before it."""
        groups, group_id = self.groups, state.group_id
        kek = groups.current_kek(group_id, now)
        definition = groups.definition(group_id)
        assert kek is not None and definition is not None
        seq = groups.next_sequence(group_id)
        data = self._build(PushContent(seq, deletes=(tek_delete(spis),)), kek)
        delivery, members, destination = self._fan_out(state, PushKind.REKEY)
        self._enqueue(state, delivery, seq, PushKind.REKEY, data, now)
        self._events.append(
            RekeySent(definition.name, group_id, seq, (str(RekeyReason.MEMBER_REMOVAL),),
                      members, destination, (), False, len(spis))
        )  # fmt: skip

    def _build(self, content: PushContent, kek: Kek) -> bytes:
        """A push of ``content`` under ``kek``, signed with the server's key."""
        signing_key = self.groups.signing_key
        assert signing_key is not None  # a group with a KEK has one
        material = KekMaterial.named(kek.spi, kek.policy.cipher.name, kek.key, kek.iv)
        return build_push(
            content, material, signing_key.push_signer(), sig_hash(kek.policy.sig_hash.algorithm),
            dialect=self.groups.dialect, encoding=self._encoding,
        )  # fmt: skip

    def _fan_out(
        self, state: _GroupRekeys, kind: PushKind
    ) -> tuple[UnicastDelivery | MulticastDelivery, int | None, str | None]:
        """The delivery a push of ``kind`` goes by, and its members or multicast destination."""
        delivery = state.delivery
        handing_over = state.handover is not None and state.handover_seq is None
        if kind is PushKind.REKEY and handing_over and state.handover is not None:
            delivery = state.handover  # the change's rekey: see _GroupRekeys.handover
        if isinstance(delivery, MulticastDelivery):
            return delivery, None, f"{delivery.destination}:{self.groups.port}"
        if kind is PushKind.HEARTBEAT:
            # A member still owing a rekey ACK gets that rekey's copies, not the heartbeat.
            active = sum(s.state is DeliveryState.ACTIVE for s in delivery.statuses())
            return delivery, active, None
        return delivery, len(delivery.statuses()), None

    def _enqueue(
        self, state: _GroupRekeys, delivery: UnicastDelivery | MulticastDelivery, seq: int,
        kind: PushKind, data: bytes, now: float,
    ) -> None:  # fmt: skip
        state.datagrams[seq] = data
        if delivery is state.handover:
            state.handover_seq = seq
        delivery.add_push(seq, kind, now)

    def _push(self, state: _GroupRekeys, action: RekeyAction, now: float) -> RekeyEvent:
        groups, group_id = self.groups, state.group_id
        kek = groups.current_kek(group_id, now)  # what members hold: it protects this push
        definition = groups.definition(group_id)
        assert kek is not None and definition is not None  # a group with rekeys has a KEK
        delivery, members, destination = self._fan_out(state, action.kind)
        seq = groups.next_sequence(group_id)
        event: RekeyEvent
        if action.kind is PushKind.HEARTBEAT:
            teks = groups.heartbeat_teks(group_id, now)
            signing_key = groups.signing_key
            assert signing_key is not None
            material = KekMaterial.named(kek.spi, kek.policy.cipher.name, kek.key, kek.iv)
            data = build_heartbeat(
                seq, teks, groups.group_clock(now), material, signing_key.push_signer(),
                sig_hash(kek.policy.sig_hash.algorithm), dialect=groups.dialect,
                encoding=self._encoding,
            )  # fmt: skip
            event = HeartbeatSent(definition.name, group_id, seq, members, destination)
        else:
            for name in action.renew_teks:
                state.teks.pop(name, None)  # re-tracked below with its replacement
            groups.rotate_teks(group_id, action.renew_teks, now)
            new_kek = groups.next_kek(group_id, now) if action.renew_kek else None
            content = groups.push_content(
                group_id, seq, now, new_kek=new_kek, local_address=self.source_address
            )
            data = self._build(content, kek)
            if new_kek is not None:
                groups.activate_kek(group_id, new_kek)
            renewed = {*action.renew_teks, *state.fresh}
            state.fresh = set()
            event = RekeySent(
                definition.name, group_id, seq, tuple(str(r) for r in action.reasons), members,
                destination, tuple(p.name for p in definition.policies if p.name in renewed),
                new_kek is not None, sum(len(d.spis) for d in content.deletes),
            )  # fmt: skip
            self._sync_keys(state, now)
        self._enqueue(state, delivery, seq, action.kind, data, now)
        self._events.append(event)
        return event

    def _transmit(self, state: _GroupRekeys, now: float) -> None:
        definition = self.groups.definition(state.group_id)
        assert definition is not None
        for delivery in _deliveries(state):
            if isinstance(delivery, MulticastDelivery):
                self._transmit_multicast(state, delivery, definition, now)
            else:
                self._transmit_unicast(state, delivery, definition, now)
        self._drain(state)

    def _transmit_multicast(
        self, state: _GroupRekeys, delivery: MulticastDelivery, definition: GroupDefinition,
        now: float,
    ) -> None:  # fmt: skip
        destination = (delivery.destination, self.groups.port)
        for copy in delivery.transmissions(now):
            data = state.datagrams.get(copy.seq)
            if data is not None:
                self._multicast.append(
                    MulticastDatagram(data, destination,
                                      definition.multicast_interface_address, definition.name)
                )  # fmt: skip

    def _transmit_unicast(
        self, state: _GroupRekeys, delivery: UnicastDelivery, definition: GroupDefinition,
        now: float,
    ) -> None:  # fmt: skip
        limit = 1 + delivery.settings.number_of_retransmission
        for copy in delivery.transmissions(now):
            data = state.datagrams.get(copy.seq)
            route = state.routes.get(copy.destination)
            if data is None or route is None:
                continue
            self._unicast.setdefault(route.local, []).append((data, route.peer))
            if copy.copy > 1:
                self._events.append(
                    RekeyRetransmitted(definition.name, copy.destination, copy.seq,
                                       copy.copy, limit)
                )  # fmt: skip

    def _drain(self, state: _GroupRekeys) -> None:
        """What the deliveries report: removals to carry out, pushes to forget."""
        for delivery in _deliveries(state):
            for event in delivery.events():
                if isinstance(event, MemberRemoved):
                    self._remove(state, event)
                elif isinstance(event, PushCompleted):
                    self._completed(state, delivery, event)

    def _remove(self, state: _GroupRekeys, event: MemberRemoved) -> None:
        self.groups.remove_member(state.group_id, event.address)
        state.routes.pop(event.address, None)
        for delivery in _deliveries(state):
            delivery.remove_member(event.address, event.at)  # no-op where it was removed
        self._events.append(
            MemberInactive(event.group, state.group_id, event.address, event.seq, event.copies)
        )

    def _completed(
        self, state: _GroupRekeys, delivery: UnicastDelivery | MulticastDelivery,
        event: PushCompleted,
    ) -> None:  # fmt: skip
        state.datagrams.pop(event.seq, None)
        if event.kind is PushKind.REKEY and isinstance(delivery, UnicastDelivery):
            self._events.append(
                RekeyCompleted(delivery.group, event.seq, event.acked, event.removed,
                               event.withdrawn, event.completed_at - event.started_at)
            )  # fmt: skip
        if delivery is state.handover and event.seq == state.handover_seq:
            state.handover = state.handover_seq = None  # handed over: the new way from now


def _deliveries(state: _GroupRekeys) -> list[UnicastDelivery | MulticastDelivery]:
    """The group's delivery, and the one it is handing over from, if any."""
    return [state.delivery] if state.handover is None else [state.handover, state.delivery]


def _schedule_settings(definition: GroupDefinition) -> ScheduleSettings:
    assert definition.kek is not None
    heartbeat = definition.kek.heartbeat
    # No heartbeat interval announced: none are sent (the SA KEK says so to members).
    interval = math.inf if heartbeat is None else float(heartbeat)
    return ScheduleSettings(float(definition.activation_time_delay), interval)


def registered_state(status: MemberDeliveryStatus | None) -> str:
    """A member's state for `show ... registered-members` (no KEK: just registered)."""
    return DeliveryState.REGISTERED.value if status is None else status.state_text
