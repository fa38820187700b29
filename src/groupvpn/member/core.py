"""The group member core: phase 1 to the key server, GROUPKEY-PULL, then rekeys, per VPN.

Sans-IO like the endpoint under it.  For each configured group VPN the member
brings up (or reuses) an IKE SA to the VPN's gateway, pulls the group's policy
and keys, and reports the result.  Anything that goes wrong (no answer, a
refusal, a broken message, keys it cannot use) ends that attempt; the next
one starts after a jittered exponential backoff, so a member never spins and a
fleet of members does not retry in lockstep.  A registration is taken whole or
not at all.

After it, the VPN's keys live in a :class:`GroupKeys` (member/rekeys.py): the
keys its scope policies accept, their activation and expiry, the KEK with the
last SEQ accepted, the heartbeat watch and the group clock.  GROUPKEY-PUSH
datagrams (exchange 33, on the IKE socket or a multicast one) are taken here
before the IKE endpoint sees them.  The VPN registers again on its own when a
key nears its end with no newer one, when heartbeats stop, or when one shows a
missed rekey.  This module only coordinates: the rules live in the modules it
drives.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import traceback
from collections import deque
from collections.abc import Callable, Iterable

from groupvpn.gdoi.pull import NONCE_LENGTH, PullError, PullInitiator, Registration
from groupvpn.gdoi.push_ack import derive_ack_key
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import (
    Address,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaFailed,
    InternalError,
    NotifyReceived,
)
from groupvpn.ike.sa import IkeSa
from groupvpn.member.install import JsonDict, PolicyFilter, install_all
from groupvpn.member.keyring import KeyStatus
from groupvpn.member.keys import (
    GroupKek,
    UnusableTek,
    activation_time_delay,
    group_clock_ms,
    group_kek,
    group_sas,
    registration_sender_id,
)
from groupvpn.member.push_inbox import PushDrops, PushInbox
from groupvpn.member.rekeys import AckSender, GroupKeys, RekeyStatus
from groupvpn.member.vpn import (
    GroupVpn,
    MemberEvent,
    Registered,
    RegistrationFailed,
    Reregistering,
    VpnRecord,
    VpnState,
    VpnStatus,
)
from groupvpn.wire.buffer import DecodeError
from groupvpn.wire.constants import ExchangeType, notify_name
from groupvpn.wire.dialect import Dialect
from groupvpn.wire.message import IsakmpHeader

__all__ = [
    "GroupVpn",
    "MemberCore",
    "MemberEvent",
    "Registered",
    "RegistrationFailed",
    "Reregistering",
    "VpnState",
    "VpnStatus",
]

#: Octet of the ISAKMP header that holds the exchange type.
_EXCHANGE_TYPE_OFFSET = 18


class MemberCore:
    def __init__(
        self,
        ike: IkeEndpoint,
        vpns: Iterable[GroupVpn],
        dialect: Dialect,
        *,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        jitter: random.Random | None = None,
        retransmit_interval: float = 2.0,
        retransmit_limit: int = 4,
        backoff_base: float = 2.0,
        backoff_max: float = 120.0,
        reregistration_spread: float = 0.0,
        policy_filter: PolicyFilter = install_all,
    ) -> None:
        self.ike = ike
        self.dialect = dialect
        self._vpns = {vpn.name: VpnRecord(vpn) for vpn in vpns}
        self._keys = {
            vpn.name: GroupKeys(
                vpn.name,
                vpn.group_id,
                vpn.heartbeat_threshold,
                policy_filter,
                asks_sender_ids=dialect.sender_ids,
            )
            for vpn in vpns
        }
        self._inbox = PushInbox(self._keys, dialect)
        self._outbox: list[tuple[bytes, Address]] = []
        self._random_bytes = random_bytes
        self._jitter = jitter or random.Random()
        self._retransmit_interval = retransmit_interval
        self._retransmit_limit = retransmit_limit
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        #: A registered VPN that must register again waits a random 0..this many
        #: seconds first: what makes it register again (heartbeats stopped, the KEK
        #: deleted, keys near their end) reaches every member of the group at once,
        #: and a key server facing thousands of Main Modes in the same second
        #: answers none of them in time (the re-registration storm).
        self._reregistration_spread = reregistration_spread
        self._events: deque[MemberEvent | IkeEvent] = deque()
        ike.handle_exchange(ExchangeType.GROUPKEY_PULL, self._on_pull)

    # -- the sans-IO interface ---------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        # Rekeys come under the KEK, not an IKE SA: the endpoint would only drop them.
        if len(data) > _EXCHANGE_TYPE_OFFSET and (
            data[_EXCHANGE_TYPE_OFFSET] == ExchangeType.GROUPKEY_PUSH
        ):
            self._receive_push(data, addr, now)
            return
        self.ike.receive_datagram(data, addr, now)
        self._drain_ike(now)

    def receive_multicast(self, data: bytes, addr: Address, now: float) -> None:
        """A datagram to a rekey multicast group: only a GROUPKEY-PUSH belongs there."""
        self._receive_push(data, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outbox = self._outbox, []
        return out + self.ike.datagrams_to_send()

    def get_timer(self) -> float | None:
        times = [vpn.timer_at for vpn in self._vpns.values() if vpn.timer_at is not None]
        if (ike_timer := self.ike.get_timer()) is not None:
            times.append(ike_timer)
        for vpn in self._vpns.values():
            times += self._keys[vpn.config.name].deadlines(vpn.state is VpnState.REGISTERED)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        self.ike.handle_timer(now)
        self._drain_ike(now)
        for vpn in self._vpns.values():
            if vpn.timer_at is not None and vpn.timer_at <= now:
                vpn.timer_at = None
                if vpn.state is VpnState.REGISTERING:
                    self._retransmit_pull(vpn, now)
                elif vpn.state is VpnState.WAITING:
                    self._connect(vpn, now)
                elif vpn.state is VpnState.CONNECTING:
                    self._fail(vpn, "no IKE SA to the key server", now)
        for vpn in self._vpns.values():
            keys = self._keys[vpn.config.name]
            self._events.extend(keys.advance(now))
            self._renew_if_due(vpn, now)

    def next_event(self) -> MemberEvent | IkeEvent | None:
        return self._events.popleft() if self._events else None

    # -- operations ----------------------------------------------------------------------

    def status(self, now: float) -> list[VpnStatus]:
        return [self._status(vpn, now) for vpn in self._vpns.values()]

    def _status(self, vpn: VpnRecord, now: float) -> VpnStatus:
        waiting = vpn.state is VpnState.WAITING and vpn.timer_at is not None
        return VpnStatus(
            vpn=vpn.config.name,
            gateway=vpn.config.gateway,
            group_id=vpn.config.group_id,
            state=vpn.state.value,
            failures=vpn.failures,
            last_error=vpn.last_error,
            next_attempt=(vpn.timer_at - now) if waiting and vpn.timer_at is not None else None,
            registered_at=vpn.registered_at,
        )

    def registrations(self) -> dict[str, Registration]:
        return {
            name: vpn.registration
            for name, vpn in self._vpns.items()
            if vpn.registration is not None
        }

    def keks(self) -> list[GroupKek]:
        """The KEK of every VPN registered to a group with server-member communication."""
        return [keys.kek for keys in self._keys.values() if keys.kek is not None]

    @property
    def push_drops(self) -> PushDrops:
        """Pushes dropped, counted per reason (`drops.counts`)."""
        return self._inbox.drops

    def holds_kek(self, spi: bytes) -> bool:
        return any(kek.spi == spi for kek in self.keks())

    def key_status(self, now: float) -> list[KeyStatus]:
        """Every group SA held, per VPN, with its state (pending, active, retiring)."""
        return [status for keys in self._keys.values() for status in keys.key_status(now)]

    def rekey_status(self, now: float) -> list[RekeyStatus]:
        return [s for keys in self._keys.values() if (s := keys.rekey_status(now)) is not None]

    def dynamic_policies(self) -> list[JsonDict]:
        return [policy for keys in self._keys.values() for policy in keys.dynamic_policies()]

    def group_keys(self) -> list[GroupKeys]:
        """Each VPN's keys, keyring and group clock, for the data plane (read them only)."""
        return list(self._keys.values())

    def clear(self, now: float) -> None:
        """Drop every group SA and KEK and register again (`clear ... security-associations`).

        Over a new phase 1 SA: the operator clears because something is wrong, and
        the spec's recovery for a key server that restarted afresh is this command;
        such a key server no longer knows our old IKE SA and would stay silent.
        """
        for vpn in self._vpns.values():
            vpn.registration = vpn.registered_at = None
            vpn.failures = 0
            vpn.fresh_phase1 = True
            self._events.extend(self._keys[vpn.config.name].clear(now))
            self._connect(vpn, now)

    # -- the steps ------------------------------------------------------------------------

    def _connect(self, vpn: VpnRecord, now: float) -> None:
        sa = None if vpn.fresh_phase1 else self.ike.established_with(vpn.config.gateway)
        if sa is not None:
            self._start_pull(vpn, sa, now)
            return
        vpn.fresh_phase1 = False
        vpn.state = VpnState.CONNECTING
        # One negotiation serves every VPN on the same gateway.
        if not any(
            other is not vpn and other.state is VpnState.CONNECTING
            and other.config.gateway == vpn.config.gateway
            for other in self._vpns.values()
        ):  # fmt: skip
            self.ike.initiate(vpn.config.gateway, now)
            self._drain_ike(now)
        # The IKE endpoint bounds phase 1 itself; this is only a backstop.
        vpn.timer_at = now + self._retransmit_interval * 2 ** (self._retransmit_limit + 2)

    def _start_pull(self, vpn: VpnRecord, sa: IkeSa, now: float) -> None:
        message_id = int.from_bytes(self._random_bytes(4), "big") or 1
        vpn.pull = PullInitiator(
            sa, vpn.config.group_id, message_id=message_id,
            nonce=self._random_bytes(NONCE_LENGTH), dialect=self.dialect,
        )  # fmt: skip
        vpn.pull_sa = sa
        vpn.state = VpnState.REGISTERING
        self._keys[vpn.config.name].pull_started()
        self._send_pull(vpn, vpn.pull.first_message(), now)

    def _send_pull(self, vpn: VpnRecord, data: bytes, now: float) -> None:
        assert vpn.pull_sa is not None
        vpn.last_sent = data
        vpn.retransmits = 0
        vpn.timer_at = now + self._retransmit_interval
        self.ike.send(vpn.pull_sa, data)

    def _retransmit_pull(self, vpn: VpnRecord, now: float) -> None:
        if vpn.retransmits >= self._retransmit_limit or vpn.last_sent is None:
            # A key server that restarted does not know our IKE SA and stays silent.
            vpn.fresh_phase1 = True
            self._fail(vpn, f"no answer from the key server to GROUPKEY-PULL "
                            f"after {vpn.retransmits} retransmissions", now)  # fmt: skip
            return
        assert vpn.pull_sa is not None
        vpn.retransmits += 1
        vpn.timer_at = now + self._retransmit_interval * 2**vpn.retransmits
        self.ike.send(vpn.pull_sa, vpn.last_sent)

    def _on_pull(self, sa: IkeSa, header: IsakmpHeader, data: bytes, now: float) -> None:
        vpn = next(
            (v for v in self._vpns.values()
             if v.pull is not None and v.pull_sa is sa and v.pull.message_id == header.message_id),
            None,
        )  # fmt: skip
        if vpn is None or vpn.pull is None:
            raise DecodeError("GROUPKEY-PULL message for no registration of ours", 20)
        try:
            progress = vpn.pull.receive(header, data)
        except PullError as exc:
            self._fail(vpn, exc.reason, now)
            return
        if progress.send is not None:
            self._send_pull(vpn, progress.send, now)
        if progress.registration is not None:
            self._registered(vpn, progress.registration, now)

    def _registered(self, vpn: VpnRecord, registration: Registration, now: float) -> None:
        name = vpn.config.name
        try:
            kek = group_kek(name, registration, now)
            sender_id = registration_sender_id(registration)
            # Counter-mode keys encrypt with this registration's SID (RFC 6054), none
            # other: docs/dataplane.md §4.
            sas = [
                dataclasses.replace(sa, sender_id=sender_id) if sa.cipher.counter_mode else sa
                for sa in group_sas(name, registration, now)
            ]
            clock = group_clock_ms(registration.sa)
        except UnusableTek as exc:
            # Nothing of it is kept: keys we cannot rekey, or a policy we cannot
            # fully install, would leave the member half in the group.
            self._fail(vpn, f"unusable registration: {exc}", now)
            return
        ack = self._ack_sender(vpn, kek)
        vpn.state = VpnState.REGISTERED
        vpn.timer_at = None
        vpn.registration = registration
        vpn.registered_at = now
        vpn.failures = 0
        vpn.last_error = ""
        keys = self._keys[name]
        atd = activation_time_delay(registration.sa)
        keys.sender_id_received(sender_id, registration.sender_ids_requested > 0)
        changes, installed = keys.registered(sas, kek, atd, clock, ack, now)
        self._events.append(Registered(name, registration, tuple(sas), kek, installed, sender_id))
        self._events.extend(changes)

    def _ack_sender(self, vpn: VpnRecord, kek: GroupKek | None) -> AckSender | None:
        """The ACK key of the IKE SA this registration ran under, kept for its lifetime.

        The ACK names us by that SA's phase 1 identity (docs/rekey-wire.md §5); the
        key server finds us by the address the ACK comes from, which is the one it
        saw the registration come from (behind NAT too).
        """
        sa = vpn.pull_sa
        if kek is None or sa is None or sa.keys is None:
            return None
        key = derive_ack_key(
            sig_hash(kek.sig_hash.algorithm), sa.keys.skeyid_a,
            sa.initiator_cookie + sa.responder_cookie,
        )  # fmt: skip
        return AckSender(sa.local_id, key)

    # -- rekeys ------------------------------------------------------------------------

    def _receive_push(self, data: bytes, addr: Address, now: float) -> None:
        try:
            delivered = self._inbox.receive(data, addr, now)
        except Exception:  # a bug must not stop the daemon: report it and carry on
            self._events.append(InternalError(f"push from {addr[0]}", traceback.format_exc()))
            return
        self._events.extend(delivered.events)
        if delivered.ack is not None:
            self._outbox.append(delivered.ack)
        if delivered.vpn is not None:
            self._renew_if_due(self._vpns[delivered.vpn], now)

    def _renew_if_due(self, vpn: VpnRecord, now: float) -> None:
        """Register a registered VPN again when its keys or heartbeats say so."""
        if vpn.state is not VpnState.REGISTERED:
            return
        keys = self._keys[vpn.config.name]
        renewal = keys.renewal(now)
        if renewal is None:
            return
        keys.stop_watching()
        vpn.fresh_phase1 = vpn.fresh_phase1 or renewal.fresh_phase1
        delay = self._jitter.uniform(0.0, self._reregistration_spread)
        self._events.append(Reregistering(vpn.config.name, renewal.reason, delay))
        if delay > 0.0:
            # The keys stay installed meanwhile: traffic goes on under them.
            vpn.state = VpnState.WAITING
            vpn.timer_at = now + delay
            return
        self._connect(vpn, now)

    def _fail(self, vpn: VpnRecord, reason: str, now: float) -> None:
        vpn.failures += 1
        vpn.pull = None
        vpn.pull_sa = None
        vpn.last_sent = None
        vpn.state = VpnState.WAITING
        vpn.last_error = reason
        # Jittered exponential backoff: base * 2^(n-1), capped, times 0.5..1.5.
        delay = min(self._backoff_max, self._backoff_base * 2 ** (vpn.failures - 1))
        delay *= self._jitter.uniform(0.5, 1.5)
        vpn.timer_at = now + delay
        self._events.append(RegistrationFailed(vpn.config.name, reason, delay))

    def _drain_ike(self, now: float) -> None:
        """React to what phase 1 did, and pass its events on."""
        while (event := self.ike.next_event()) is not None:
            self._events.append(event)
            if isinstance(event, IkeSaEstablished) and event.sa.role == "initiator":
                for vpn in self._waiting_on(event.sa.gateway, VpnState.CONNECTING):
                    sa = self.ike.established_with(vpn.config.gateway)
                    if sa is not None:
                        self._start_pull(vpn, sa, now)
            elif isinstance(event, IkeSaFailed) and event.role == "initiator":
                for vpn in self._waiting_on(event.gateway, VpnState.CONNECTING):
                    self._fail(vpn, f"IKE phase 1 failed: {event.reason}", now)
            elif isinstance(event, IkeSaDeleted):
                for vpn in self._waiting_on(event.sa.gateway, VpnState.REGISTERING):
                    if vpn.pull_sa is not None and vpn.pull_sa.cookies == (
                        event.sa.initiator_cookie,
                        event.sa.responder_cookie,
                    ):
                        self._fail(vpn, "IKE SA deleted during registration", now)
            elif isinstance(event, NotifyReceived) and event.protected:
                self._key_server_notified(event, now)

    def _key_server_notified(self, event: NotifyReceived, now: float) -> None:
        if event.notify_type >= 16384:
            return  # status, not an error
        # Our key server names the refused pull's message ID in the Notification
        # Data; a server that does not leaves every pull with it in doubt.
        refused_pull = int.from_bytes(event.data, "big") if len(event.data) == 4 else None
        for vpn in self._vpns.values():
            if (
                vpn.state is VpnState.REGISTERING
                and vpn.pull is not None
                and vpn.pull_sa is not None
                and vpn.pull_sa.peer == event.peer
                and refused_pull in (None, vpn.pull.message_id)
            ):
                self._fail(vpn, f"key server refused: {notify_name(event.notify_type)}", now)

    def _waiting_on(self, gateway: str, state: VpnState) -> list[VpnRecord]:
        return [v for v in self._vpns.values() if v.config.gateway == gateway and v.state is state]
