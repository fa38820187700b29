"""Where GROUPKEY-PUSH datagrams enter the member: opened, applied or dropped and counted.

:class:`PushInbox` opens a push against the KEK of every VPN that has one
(:func:`groupvpn.gdoi.push.open_push` finds it by the cookies), hands a verified
one to that VPN's :class:`GroupKeys`, and queues its ACK to the address the push
came from.  Pushes it does not apply (``unknown-kek``, ``bad-signature``,
``replayed-seq``, ``malformed``, and authentic ones carrying something we cannot
use, counted as ``malformed``) change nothing and are counted per reason.

A forged or replayed push costs an attacker one datagram and us one log line at
most per reason and interval: the first of each reason is reported at once, later
ones at most once per :data:`REPORT_INTERVAL` with the number left unreported since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from groupvpn.gdoi.push import PushReceiver, PushRejected, PushRejection, open_push
from groupvpn.ike.events import Address
from groupvpn.member.rekeys import GroupKeys, KeysEvent, UnusablePush
from groupvpn.wire.dialect import Dialect

#: Seconds between two reports of the same reason.
REPORT_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class PushDropped:
    """A GROUPKEY-PUSH that was dropped (the event behind a rate-limited log line)."""

    peer: Address
    reason: str  # a PushRejection value
    detail: str  # log-safe: numbers, hex and our own words
    vpn: str | None  # None when the KEK SPI names none of ours
    count: int  # drops for this reason so far
    suppressed: int  # drops for this reason not reported since the last report


class PushDrops:
    """Per-reason counters and the report rate limit, on the caller's clock."""

    def __init__(self, interval: float = REPORT_INTERVAL) -> None:
        self.interval = interval
        self.counts: dict[str, int] = {reason.value: 0 for reason in PushRejection}
        self._reported_at: dict[str, float] = {}
        self._unreported: dict[str, int] = {}

    def record(
        self, reason: str, detail: str, peer: Address, vpn: str | None, now: float
    ) -> PushDropped | None:
        """Count one drop; the event to report, or None while the reason is rate limited."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        last = self._reported_at.get(reason)
        if last is not None and now < last + self.interval:
            self._unreported[reason] = self._unreported.get(reason, 0) + 1
            return None
        self._reported_at[reason] = now
        suppressed = self._unreported.pop(reason, 0)
        return PushDropped(peer, reason, detail, vpn, self.counts[reason], suppressed)


@dataclass
class Delivered:
    """What one push led to: events, an ACK to send, and which VPN it changed."""

    events: list[KeysEvent | PushDropped] = field(default_factory=list)
    ack: tuple[bytes, Address] | None = None
    vpn: str | None = None  # the VPN whose keys it changed; None if dropped


class PushInbox:
    """Opens pushes for the VPNs of one member core and applies them."""

    def __init__(self, keys: Mapping[str, GroupKeys], dialect: Dialect) -> None:
        self._keys = keys
        self.dialect = dialect
        self.drops = PushDrops()

    def receive(self, data: bytes, addr: Address, now: float) -> Delivered:
        for keys in self._keys.values():
            copy, again = keys.copy_of_accepted(data)
            if copy:
                # Counted as the replay it is, and ACKed again: the server sends a copy
                # only when our ACK did not reach it.  Cheaper than opening it, and it
                # works for the copies of a rollover under the KEK we just replaced.
                detail = "a copy of a push already accepted" + (", ACKed again" if again else "")
                delivered = self._dropped(
                    PushRejection.REPLAYED_SEQ, detail, addr, None, now, owner=keys
                )
                delivered.ack = None if again is None else (again, addr)
                return delivered
        receivers: dict[bytes, PushReceiver] = {}
        for keys in self._keys.values():
            if keys.kek is not None and (receiver := keys.receiver(self.dialect)) is not None:
                receivers[keys.kek.spi] = receiver
        result = open_push(data, receivers)
        if isinstance(result, PushRejected):
            return self._dropped(result.reason, result.detail, addr, result.kek_spi, now)
        owner = self._owner(result.kek_spi)
        assert owner is not None  # open_push found its receiver
        try:
            applied = owner.apply(result, now, data)
        except UnusablePush as exc:
            detail = f"unusable: {exc}"
            return self._dropped(PushRejection.MALFORMED, detail, addr, result.kek_spi, now)
        reply = None if applied.ack is None else (applied.ack, addr)  # back where it came from
        return Delivered(list(applied.events), reply, owner.vpn)

    def _dropped(
        self,
        reason: str,
        detail: str,
        addr: Address,
        spi: bytes | None,
        now: float,
        owner: GroupKeys | None = None,
    ) -> Delivered:
        keys = owner or (self._owner(spi) if spi is not None else None)
        vpn = keys.vpn if keys is not None else None
        event = self.drops.record(reason, detail, addr, vpn, now)
        return Delivered([] if event is None else [event])

    def _owner(self, spi: bytes) -> GroupKeys | None:
        return next(
            (k for k in self._keys.values() if k.kek is not None and k.kek.spi == spi), None
        )
