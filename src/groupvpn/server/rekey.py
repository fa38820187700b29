"""When a group's key server pushes: scheduled rekeys, KEK rollovers, heartbeats, requests.

Pure state, no I/O and no clock: the core tells a :class:`GroupRekeyScheduler`
about the group's current keys and the events that call for a rekey, asks
:meth:`~GroupRekeyScheduler.next_deadline`, and at that time takes the
:class:`RekeyAction` list from :meth:`~GroupRekeyScheduler.due`.  Every action
is one GROUPKEY-PUSH and needs exactly one fresh SEQ: the core allocates it
(and persists it before use), builds and signs the push, and gives the SEQ to
the group's delivery (``server.delivery``).  The scheduler never sees a SEQ.

The rules (spec, "Group Key Operations"; ATD = `activation-time-delay`):

- **TEK rekey** at lifetime − 4 × ATD after the TEK was created, i.e. 4 × ATD
  before it expires: 3540 s with the defaults (3600, 15).  Members then have
  2 × ATD to activate the pushed key and ATD more before the old one expires,
  and a member that missed the push pulls at lifetime − 3 × ATD.
- **KEK rollover** by the same rule, 4 × ATD before the KEK expires: the spec
  states the rekey interval as "lifetime-seconds − 4 × ATD" in the paragraph
  that names the KEK's lifetime, and the lead leaves the retransmissions of
  the defaults (2 × 10 s) well inside it.  The push carrying the new KEK is
  still protected by the old one.
- Keys due in the same call share **one** rekey (with the defaults the KEK
  and the TEKs made at the first registration all fall due at 3540 s).
- **Heartbeats** every `heartbeat` seconds (Junos 60-3600, default 300) on a
  fixed grid counted from the scheduler's start: a rekey neither replaces nor
  moves them, so a member's heartbeat watch sees a steady cadence.  A
  scheduler called late sends one heartbeat, not one per missed slot, and
  stays on the grid.  In a call where both fall due the rekey comes first,
  so the heartbeat's SEQ is higher and it reports the new key state.
- **Requested rekeys** (policy change, membership change, operator command)
  are due at once; requests made before the next :meth:`due` call share one
  rekey with each other and with anything scheduled.  What each reason renews
  is in :data:`RENEWED_BY_REQUEST`.

A renewed key is no longer tracked: the core makes its replacement and calls
:meth:`~GroupRekeyScheduler.track_tek` / :meth:`~GroupRekeyScheduler.track_kek`
with it, which starts the replacement's own schedule.  So a core that has not
yet replaced a key is never asked to rekey it again in a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from groupvpn.server.delivery import PushKind

#: A rekey goes out this many activation-time-delays before its key expires.
REKEY_LEAD_IN_ACTIVATION_DELAYS = 4


class RekeyReason(StrEnum):
    TEK_LIFETIME = "tek-lifetime"
    KEK_LIFETIME = "kek-lifetime"
    POLICY_CHANGE = "policy-change"
    MEMBERSHIP_CHANGE = "membership-change"
    #: A member left (its IKE gateway was removed): not a push of new keys but an
    #: eviction (``server.rekeying``), so it is not a scheduler request.
    MEMBER_REMOVAL = "member-removal"
    OPERATOR_REQUEST = "operator-request"


@dataclass(frozen=True, slots=True)
class Renewal:
    all_teks: bool
    kek: bool


#: What a requested rekey replaces.  A policy change carries the changed group
#: policies, whose keys the core makes itself; the other keys stay.  A membership
#: change (new KEK attributes) renews the TEKs and the KEK.  The operator's
#: `request ... rekey` gives every member new TEK SPIs; the KEK keeps its schedule.
#: A member removal is no request here: pushing new keys under the KEK the removed
#: member holds would hand them to it (``server.rekeying`` evicts instead).
RENEWED_BY_REQUEST: dict[RekeyReason, Renewal] = {
    RekeyReason.POLICY_CHANGE: Renewal(all_teks=False, kek=False),
    RekeyReason.MEMBERSHIP_CHANGE: Renewal(all_teks=True, kek=True),
    RekeyReason.OPERATOR_REQUEST: Renewal(all_teks=True, kek=False),
}


class TimedKey(Protocol):
    """A TEK or KEK as the scheduler needs it (``server.tek.Tek``, ``server.kek.Kek``)."""

    @property
    def created_at(self) -> float: ...
    @property
    def expires_at(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    #: The group's `activation-time-delay` (Junos 10-900 s, default 15).
    activation_time_delay: float = 15
    #: `server-member-communication heartbeat` (Junos 60-3600 s, default 300).
    heartbeat: float = 300

    def __post_init__(self) -> None:
        if self.activation_time_delay < 0:
            raise ValueError("activation_time_delay must be >= 0")
        if self.heartbeat <= 0:
            raise ValueError("heartbeat must be > 0")

    @property
    def rekey_lead(self) -> float:
        return REKEY_LEAD_IN_ACTIVATION_DELAYS * self.activation_time_delay


def rekey_time(key: TimedKey, settings: ScheduleSettings) -> float:
    """lifetime − 4 × ATD after creation; never before creation.

    The commit check keeps every lifetime at least 10 × ATD, so the clamp only
    guards a key handed in from elsewhere.
    """
    return max(key.created_at, key.expires_at - settings.rekey_lead)


@dataclass(frozen=True, slots=True)
class RekeyAction:
    """One push to build and send now, with one fresh SEQ."""

    kind: PushKind
    #: When it fell due (the earliest of its reasons), at or before the call's ``now``.
    due_at: float
    #: Why; empty for a heartbeat.
    reasons: tuple[RekeyReason, ...] = ()
    #: Group policies whose TEK the core replaces before building the push.
    renew_teks: tuple[str, ...] = ()
    #: The push carries a new KEK (protected by the current one).
    renew_kek: bool = False


class GroupRekeyScheduler:
    def __init__(self, settings: ScheduleSettings, now: float) -> None:
        self._settings = settings
        self._teks: dict[str, TimedKey] = {}
        self._kek: TimedKey | None = None
        self._requests: list[tuple[RekeyReason, float]] = []
        #: The last heartbeat slot (the start until the first heartbeat).
        self._heartbeat_slot = now

    @property
    def settings(self) -> ScheduleSettings:
        return self._settings

    # -- what the core tells it -----------------------------------------------------------

    def track_tek(self, policy: str, key: TimedKey) -> None:
        """``key`` is now the current TEK of group policy ``policy``."""
        self._teks[policy] = key

    def forget_tek(self, policy: str) -> None:
        """The group policy was deleted: its key needs no more rekeys."""
        self._teks.pop(policy, None)

    def track_kek(self, key: TimedKey | None) -> None:
        """``key`` is now the group's KEK (None: the group has none)."""
        self._kek = key

    def request_rekey(self, reason: RekeyReason, now: float) -> None:
        if reason not in RENEWED_BY_REQUEST:
            raise ValueError(f"{reason} is scheduled, not requested")
        self._requests.append((reason, now))

    def reconfigure(self, settings: ScheduleSettings) -> None:
        """New timings (a reloaded configuration).

        Key rekeys move with the new ATD at once.  The heartbeat grid restarts
        from the last heartbeat (or the start) with the new interval; a slot
        already past is due at the next call.
        """
        self._settings = settings

    # -- when ------------------------------------------------------------------------------

    def next_rekey_at(self) -> float | None:
        """The next scheduled rekey (keys only; requests are due at once)."""
        keys = [*self._teks.values(), *([self._kek] if self._kek is not None else [])]
        return min((rekey_time(key, self._settings) for key in keys), default=None)

    def next_heartbeat_at(self) -> float:
        return self._heartbeat_slot + self._settings.heartbeat

    def next_deadline(self) -> float:
        times = [self.next_heartbeat_at(), *(at for _, at in self._requests)]
        rekey = self.next_rekey_at()
        if rekey is not None:
            times.append(rekey)
        return min(times)

    def due(self, now: float) -> list[RekeyAction]:
        """The pushes due by ``now``: at most one rekey, then at most one heartbeat."""
        actions = []
        rekey = self._due_rekey(now)
        if rekey is not None:
            actions.append(rekey)
        heartbeat = self._due_heartbeat(now)
        if heartbeat is not None:
            actions.append(heartbeat)
        return actions

    def _due_rekey(self, now: float) -> RekeyAction | None:
        settings = self._settings
        reasons: list[RekeyReason] = []
        due_times: list[float] = []
        renew_teks = [p for p, key in self._teks.items() if rekey_time(key, settings) <= now]
        if renew_teks:
            reasons.append(RekeyReason.TEK_LIFETIME)
            due_times += (rekey_time(self._teks[p], settings) for p in renew_teks)
        renew_kek = False
        if self._kek is not None and rekey_time(self._kek, settings) <= now:
            renew_kek = True
            reasons.append(RekeyReason.KEK_LIFETIME)
            due_times.append(rekey_time(self._kek, settings))
        requests = [(reason, at) for reason, at in self._requests if at <= now]
        self._requests = [(reason, at) for reason, at in self._requests if at > now]
        for reason, at in requests:
            if reason not in reasons:
                reasons.append(reason)
            due_times.append(at)
            renewal = RENEWED_BY_REQUEST[reason]
            if renewal.all_teks:
                renew_teks = list(self._teks)
            renew_kek = renew_kek or (renewal.kek and self._kek is not None)
        if not reasons:
            return None
        for policy in renew_teks:
            del self._teks[policy]
        if renew_kek:
            self._kek = None
        return RekeyAction(PushKind.REKEY, min(due_times), tuple(reasons),
                           tuple(renew_teks), renew_kek)  # fmt: skip

    def _due_heartbeat(self, now: float) -> RekeyAction | None:
        interval = self._settings.heartbeat
        if now < self._heartbeat_slot + interval:
            return None
        # The last slot at or before now; slots missed by a late call are not sent.
        # At least one: float rounding must never leave a due slot in place.
        slots = max(1, int((now - self._heartbeat_slot) // interval))
        self._heartbeat_slot += slots * interval
        return RekeyAction(PushKind.HEARTBEAT, self._heartbeat_slot)
