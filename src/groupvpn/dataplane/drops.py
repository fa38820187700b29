"""Why a packet was dropped or refused, and the counters the data plane keeps of both.

Decapsulation never raises on what arrives: every packet it does not deliver becomes
a :class:`Dropped` with a reason from the fixed :class:`DropReason` set, counted in a
:class:`DropCounters`.  Encapsulation never crashes on what the LAN sends or on an SA
that has run out of nonces: it returns a :class:`Refused`, also counted.  The member
daemon shows the counters; the enums' values are the names it shows.

The results are shared, immutable objects (one per reason), so a flood of bad packets
costs a counter increment each and no allocation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class DropReason(enum.StrEnum):
    """Why an arriving ESP packet was not delivered."""

    TRUNCATED = "truncated"  # shorter than its headers, IV, ICV or IP total length say
    BAD_OUTER_HEADER = "bad-outer-header"  # not IPv4 ESP, a fragment, bad checksum or length
    BAD_SPI = "bad-spi"  # no SA for the SPI (the caller's lookup) or not this SA's SPI
    BAD_LENGTH = "bad-length"  # CBC ciphertext that is not whole blocks
    BAD_ICV = "bad-icv"  # integrity check failed: forged, corrupted or another key
    BAD_PADDING = "bad-padding"  # pad length too long, or pad octets not 1, 2, 3, ...
    BAD_NEXT_HEADER = "bad-next-header"  # neither IPv4 (4) nor the time header (253)
    MISSING_TIME_HEADER = "missing-time-header"  # anti-replay on, sender sent none
    BAD_INNER_HEADER = "bad-inner-header"  # the decrypted packet is not one IPv4 packet
    NO_GROUP_CLOCK = "no-group-clock"  # anti-replay on, and we do not know the group time
    OUTSIDE_ANTI_REPLAY_WINDOW = "outside-anti-replay-window"
    POLICY_MISMATCH = "policy-mismatch"  # the inner packet is outside the SA's own selectors
    REPLAYED = "replayed"  # an exact copy of a packet accepted before (replay.py)


class Refusal(enum.StrEnum):
    """Why a packet from the LAN was not encapsulated."""

    BAD_INNER_HEADER = "bad-inner-header"  # not one whole IPv4 packet
    TOO_BIG = "too-big"  # the ESP packet would exceed the 65,535-octet IPv4 limit
    NO_GROUP_CLOCK = "no-group-clock"  # anti-replay on, and we do not know the group time
    NONCE_EXHAUSTED = "nonce-exhausted"  # AES-GCM: the IV counter after the SID would wrap
    NO_SENDER_ID = "no-sender-id"  # AES-GCM key, but no sender ID from the key server
    NO_KEY = "no-key"  # matches a dynamic policy that has no key to encrypt with now
    TTL_EXCEEDED = "ttl-exceeded"  # inner TTL 0 or 1: a router may not forward it
    FRAGMENTATION_NEEDED = "fragmentation-needed"  # too big after ESP, and DF is set
    MTU_TOO_SMALL = "mtu-too-small"  # too big, and not even one fragment would fit


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: DropReason


@dataclass(frozen=True, slots=True)
class Refused:
    reason: Refusal


_DROPPED = {reason: Dropped(reason) for reason in DropReason}
_REFUSED = {reason: Refused(reason) for reason in Refusal}


class DropCounters:
    """Drops and refusals per reason; one object may serve many SAs (a whole member)."""

    __slots__ = ("dropped", "refused")

    def __init__(self) -> None:
        self.dropped: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
        self.refused: dict[Refusal, int] = dict.fromkeys(Refusal, 0)

    def __repr__(self) -> str:
        return f"DropCounters(dropped={self.total_dropped}, refused={self.total_refused})"

    def drop(self, reason: DropReason) -> Dropped:
        """Count one dropped packet; the result to hand back."""
        self.dropped[reason] += 1
        return _DROPPED[reason]

    def refuse(self, reason: Refusal) -> Refused:
        """Count one refused packet; the result to hand back."""
        self.refused[reason] += 1
        return _REFUSED[reason]

    def reset(self) -> None:
        """Every count back to zero, in place (the SAs hold this object)."""
        for reason in self.dropped:
            self.dropped[reason] = 0
        for refusal in self.refused:
            self.refused[refusal] = 0

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def total_refused(self) -> int:
        return sum(self.refused.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        """``{"dropped": {reason: count}, "refused": {...}}`` for views and JSON."""
        return {
            "dropped": {reason.value: count for reason, count in self.dropped.items()},
            "refused": {reason.value: count for reason, count in self.refused.items()},
        }
