"""The member's watch on its key server's heartbeats (`heartbeat-threshold`).

Spec, "Understanding Group VPNv1 Heartbeat Messages": the server sends a
heartbeat every `heartbeat` seconds; a member that misses `heartbeat-threshold`
of them (the server rebooted, say), or learns from one that it missed a rekey,
registers again.  `heartbeat-threshold 0` turns detection off, both kinds:
"heartbeat detection can be disabled on the member" because heartbeats "cause
unnecessary member reregistrations", whichever way they trigger one.

Pure like the keyring: the caller passes `now` and acts on :meth:`expired`.
"""

from __future__ import annotations

from groupvpn.config.model_groups import DEFAULT_HEARTBEAT, DEFAULT_HEARTBEAT_THRESHOLD

__all__ = ["DEFAULT_HEARTBEAT", "DEFAULT_HEARTBEAT_THRESHOLD", "HeartbeatMonitor"]


class HeartbeatMonitor:
    """Counts the heartbeats a registered member missed from one group's key server.

    The server's timer, not ours, decides when heartbeats leave, so after one heard
    at `t` the k-th next is due at `t + k * interval`; it counts as missed only
    `grace` seconds later (transport delay, the server's timer running late).
    Default grace: half an interval.  With the defaults (300 s, 3 heartbeats) a
    member re-registers 3 * 300 + 150 = 1050 s after the last heartbeat it heard.
    Any verified push proves the server alive, so rekeys count as heard too.
    """

    def __init__(
        self,
        interval: float = DEFAULT_HEARTBEAT,
        threshold: int = DEFAULT_HEARTBEAT_THRESHOLD,
        *,
        grace: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval {interval} is not positive")
        if threshold < 0:
            raise ValueError(f"heartbeat-threshold {threshold} is negative")
        self.interval = interval
        self.threshold = threshold
        self.grace = interval / 2 if grace is None else grace
        self._last_heard: float | None = None  # None: not watching (not registered)
        self._last_sequence: int | None = None
        self._missed_rekey: str | None = None

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def start(self, now: float, sequence: int | None = None) -> None:
        """Watch from a registration done at `now` (its SEQ, when the group has a KEK)."""
        self._last_heard = now
        self._last_sequence = sequence
        self._missed_rekey = None

    def stop(self) -> None:
        """Not registered (registering again, or cleared): nothing to watch."""
        self._last_heard = None
        self._last_sequence = None
        self._missed_rekey = None

    def heard(self, now: float, sequence: int, *, keys_known: bool = True) -> bool:
        """A verified heartbeat or rekey arrived; False if ignored as stale.

        `keys_known` is the heartbeat's verdict on our keys, e.g.
        ``keyring.knows(current_tek_spis)``: False means we missed a rekey.
        SEQ is checked before this (a replay never gets here); a SEQ not above the
        last one heard is still ignored so a reordered copy cannot move the watch.
        """
        if self._last_heard is None:
            return False
        if self._last_sequence is not None and sequence <= self._last_sequence:
            return False
        self._last_sequence = sequence
        self._last_heard = max(self._last_heard, now)
        if not keys_known and self._missed_rekey is None:
            self._missed_rekey = f"heartbeat SEQ {sequence} lists keys this member lacks"
        return True

    def missed(self, now: float) -> int:
        """How many heartbeats are overdue by more than the grace."""
        if self._last_heard is None:
            return 0
        return max(0, int((now - self._last_heard - self.grace) // self.interval))

    def deadline(self) -> float | None:
        """When `threshold` heartbeats will have been missed; None when not watching."""
        if not self.enabled or self._last_heard is None:
            return None
        if self._missed_rekey is not None:
            return self._last_heard
        return self._last_heard + self.threshold * self.interval + self.grace

    def expired(self, now: float) -> bool:
        """True when the member must register again."""
        return self.reason(now) is not None

    def reason(self, now: float) -> str | None:
        """Why the member must register again, for the log; None while all is well."""
        if not self.enabled or self._last_heard is None:
            return None
        if self._missed_rekey is not None:
            return self._missed_rekey
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            # Compared with the deadline itself, so the decision and deadline() agree
            # to the last bit whatever floating-point division would round to.
            missed = max(self.missed(now), self.threshold)
            return f"{missed} heartbeats missed (heartbeat-threshold {self.threshold})"
        return None
