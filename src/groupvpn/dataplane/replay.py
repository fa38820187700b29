"""Exact copies of authentic ESP packets, dropped as replays within a bounded memory.

Time-based anti-replay (antireplay.py) rejects a packet whose group time is outside
the window, but a copy replayed *inside* the window carries a valid time.  A group SA
has many senders, so RFC 4303's per-SA sequence window does not apply.  What does:
every authentic packet ends in an ICV that no other packet shares (each packet has its
own IV or nonce under a key only the group holds), so the member remembers the last
octets of the last :data:`REPLAY_MEMORY` packets it accepted, and a packet that ends
the same way is a copy.  Only packets whose ICV verified are remembered, so a forger
cannot fill the memory to get a real packet dropped.

The memory is bounded (about 5 MiB): at 100,000 packets per second it covers the
last 0.65 s, at 1,000 per second a minute.  A copy older than that but inside the
time window is not caught; the window still bounds it (docs/dataplane.md).
"""

from __future__ import annotations

from collections import deque

__all__ = ["REPLAY_MEMORY", "TAIL_LENGTH", "RecentPackets"]

#: How many accepted packets are remembered.
REPLAY_MEMORY = 65_536
#: The octets remembered of each: the ICV (12 or 16 octets) and what precedes it.
TAIL_LENGTH = 16


class RecentPackets:
    """The tails of the last ``capacity`` accepted packets, oldest forgotten first."""

    __slots__ = ("_capacity", "_order", "_seen")

    def __init__(self, capacity: int = REPLAY_MEMORY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._seen: set[bytes] = set()
        self._order: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def replayed(self, packet: bytes) -> bool:
        """True if a packet ending like ``packet`` was accepted before; else remember it."""
        tail = packet[-TAIL_LENGTH:]
        seen = self._seen
        if tail in seen:
            return True
        seen.add(tail)
        order = self._order
        order.append(tail)
        if len(order) > self._capacity:
            seen.discard(order.popleft())
        return False
