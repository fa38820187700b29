"""One group VPN's keys between registrations: rekeys, heartbeats, ACKs and the key lifecycle.

Sans-IO like the member core that drives it (one :class:`GroupKeys` per VPN):
the core opens a GROUPKEY-PUSH with :func:`groupvpn.gdoi.push.open_push` against
:meth:`GroupKeys.receiver`, and hands what verified to :meth:`GroupKeys.apply`,
which changes the keys and says what to send back.

* New TEKs pass the member's scope policies exactly as at registration (a key
  no scope policy accepts is discarded) and go into the :class:`GroupKeyring`
  as pushed keys (they encrypt 2 x ATD later); Delete payloads remove keys; a
  new KEK (rollover) replaces the KEK once the push that carried it is done.
* A push is ACKed (``HDR, HASH, SEQ, ID``, docs/rekey-wire.md §5) when its KEK
  asks for it, with the ACK key of the registration's phase 1 SA; heartbeats
  never are.
* Heartbeats feed the :class:`HeartbeatMonitor`: one that lists a current key
  (of a policy our scope policies accept) we do not hold means we missed a
  rekey.
* :meth:`GroupKeys.renewal` says when the VPN must register again: missed
  heartbeats, a missed rekey, no newer key by lifetime - 3 x ATD, or (v2) a
  pushed counter-mode key when the last registration asked for no sender ID.
* Counter-mode (AES-GCM) keys from a push encrypt with the sender ID of the
  registration before it (:attr:`GroupKeys.sender_id`): the same key server run
  handed out both, so no other member has that SID for them.

A push is taken whole or not at all: anything in it the member cannot use
(an unusable TEK or KEK) raises :class:`UnusablePush` before any state changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

from groupvpn.config.model_groups import DEFAULT_ACTIVATION_TIME_DELAY
from groupvpn.gdoi.push import KekMaterial, PushOpened, PushReceiver
from groupvpn.gdoi.push_ack import AckKey, build_ack
from groupvpn.gdoi.push_deletes import deleted_kek_spis, deleted_tek_spis
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.gdoi.sender_ids import SenderId
from groupvpn.member.group_clock import GroupClock
from groupvpn.member.heartbeat import HeartbeatMonitor
from groupvpn.member.install import JsonDict, PolicyFilter
from groupvpn.member.keyring import (
    GroupKeyring,
    KeyChange,
    KeyState,
    KeyStatus,
    PolicySelectors,
)
from groupvpn.member.keys import (
    GroupKek,
    GroupSa,
    UnusableTek,
    activation_time_delay,
    kek_of,
    listed_teks,
    tek_sas,
)
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.gdoi_numbers import KdType
from groupvpn.wire.payloads import IdPayload

#: Group time travels in milliseconds (docs/rekey-wire.md §4); the clocks run in seconds.
MS_PER_SECOND = 1000.0
#: Accepted pushes remembered, so a retransmitted copy is ACKed again (our ACK may be
#: what was lost) even after the KEK it came under was rolled over.
RECENT_PUSHES = 8


class UnusablePush(ValueError):
    """An authentic push carrying something the member cannot use; nothing was applied."""


@dataclass(frozen=True, slots=True)
class AckSender:
    """How this member ACKs, fixed at registration: its ID and its ACK key (secret)."""

    identity: IdPayload
    key: AckKey = field(repr=False)


@dataclass(frozen=True, slots=True)
class RekeyApplied:
    """A verified rekey changed the keys (the key changes follow as KeyChange events)."""

    vpn: str
    sequence: int
    installed: int  # TEKs new to us that a scope policy accepted
    rejected: int  # new TEKs discarded: no scope policy accepts them
    deleted: int  # SPIs the key server deleted that we held
    new_kek: bytes | None  # the SPI of the KEK it rolled over to
    acked: bool


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    vpn: str
    sequence: int
    #: Current keys (that our scope policies accept) the heartbeat lists and we lack.
    missing: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Renewal:
    """Why a registered VPN must register again, and whether over a fresh phase 1."""

    reason: str
    #: Heartbeat trouble: the key server may have restarted and forgotten our IKE SA.
    fresh_phase1: bool = False


@dataclass(frozen=True, slots=True)
class RekeyStatus:
    """One VPN's KEK and what came under it, for `show ... member kek security-associations`."""

    kek: GroupKek
    rekeys: int
    heartbeats: int
    acks_sent: int
    heartbeat_threshold: int
    watching: bool  # heartbeats are expected and counted
    last_heard: float | None  # the last verified push (rekey or heartbeat), else registration
    heartbeats_missed: int
    group_time: float | None


KeysEvent = KeyChange | RekeyApplied | HeartbeatReceived


@dataclass
class Applied:
    """What applying one push led to: events for the core's queue and an ACK to send."""

    events: list[KeysEvent]
    ack: bytes | None = None


class GroupKeys:
    """The keys, KEK, heartbeat watch and group clock of one group VPN."""

    def __init__(
        self,
        vpn: str,
        group_id: int,
        heartbeat_threshold: int,
        policy_filter: PolicyFilter,
        *,
        asks_sender_ids: bool = False,
    ) -> None:
        self.vpn = vpn
        self.group_id = group_id
        self.heartbeat_threshold = heartbeat_threshold
        self._filter = policy_filter
        self.keyring = GroupKeyring()
        self.clock = GroupClock()
        self.monitor: HeartbeatMonitor | None = None
        self.kek: GroupKek | None = None
        self.atd: float = DEFAULT_ACTIVATION_TIME_DELAY
        self._kek_received_at = 0.0
        self._ack: AckSender | None = None
        # Offered keys no scope policy accepts, per policy: `show security
        # dynamic-policies` lists them with the reason.
        self._rejected: dict[PolicySelectors, GroupSa] = {}
        self._last_heard: float | None = None
        self.rekeys = self.heartbeats = self.acks_sent = 0
        # SHA-256 of each recently accepted push -> our ACK of it (None: not ACKed).
        self._recent: OrderedDict[bytes, bytes | None] = OrderedDict()
        # Whether a GROUPKEY-PULL is running, and the SEQ of the newest rekey applied
        # since it began (see registered()).
        self._pulling = False
        self._rekeyed_while_pulling: int | None = None
        # When the key server deleted our KEK (it evicted a member): register again.
        self._kek_deleted_at: float | None = None
        #: Our sender ID from the last registration (None: it brought none), for the
        #: counter-mode keys of the pushes that follow it.
        self.sender_id: SenderId | None = None
        # Whether our registrations ask for sender IDs at all (the v2 dialect), and
        # whether the last one did (it was offered a counter-mode key).
        self._asks_sender_ids = asks_sender_ids
        self._sender_id_requested = False

    # -- registration ----------------------------------------------------------------

    def sender_id_received(self, sender_id: SenderId | None, requested: bool) -> None:
        """A registration brought this sender ID (None: none), having asked or not.

        Every registration replaces it: a SID is good for the keys of the key server
        run that handed it out, and the next registration may be with a restarted one.
        """
        self.sender_id, self._sender_id_requested = sender_id, requested

    def pull_started(self) -> None:
        """A GROUPKEY-PULL begins: pushes from now on may be newer than its answer."""
        self._pulling, self._rekeyed_while_pulling = True, None

    def registered(
        self,
        sas: list[GroupSa],
        kek: GroupKek | None,
        atd: float,
        group_clock_ms: int | None,
        ack: AckSender | None,
        now: float,
    ) -> tuple[list[KeyChange], int]:
        """Take a (re-)registration; the key changes and how many SAs were accepted.

        A rekey may overtake the pull's answer: the key server answers, then
        rolls the keys over and pushes (to us as well: it counts us a member from
        HASH(3) on), and a lost and retransmitted answer arrives after the push.
        Such an answer is older than what we hold, by the server's own SEQ: its
        keys and KEK would put us back on a KEK the server no longer sends under.
        We keep the pushed state and take only the ACK key of the new phase 1 SA.
        (If that push deleted the KEK, we register again: see :meth:`renewal`.)
        """
        newer = self._rekeyed_while_pulling
        self._pulling, self._rekeyed_while_pulling = False, None
        if newer is not None and kek is not None and newer > kek.sequence:
            self._ack = ack
            return [], 0
        accepted, _ = self._filter(self.vpn, sas)
        self._kek_deleted_at = None
        kept = {sa.spi for sa in accepted}
        self._rejected = {PolicySelectors.of(sa): sa for sa in sas if sa.spi not in kept}
        if kek is not None and self.kek is not None and self.kek.spi == kek.spi:
            # The same KEK again: a push we accepted after the server answered the pull
            # must not become acceptable a second time.
            kek = dataclasses.replace(kek, sequence=max(kek.sequence, self.kek.sequence))
        self.kek, self._kek_received_at, self._ack, self.atd = kek, now, ack, atd
        self._last_heard = now
        self.monitor = None
        if kek is not None and kek.heartbeat_interval is not None:
            self.monitor = HeartbeatMonitor(kek.heartbeat_interval, self.heartbeat_threshold)
            self.monitor.start(now, kek.sequence)
        if group_clock_ms is not None:
            self.clock.synchronize(group_clock_ms / MS_PER_SECOND, now)
        return self.keyring.install_pulled(accepted, now, atd), len(accepted)

    def stop_watching(self) -> None:
        """Registering again: no heartbeat deadline until it is done."""
        if self.monitor is not None:
            self.monitor.stop()

    def clear(self, now: float) -> list[KeyChange]:
        """Forget every key, the KEK and the group clock (`clear ...`)."""
        self.kek = self._ack = self.monitor = None
        self.sender_id, self._sender_id_requested = None, False
        self._pulling, self._rekeyed_while_pulling = False, None
        self._kek_deleted_at = None
        self._rejected = {}
        self._recent.clear()
        self._last_heard = None
        self.clock.forget()
        return self.keyring.clear(now)

    # -- pushes --------------------------------------------------------------------------

    def receiver(self, dialect: Dialect) -> PushReceiver | None:
        """What opens pushes under our KEK, with the last SEQ accepted; None without a KEK."""
        kek = self.kek
        if kek is None:
            return None
        material = KekMaterial.named(kek.spi, kek.cipher.name, kek.key, kek.iv)
        spec = sig_hash(kek.sig_hash.algorithm)
        return PushReceiver(material, kek.public_key, spec, kek.sequence, dialect)

    def copy_of_accepted(self, datagram: bytes) -> tuple[bool, bytes | None]:
        """Whether ``datagram`` is a copy of a push we accepted, and our ACK to send again.

        The key server sends the same octets to every member and again to those that
        did not ACK; a copy is never applied twice, but its ACK goes out again.
        """
        digest = hashlib.sha256(datagram).digest()
        if digest not in self._recent:
            return False, None
        ack = self._recent[digest]
        if ack is not None:
            self.acks_sent += 1
        return True, ack

    def apply(self, opened: PushOpened, now: float, datagram: bytes = b"") -> Applied:
        """Apply a push that verified under our KEK; UnusablePush if it cannot be used whole.

        ``datagram`` is the push as received, remembered to recognise its copies.
        """
        kek = self.kek
        assert kek is not None and opened.kek_spi == kek.spi, "open_push chose another KEK"
        new_sas, new_kek = self._read(opened, now)
        # Nothing below raises for what the key server sent: the push is ours now.
        self.kek = dataclasses.replace(kek, sequence=opened.sequence)
        self._last_heard = now
        if opened.group_clock is not None:
            self.clock.synchronize(opened.group_clock / MS_PER_SECOND, now)
        if opened.is_heartbeat:
            self._remember(datagram, None)
            return Applied([self._heartbeat(opened, now)])
        self.rekeys += 1
        if self._pulling:
            self._rekeyed_while_pulling = opened.sequence
        if self.monitor is not None:
            self.monitor.heard(now, opened.sequence)  # a rekey proves the server alive too
        if opened.sa is not None:
            self.atd = activation_time_delay(opened.sa, self.atd)
        accepted, _ = self._filter(self.vpn, new_sas)
        kept = {sa.spi for sa in accepted}
        for sa in new_sas:
            selectors = PolicySelectors.of(sa)
            if sa.spi in kept:
                self._rejected.pop(selectors, None)
            else:
                self._rejected[selectors] = sa
        # A rekey carries the group's whole current set: count the keys new to us.
        new = sum(1 for sa in accepted if self.keyring.decrypt_key(sa.spi) is None)
        events: list[KeysEvent] = list(self.keyring.install_pushed(accepted, now, self.atd))
        named = deleted_tek_spis(opened.deletes)
        deleted = [spi for spi in named if self.keyring.decrypt_key(spi)]
        events += self.keyring.delete(deleted, now)
        if new_kek is not None:
            self.kek, self._kek_received_at = new_kek, now
            # The rollover may change the heartbeat interval (or start or stop them):
            # watch by the KEK the server now sends under.
            self.monitor = None
            if new_kek.heartbeat_interval is not None:
                self.monitor = HeartbeatMonitor(
                    new_kek.heartbeat_interval, self.heartbeat_threshold
                )
                self.monitor.start(now, opened.sequence)
        ack = None
        # A rollover to unicast rekeys asks for ACKs in its new KEK while it still travels
        # under the old one: the server tracks this push by ACK already, so answer it.
        wants_ack = kek.acks_requested or (new_kek is not None and new_kek.acks_requested)
        if wants_ack and self._ack is not None:
            # ACKed under the KEK it came with, which is the one the server tracks it by.
            ack = build_ack(opened.kek_spi, opened.sequence, self._ack.identity, self._ack.key)
            self.acks_sent += 1
        self._remember(datagram, ack)
        if new_kek is None and kek.spi in deleted_kek_spis(opened.deletes):
            # The key server evicted a member: no more pushes under this KEK, and
            # the new keys come only by registering (docs/rekey-wire.md §2a).  The
            # TEKs keep working until the registration brings their successors.
            self.kek = self.monitor = None
            self._kek_deleted_at = now
        events.append(
            RekeyApplied(
                self.vpn, opened.sequence, new, len(new_sas) - len(accepted),
                len(deleted), None if new_kek is None else new_kek.spi, ack is not None,
            )
        )  # fmt: skip
        return Applied(events, ack)

    def _read(self, opened: PushOpened, now: float) -> tuple[list[GroupSa], GroupKek | None]:
        """The new TEKs and KEK of a push, checked whole before anything is applied."""
        kd, sa = opened.key_download, opened.sa
        try:
            new_sas = (
                [] if sa is None or kd is None else tek_sas(self.vpn, self.group_id, sa, kd, now)
            )
            # Counter-mode keys encrypt with the SID of our last registration (None:
            # they only decrypt, and renewal() registers again to ask for one).
            new_sas = [
                dataclasses.replace(sa, sender_id=self.sender_id)
                if sa.cipher.counter_mode else sa
                for sa in new_sas
            ]  # fmt: skip
            new_kek = None
            if opened.new_kek is not None and kd is not None:
                new_kek = kek_of(
                    self.vpn, self.group_id, opened.new_kek, kd.find(KdType.KEK),
                    opened.sequence, now,
                )  # fmt: skip
        except UnusableTek as exc:  # UnusableKek too
            raise UnusablePush(str(exc)) from exc
        return new_sas, new_kek

    def _remember(self, datagram: bytes, ack: bytes | None) -> None:
        if datagram:
            self._recent[hashlib.sha256(datagram).digest()] = ack
            while len(self._recent) > RECENT_PUSHES:
                self._recent.popitem(last=False)

    def _heartbeat(self, opened: PushOpened, now: float) -> HeartbeatReceived:
        self.heartbeats += 1
        # Only keys our scope policies accept can be missing: the others we discard.
        accepted, _ = self._filter(self.vpn, listed_teks(opened.sa))
        missing = self.keyring.unknown(sa.spi for sa in accepted)
        if self.monitor is not None:
            self.monitor.heard(now, opened.sequence, keys_known=not missing)
        return HeartbeatReceived(self.vpn, opened.sequence, tuple(sorted(missing)))

    # -- time ------------------------------------------------------------------------------

    def deadlines(self, registered: bool) -> list[float]:
        """When :meth:`advance` or :meth:`renewal` next has something to do."""
        times = [t for t in (self.keyring.next_deadline(),) if t is not None]
        if registered:
            renew = (self.keyring.refresh_at(), self._kek_refresh_at(), self._kek_deleted_at)
            times += [t for t in renew if t is not None]
            if self.monitor is not None and (deadline := self.monitor.deadline()) is not None:
                times.append(deadline)
        return times

    def advance(self, now: float) -> list[KeyChange]:
        return self.keyring.advance(now)

    def renewal(self, now: float) -> Renewal | None:
        """Why this registered VPN must pull again now; None while all is well."""
        if self._kek_deleted_at is not None:
            return Renewal("the key server deleted the KEK (a member was removed)")
        if self.monitor is not None and (reason := self.monitor.reason(now)) is not None:
            return Renewal(reason, fresh_phase1=True)
        refresh = self.keyring.refresh_at()
        if refresh is not None and refresh <= now:
            return Renewal("no newer key by its lifetime - 3 x activation-time-delay")
        refresh = self._kek_refresh_at()
        if refresh is not None and refresh <= now:
            return Renewal("no new KEK by its lifetime - 3 x activation-time-delay")
        if self._needs_sender_id(now):
            return Renewal("a rekey brought an AES-GCM key and we have no sender ID for it")
        return None

    def _needs_sender_id(self, now: float) -> bool:
        """A counter-mode key that is to encrypt cannot, for want of a SID never asked for.

        Only then: had the last registration asked and got none (a key server that
        hands out none), registering again would only ask again.
        """
        if not self._asks_sender_ids or self._sender_id_requested:
            return False
        for status in self.keyring.status(now):
            if status.state is KeyState.RETIRING:
                continue
            sa = self.keyring.decrypt_key(status.spi)
            if sa is not None and sa.cipher.counter_mode and sa.sender_id is None:
                return True
        return False

    def _kek_refresh_at(self) -> float | None:
        """The keyring's refresh rule, for the KEK: a rollover should come before then."""
        if self.kek is None:
            return None
        refresh = self.kek.expires_at - 3 * self.atd
        return self.kek.expires_at if refresh <= self._kek_received_at else refresh

    # -- views -----------------------------------------------------------------------------

    def key_status(self, now: float) -> list[KeyStatus]:
        return self.keyring.status(now)

    def rekey_status(self, now: float) -> RekeyStatus | None:
        if self.kek is None:
            return None
        monitor = self.monitor
        return RekeyStatus(
            kek=self.kek,
            rekeys=self.rekeys,
            heartbeats=self.heartbeats,
            acks_sent=self.acks_sent,
            heartbeat_threshold=self.heartbeat_threshold,
            watching=monitor is not None and monitor.enabled and monitor.deadline() is not None,
            last_heard=self._last_heard,
            heartbeats_missed=0 if monitor is None else monitor.missed(now),
            group_time=self.clock.group_time(now),
        )

    def dynamic_policies(self) -> list[JsonDict]:
        """The dynamic-policy view of the keys held now, and of the offered ones refused."""
        shown: list[GroupSa] = []
        for selectors in self.keyring.policies():
            held = self.keyring.decrypt_keys(selectors)
            if held:
                shown.append(self.keyring.encrypt_key(selectors) or held[-1])
        shown += [sa for sel, sa in self._rejected.items() if sel not in self.keyring.policies()]
        return self._filter(self.vpn, shown)[1]
