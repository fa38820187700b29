"""When each IKE SA next needs attention, without scanning every SA.

A key server holds one IKE SA per registered member, thousands of them, and the
shell asks for the next deadline after every datagram.  Scanning all SAs for it
is O(n) per packet; this heap makes it O(log n).

Deadlines move (a reply cancels a retransmission, an SA is established and gets
its lifetime), so entries are not updated in place.  Each item remembers the one
deadline that is current for it; a heap entry that disagrees is stale and is
skipped when it reaches the top.  Stale entries are bounded: every reschedule
adds one, and each is popped at most once.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)


class DeadlineHeap(Generic[Item]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Item]] = []
        self._current: dict[Item, float] = {}
        # Ties are broken by insertion order, never by comparing items.
        self._order = itertools.count()

    def schedule(self, item: Item, deadline: float | None) -> None:
        """Make ``deadline`` the item's only deadline; None means it has none."""
        if deadline is None:
            self._current.pop(item, None)
            return
        if self._current.get(item) == deadline:
            return
        self._current[item] = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), item))

    def cancel(self, item: Item) -> None:
        self._current.pop(item, None)

    def next_deadline(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Item]:
        """Every item whose deadline is at or before ``now``, earliest first.

        The items are unscheduled; the caller reschedules those that still
        have something to wait for.
        """
        due: list[Item] = []
        while True:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, item = heapq.heappop(self._heap)
            del self._current[item]
            due.append(item)

    def __len__(self) -> int:
        return len(self._current)

    def _drop_stale(self) -> None:
        heap, current = self._heap, self._current
        while heap and current.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
