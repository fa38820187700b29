"""What the key server's rekeys tell the daemon log: one event, one line, no secrets.

The events carry group names, addresses, SEQs, counts and reasons only; no key,
SPI-keyed secret or peer text.  :func:`describe` gives each its log level and
line, ``key=value`` like the other daemon lines (runtime/logfmt.py), so the
daemon logs them without knowing them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from groupvpn.ike.events import Address


@dataclass(frozen=True, slots=True)
class RekeySent:
    """A rekey push was built and signed; its copies go out paced (unicast) or at once."""

    group: str
    group_id: int
    seq: int
    reasons: tuple[str, ...]
    #: Unicast: members it is fanned out to.  Multicast: None (see ``destination``).
    members: int | None
    #: Multicast: ``group-address:port``; unicast: None.
    destination: str | None
    #: Group policies with a new TEK, and whether a new KEK rides along.
    renewed: tuple[str, ...]
    kek_rollover: bool
    deleted: int = 0
    #: An eviction: the push deletes the KEK, members register again for new keys.
    kek_deleted: bool = False


@dataclass(frozen=True, slots=True)
class HeartbeatSent:
    group: str
    group_id: int
    seq: int
    members: int | None
    destination: str | None


@dataclass(frozen=True, slots=True)
class RekeyRetransmitted:
    group: str
    address: str
    seq: int
    #: 2 for the first retransmission; ``copies_limit`` is 1 + number-of-retransmission.
    copy: int
    copies_limit: int


@dataclass(frozen=True, slots=True)
class AckReceived:
    group: str
    address: str
    seq: int
    #: ``server.delivery.AckResult`` value: accepted, duplicate, stale, too-late, ...
    result: str


@dataclass(frozen=True, slots=True)
class AckDropped:
    """An ACK that did not open: malformed, from nobody we know, or a forgery."""

    peer: Address
    reason: str  # push_ack.AckRejection value
    detail: str  # log-safe (push_ack builds it from numbers and our own words)
    #: ACKs dropped for this reason not reported since the last line (rate limit).
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class MemberInactive:
    """A unicast member never ACKed a rekey: it was removed from the group."""

    group: str
    group_id: int
    address: str
    seq: int
    copies: int


@dataclass(frozen=True, slots=True)
class RekeyCompleted:
    """Every member of a rekey ACKed it, was removed, or moved on to a newer push."""

    group: str
    seq: int
    acked: int
    removed: int
    withdrawn: int
    seconds: float


RekeyEvent = (
    RekeySent
    | HeartbeatSent
    | RekeyRetransmitted
    | AckReceived
    | AckDropped
    | MemberInactive
    | RekeyCompleted
)


def _to(members: int | None, destination: str | None) -> str:
    return f"multicast={destination}" if destination is not None else f"members={members}"


def describe(event: object) -> tuple[int, str] | None:
    """The log level and line of a rekey event; None for any other event."""
    if isinstance(event, RekeySent):
        renewed = ",".join(event.renewed) or "none"
        return logging.INFO, (
            f"rekey sent: group={event.group} group-id={event.group_id} seq={event.seq} "
            f"reasons={','.join(event.reasons)} {_to(event.members, event.destination)} "
            f"new-teks={renewed} kek={_kek_change(event)}"
            + (f" deleted-teks={event.deleted}" if event.deleted else "")
        )
    if isinstance(event, HeartbeatSent):
        return logging.INFO, (
            f"heartbeat sent: group={event.group} group-id={event.group_id} seq={event.seq} "
            f"{_to(event.members, event.destination)}"
        )
    if isinstance(event, RekeyRetransmitted):
        return logging.INFO, (
            f"rekey retransmitted: group={event.group} peer={event.address} seq={event.seq} "
            f"copy={event.copy}/{event.copies_limit}"
        )
    if isinstance(event, AckReceived):
        # One per member and rekey: thousands at once in a big group, which would
        # cost the fan-out a fifth of its time and drown the log.  The "rekey
        # complete" line counts them; anything but "accepted" is worth a line.
        level = logging.DEBUG if event.result == "accepted" else logging.INFO
        return level, (
            f"rekey ACK received: group={event.group} peer={event.address} seq={event.seq} "
            f"result={event.result}"
        )
    if isinstance(event, AckDropped):
        more = f" (and {event.suppressed} more since the last report)" if event.suppressed else ""
        return logging.WARNING, (
            f"rekey ACK dropped: peer={event.peer[0]}:{event.peer[1]} reason={event.reason} "
            f"detail={event.detail}{more}"
        )
    if isinstance(event, MemberInactive):
        return logging.WARNING, (
            f"member removed (inactive): group={event.group} group-id={event.group_id} "
            f"peer={event.address} seq={event.seq} copies={event.copies}"
        )
    if isinstance(event, RekeyCompleted):
        return logging.INFO, (
            f"rekey complete: group={event.group} seq={event.seq} acked={event.acked} "
            f"removed={event.removed} superseded={event.withdrawn} seconds={event.seconds:.3f}"
        )
    return None


def _kek_change(event: RekeySent) -> str:
    if event.kek_deleted:
        return "deleted(members-register-again)"
    return "rollover" if event.kek_rollover else "kept"
