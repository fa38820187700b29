"""A member's group keys for one group VPN: which key encrypts, which decrypt, and when.

Pure: no I/O, no clock, no global state; every call takes `now`.  One keyring per
group VPN, because activation-time-delay (ATD) and re-registration are per group
and SPIs are only unique within one key server's group.

The rules are the spec's, "Understanding Group VPNv1 Group Key Operations"
(../shared/seeds/000_c0cdc3497280ad89.txt), as the comments below quote them:

* per group policy (identified by its selectors) the member keeps the two most
  recent keys ("Key Activation": "retains the two most recent keys ... Both keys
  can be used for decryption, while the most recent key is used for encryption");
* a pushed key encrypts 2 x ATD after it arrived, a pulled key 1 x ATD after;
* a pull with two or more TEKs for a policy keeps the newest two, deletes the
  existing key, activates the older at once and the newer after ATD; the older
  then goes ATD after the newer activates ("The previous key is removed ...");
* one pulled TEK, or a pushed TEK, leaves the existing key until its hard
  lifetime ("The lifetime is not shortened for the existing TEK"): it stops
  encrypting when the new key activates and still decrypts until then.  This is
  the spec's specific sentence for these two cases, and it wins over the general
  "removed ATD after the new key is activated", which therefore applies to the
  multi-TEK pull only;
* a TEK whose lifetime is shorter than 2 x ATD is still installed, and every key
  goes at its hard lifetime;
* a member that got no newer key pulls at lifetime - 3 x ATD ("Member
  Registration"), see :meth:`GroupKeyring.refresh_at`.

One decision of ours: a key that arrives for a policy no key encrypts (first
registration, after `clear`, after the encrypting key expired or was replaced)
encrypts at once.  The delay exists so that the *previous* key stays in use
while every member installs the new one; with no previous key, waiting would
only drop traffic.  The multi-TEK rule ("the older TEK is activated
immediately") is the spec's own instance of this.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

from groupvpn.config.model_groups import DEFAULT_ACTIVATION_TIME_DELAY
from groupvpn.gdoi.sender_ids import SenderId
from groupvpn.member.keys import GroupSa

__all__ = [
    "DEFAULT_ACTIVATION_TIME_DELAY",
    "ChangeKind",
    "Delivery",
    "GroupKeyring",
    "KeyChange",
    "KeyState",
    "KeyStatus",
    "PolicySelectors",
]


@dataclass(frozen=True, slots=True)
class PolicySelectors:
    """What identifies a group policy: a new TEK with the same selectors rolls the old one."""

    source: IPv4Network
    destination: IPv4Network
    source_port: int
    destination_port: int
    protocol: int

    @classmethod
    def of(cls, sa: GroupSa) -> PolicySelectors:
        return cls(sa.source, sa.destination, sa.source_port, sa.destination_port, sa.protocol)

    def __str__(self) -> str:
        return (
            f"{self.source}:{self.source_port} -> {self.destination}:{self.destination_port}"
            f" protocol {self.protocol}"
        )


class KeyState(enum.Enum):
    PENDING = "pending"  # installed and decrypting, not yet encrypting
    ACTIVE = "active"  # the one key that encrypts the policy's traffic
    RETIRING = "retiring"  # decrypts until it is removed, never encrypts again


class Delivery(enum.Enum):
    PULL = "pull"  # registration or re-registration (GROUPKEY-PULL)
    PUSH = "push"  # rekey (GROUPKEY-PUSH)


class ChangeKind(enum.Enum):
    INSTALLED = "installed"
    ACTIVATED = "activated"
    RETIRED = "retired"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class KeyChange:
    """One transition, for the data plane to follow and the log to report (no key bytes)."""

    kind: ChangeKind
    at: float
    vpn: str
    spi: bytes
    selectors: PolicySelectors
    reason: str


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One key for `show security group-vpn member ipsec security-associations`."""

    vpn: str
    group_id: int
    spi: bytes
    selectors: PolicySelectors
    cipher: str
    integrity: str | None  # None for AES-GCM
    state: KeyState
    delivery: Delivery
    received_at: float
    expires_at: float  # the hard lifetime
    activates_at: float | None  # pending keys only
    removed_at: float  # the hard lifetime, or earlier once retiring under the ATD rule
    lifetime_remaining: float
    #: AES-GCM: the sender ID the key encrypts with (None: it cannot encrypt).
    sender_id: SenderId | None = None
    #: The key server's anti-replay-time-window in seconds; None: no anti-replay.
    anti_replay_window: int | None = None


@dataclass(slots=True)
class _HeldKey:
    sa: GroupSa
    delivery: Delivery
    atd: float
    received_at: float
    state: KeyState
    activate_at: float | None
    remove_at: float
    remove_reason: str
    #: Set on the newer key of a multi-TEK pull: when it activates, older keys go this
    #: many seconds later.  None: they stay until their hard lifetime.
    keep_previous_for: float | None = None


HARD_LIFETIME = "hard lifetime"


class GroupKeyring:
    """The keys of one group VPN's policies and their lifecycle on the caller's clock.

    Installs and :meth:`advance` return the :class:`KeyChange` list of what happened;
    lookups describe the state after the last call, so the caller runs
    :meth:`advance` at :meth:`next_deadline` (installs advance to `now` themselves).
    """

    def __init__(self) -> None:
        # Per policy, oldest key first.
        self._policies: dict[PolicySelectors, list[_HeldKey]] = {}
        self._by_spi: dict[bytes, _HeldKey] = {}
        # Policies whose encrypting key reached its hard lifetime with no successor.
        self._lapsed: dict[PolicySelectors, float] = {}

    # -- installing -------------------------------------------------------------------

    def install_pulled(
        self, sas: Iterable[GroupSa], now: float, atd: float = DEFAULT_ACTIVATION_TIME_DELAY
    ) -> list[KeyChange]:
        """Install a (re-)registration's group SAs: the group's whole current policy set.

        A policy held here but absent from the pull is no longer the group's (or no
        scope policy admits it now): its keys stop encrypting and only decrypt until
        their hard lifetime, for packets other members sent before they learnt.
        """
        _check_atd(atd)
        changes = self.advance(now)
        batches = _by_policy(sas)
        self._lapsed.clear()
        for selectors in list(self._policies):
            if selectors not in batches:
                changes += self._withdraw(selectors, now)
        for selectors, batch in batches.items():
            if len(batch) >= 2:
                changes += self._install_several(selectors, batch, now, atd)
            else:
                changes += self._install(selectors, batch[0], now, Delivery.PULL, atd, atd)
            changes += self._settle(selectors, now)
        return changes + self.advance(now)

    def install_pushed(
        self, sas: Iterable[GroupSa], now: float, atd: float = DEFAULT_ACTIVATION_TIME_DELAY
    ) -> list[KeyChange]:
        """Install a rekey's group SAs: each new key encrypts 2 x ATD from now."""
        _check_atd(atd)
        changes = self.advance(now)
        for selectors, batch in _by_policy(sas).items():
            self._lapsed.pop(selectors, None)
            for sa in batch:
                changes += self._install(selectors, sa, now, Delivery.PUSH, atd, 2 * atd)
            changes += self._settle(selectors, now)
        return changes + self.advance(now)

    def delete(self, spis: Iterable[bytes], now: float) -> list[KeyChange]:
        """Remove keys the key server deleted (a Delete payload in a rekey)."""
        changes = self.advance(now)
        for spi in spis:
            if (key := self._by_spi.get(spi)) is not None:
                changes.append(self._remove(key, now, "deleted by the key server"))
                changes += self._settle(PolicySelectors.of(key.sa), now)
        return changes + self.advance(now)

    def clear(self, now: float) -> list[KeyChange]:
        """Remove every key (`clear security group-vpn member ipsec security-associations`)."""
        changes = self.advance(now)  # what was due by now happened, whoever looks
        changes += [self._remove(key, now, "cleared") for key in list(self._by_spi.values())]
        self._lapsed.clear()
        return changes

    # -- time ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When the next key activates or goes; None when nothing is scheduled."""
        times = [key.remove_at for key in self._by_spi.values()]
        times += [k.activate_at for k in self._by_spi.values() if k.activate_at is not None]
        return min(times, default=None)

    def advance(self, now: float) -> list[KeyChange]:
        """Apply every transition due by `now`, each at its own scheduled time."""
        changes: list[KeyChange] = []
        while (due := self.next_deadline()) is not None and due <= now:
            for selectors in list(self._policies):
                changes += self._transitions_at(selectors, due)
        return changes

    def refresh_at(self) -> float | None:
        """When the member must pull because no newer key arrived ("Member Registration").

        Lifetime - 3 x ATD of the newest key of each policy that still has a key to
        encrypt with, the earliest of them.  A key that arrived already inside that
        window is the one a pull would bring again, so the member pulls when it
        expires instead of at once.  A policy whose last key expired unreplaced makes
        this the time it expired: in the past, i.e. pull now.  None: nothing to renew.
        """
        times = list(self._lapsed.values())
        for keys in self._policies.values():
            live = [key for key in keys if key.state is not KeyState.RETIRING]
            if live:
                newest = live[-1]
                refresh = newest.sa.expires_at - 3 * newest.atd
                times.append(newest.sa.expires_at if refresh <= newest.received_at else refresh)
        return min(times, default=None)

    # -- lookups ------------------------------------------------------------------------

    def policies(self) -> tuple[PolicySelectors, ...]:
        return tuple(self._policies)

    def encrypt_key(self, selectors: PolicySelectors) -> GroupSa | None:
        """The policy's active key: the newest that has passed its activation delay."""
        for key in self._policies.get(selectors, ()):
            if key.state is KeyState.ACTIVE:
                return key.sa
        return None

    def decrypt_keys(self, selectors: PolicySelectors) -> tuple[GroupSa, ...]:
        """Every key the policy holds, oldest first: pending keys decrypt too."""
        return tuple(key.sa for key in self._policies.get(selectors, ()))

    def decrypt_key(self, spi: bytes) -> GroupSa | None:
        key = self._by_spi.get(spi)
        return None if key is None else key.sa

    def knows(self, spis: Iterable[bytes]) -> bool:
        """Whether every SPI is held, e.g. the current TEKs a heartbeat lists."""
        return not self.unknown(spis)

    def unknown(self, spis: Iterable[bytes]) -> frozenset[bytes]:
        return frozenset(spi for spi in spis if spi not in self._by_spi)

    def status(self, now: float) -> list[KeyStatus]:
        return [
            KeyStatus(
                vpn=key.sa.vpn,
                group_id=key.sa.group_id,
                spi=key.sa.spi,
                selectors=selectors,
                cipher=key.sa.cipher.name,
                integrity=None if key.sa.integrity is None else key.sa.integrity.name,
                sender_id=key.sa.sender_id,
                anti_replay_window=key.sa.anti_replay_window,
                state=key.state,
                delivery=key.delivery,
                received_at=key.received_at,
                expires_at=key.sa.expires_at,
                activates_at=key.activate_at,
                removed_at=key.remove_at,
                lifetime_remaining=max(0.0, key.sa.expires_at - now),
            )
            for selectors, keys in self._policies.items()
            for key in keys
        ]

    # -- the steps ----------------------------------------------------------------------

    def _install(
        self,
        selectors: PolicySelectors,
        sa: GroupSa,
        now: float,
        delivery: Delivery,
        atd: float,
        wait: float,
        keep_previous_for: float | None = None,
        *,
        newest: bool | None = None,
    ) -> list[KeyChange]:
        """Install `sa` to encrypt `wait` seconds from now, or refresh it if held.

        `newest`: whether no key held for the policy is newer than this one (None:
        no live key after it in the list).  A retiring key the server sends again as
        the newest (its policy was withdrawn and is back) starts over as a new key.
        """
        changes = []
        key = self._by_spi.get(sa.spi)
        if key is not None and (previous := PolicySelectors.of(key.sa)) != selectors:
            changes.append(self._remove(key, now, "its SPI now names another policy"))
            changes += self._settle(previous, now)
            key = None
        if key is not None and key.state is KeyState.RETIRING:
            if newest is None:
                keys = self._policies[selectors]
                later = keys[keys.index(key) + 1 :]
                newest = all(other.state is KeyState.RETIRING for other in later)
            if newest:
                changes.append(self._remove(key, now, "received again after it retired"))
                key = None
        if key is not None:
            # The same key again (a re-registration that found no rekey): the
            # server's word on its lifetime, but never a step back in its state.
            key.sa, key.received_at, key.atd = sa, now, atd
            if key.state is KeyState.RETIRING:
                key.remove_at = min(key.remove_at, sa.expires_at)
            else:
                key.remove_at, key.remove_reason = sa.expires_at, HARD_LIFETIME
            if key.activate_at is not None:
                key.activate_at = min(key.activate_at, now + wait)
            if keep_previous_for is not None:
                key.keep_previous_for = keep_previous_for
            return changes
        key = _HeldKey(
            sa, delivery, atd, now, KeyState.PENDING, now + wait, sa.expires_at, HARD_LIFETIME,
            keep_previous_for,
        )  # fmt: skip
        self._policies.setdefault(selectors, []).append(key)
        self._by_spi[sa.spi] = key
        changes.append(self._change(ChangeKind.INSTALLED, key, now, f"{delivery.value}ed"))
        return changes

    def _install_several(
        self, selectors: PolicySelectors, batch: list[GroupSa], now: float, atd: float
    ) -> list[KeyChange]:
        # "holds the most recent two TEKs and deletes the existing TEK.  Of the two
        # held TEKs, the older TEK is activated immediately, and the newer TEK is
        # activated after the activation-time-delay".  Recency within one pull is
        # the later hard lifetime (the key the server made later), then payload order.
        older, newer = sorted(batch, key=lambda sa: sa.expires_at)[-2:]
        changes = [
            self._remove(key, now, "a pull brought two newer keys")
            for key in list(self._policies.get(selectors, ()))
            if key.sa.spi not in (older.spi, newer.spi)
        ]
        held_newer = self._by_spi.get(newer.spi)
        older_is_newest = held_newer is None or held_newer.state is not KeyState.ACTIVE
        changes += self._install(
            selectors, older, now, Delivery.PULL, atd, 0, newest=older_is_newest
        )
        changes += self._install(selectors, newer, now, Delivery.PULL, atd, atd, atd, newest=True)
        self._policies[selectors] = [self._by_spi[older.spi], self._by_spi[newer.spi]]
        return changes

    def _withdraw(self, selectors: PolicySelectors, now: float) -> list[KeyChange]:
        changes = []
        for key in self._policies[selectors]:
            if key.state is not KeyState.RETIRING:
                key.state, key.activate_at = KeyState.RETIRING, None
                reason = "policy not in the latest pull"
                changes.append(self._change(ChangeKind.RETIRED, key, now, reason))
        return changes

    def _transitions_at(self, selectors: PolicySelectors, at: float) -> list[KeyChange]:
        changes = []
        keys = self._policies[selectors]
        lost_encryption = False
        for key in [key for key in keys if key.remove_at <= at]:
            lost_encryption |= key.state is not KeyState.RETIRING
            changes.append(self._remove(key, at, key.remove_reason))
        for key in list(keys):
            due = key.activate_at
            if key.state is KeyState.PENDING and due is not None and due <= at:
                changes += self._activate(selectors, key, at, "activation-time-delay over")
        changes += self._settle(selectors, at)
        if lost_encryption and self.encrypt_key(selectors) is None:
            self._lapsed.setdefault(selectors, at)
        return changes

    def _settle(self, selectors: PolicySelectors, now: float) -> list[KeyChange]:
        """Hold at most two keys, and never leave a pending key behind no active one."""
        keys = self._policies.get(selectors, [])
        changes = []
        while len(keys) > 2:
            changes.append(self._remove(keys[0], now, "two newer keys arrived"))
        states = [key.state for key in keys]
        if KeyState.ACTIVE not in states and KeyState.PENDING in states:
            pending = keys[states.index(KeyState.PENDING)]
            changes += self._activate(selectors, pending, now, "no other key encrypts")
        return changes

    def _activate(
        self, selectors: PolicySelectors, key: _HeldKey, at: float, reason: str
    ) -> list[KeyChange]:
        keys = self._policies[selectors]
        newer = keys[keys.index(key) + 1 :]
        key.activate_at = None
        if any(other.state is KeyState.ACTIVE for other in newer):
            # Only a server sending keys out of order gets here; "the most recent
            # key is used for encryption", so this one never does.
            key.state = KeyState.RETIRING
            return [self._change(ChangeKind.RETIRED, key, at, "a newer key encrypts")]
        key.state = KeyState.ACTIVE
        changes = [self._change(ChangeKind.ACTIVATED, key, at, reason)]
        for older in keys[: keys.index(key)]:
            if older.state is KeyState.RETIRING:
                continue
            older.state, older.activate_at = KeyState.RETIRING, None
            if key.keep_previous_for is not None:
                # "The previous key is removed the number of seconds specified by the
                # activation-time-delay value after the new key is activated."
                removal = at + key.keep_previous_for
                if removal < older.remove_at:
                    older.remove_at = removal
                    older.remove_reason = "activation-time-delay after a newer key activated"
            spi = key.sa.spi.hex()
            changes.append(self._change(ChangeKind.RETIRED, older, at, f"{spi} activated"))
        return changes

    def _remove(self, key: _HeldKey, at: float, reason: str) -> KeyChange:
        selectors = PolicySelectors.of(key.sa)
        keys = self._policies[selectors]
        keys.remove(key)
        if not keys:
            del self._policies[selectors]
        del self._by_spi[key.sa.spi]
        return self._change(ChangeKind.REMOVED, key, at, reason)

    @staticmethod
    def _change(kind: ChangeKind, key: _HeldKey, at: float, reason: str) -> KeyChange:
        sa = key.sa
        return KeyChange(kind, at, sa.vpn, sa.spi, PolicySelectors.of(sa), reason)


def _by_policy(sas: Iterable[GroupSa]) -> dict[PolicySelectors, list[GroupSa]]:
    """The SAs per policy in payload order, one per SPI (a repeated SPI: the last wins)."""
    batches: dict[PolicySelectors, dict[bytes, GroupSa]] = {}
    for sa in sas:
        batch = batches.setdefault(PolicySelectors.of(sa), {})
        batch.pop(sa.spi, None)
        batch[sa.spi] = sa
    return {selectors: list(batch.values()) for selectors, batch in batches.items()}


def _check_atd(atd: float) -> None:
    if atd < 0:
        raise ValueError(f"activation-time-delay {atd} is negative")
