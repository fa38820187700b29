"""The key server's group clock as a member sees it, for time-based anti-replay.

The key server hands out its group time at registration and in every rekey and
heartbeat (../shared/ARCHITECTURE.md, "Decisions already taken").  Members'
own clocks differ, so a member keeps only the offset between the group time and
its local monotonic clock; `group_time(now)` then holds across skewed clocks and
across local clock adjustments the monotonic clock does not see.
"""

from __future__ import annotations

__all__ = ["GroupClock"]


class GroupClock:
    """group time = local monotonic now + offset, the offset learnt from the server."""

    def __init__(self) -> None:
        self._offset: float | None = None
        self.synchronized_at: float | None = None

    def synchronize(self, group_time: float, now: float) -> None:
        """The server said the group time is `group_time`, received at local `now`.

        The newest statement wins: a server restarted with a new clock must be
        followed, and the transport delay it leaves in the offset (milliseconds)
        is far inside the anti-replay window (60-360 s, default 100).
        """
        self._offset = group_time - now
        self.synchronized_at = now

    def forget(self) -> None:
        """After `clear`: no group time until the next registration."""
        self._offset = None
        self.synchronized_at = None

    @property
    def offset(self) -> float | None:
        return self._offset

    def group_time(self, now: float) -> float | None:
        """The group time at local `now`; None before the server told us any."""
        return None if self._offset is None else now + self._offset
