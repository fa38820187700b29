"""Time-based anti-replay: the group-time header in every ESP payload, and the window.

A group SA's key is shared by every member, so the ESP sequence number cannot stop
replays: each sender counts on its own, and a receiver cannot keep a window per
sender it has never heard of.  Instead each packet carries the time it was sent on
the key server's group clock (docs/rekey-wire.md; a member learns the clock at
registration and from every rekey and heartbeat), and a receiver drops packets whose
time is more than ``anti-replay-time-window`` away from its own group time.  A
captured packet can then be replayed only within the window, and members with skewed
wall clocks still agree, because the group clock is the key server's.

The wire format (docs/dataplane.md §3): ESP next header :data:`NEXT_HEADER_GROUP_TIME`
(253, RFC 3692's experimental value) means the payload is an 8-octet header, the
sender's group time in milliseconds as an unsigned big-endian integer (the unit of
``GROUP_CLOCK_ATTRIBUTE``), followed by the inner IPv4 packet.  With ``no-anti-replay``
the payload is the bare inner packet with next header 4, as any RFC 4303 peer sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from groupvpn.gdoi.push import GROUP_CLOCK_LENGTH

#: ESP next header: the payload is an IPv4 packet (RFC 4303 tunnel mode).
NEXT_HEADER_IPV4 = 4
#: ESP next header: the payload is our group-time header, then an IPv4 packet.
NEXT_HEADER_GROUP_TIME = 253
#: Octets of the group-time header: the same 8 octets as the GROUP_CLOCK attribute.
TIME_HEADER_LENGTH = GROUP_CLOCK_LENGTH

MS_PER_SECOND = 1000
_MAX_MS = (1 << (8 * TIME_HEADER_LENGTH)) - 1


def group_time_ms(group_time: float) -> int:
    """Group time in seconds (as ``GroupClock.group_time`` gives it) in milliseconds.

    Rounded, not truncated: 1.001 s is 1000.9999999999999 ms in binary floating point.
    """
    return round(group_time * MS_PER_SECOND)


def time_header(group_time: float) -> bytes | None:
    """The 8-octet header for ``group_time`` (seconds); None if it does not fit 8 octets."""
    if not math.isfinite(group_time):
        return None
    ms = group_time_ms(group_time)
    if not 0 <= ms <= _MAX_MS:
        return None
    return ms.to_bytes(TIME_HEADER_LENGTH, "big")


def read_time_header(payload: bytes) -> int | None:
    """The sender's group time (ms) at the start of ``payload``; None if it is too short."""
    if len(payload) < TIME_HEADER_LENGTH:
        return None
    return int.from_bytes(payload[:TIME_HEADER_LENGTH], "big")


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A group's ``anti-replay-time-window`` in ms; ``None`` is ``no-anti-replay``.

    Junos v1 configures it in seconds (60-360, default 100) and v2 in milliseconds
    (1-60000); keeping milliseconds here serves both.
    """

    milliseconds: int | None

    def __post_init__(self) -> None:
        if self.milliseconds is not None and self.milliseconds <= 0:
            raise ValueError(f"an anti-replay window must be positive, not {self.milliseconds}")

    @classmethod
    def seconds(cls, window: float | None) -> TimeWindow:
        """From the v1 statement (seconds); None for ``no-anti-replay``."""
        return cls(None if window is None else round(window * MS_PER_SECOND))

    @classmethod
    def disabled(cls) -> TimeWindow:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.milliseconds is not None

    def accepts(self, sent_ms: int, now_ms: int) -> bool:
        """Whether a packet stamped ``sent_ms`` is fresh at our group time ``now_ms``.

        Both directions count: a packet from the future beyond the window is as
        suspect as an old one (it could be replayed later), and a sender whose
        clock runs ahead by more than the window is out of sync with the group.
        """
        if self.milliseconds is None:
            return True
        return abs(now_ms - sent_ms) <= self.milliseconds
