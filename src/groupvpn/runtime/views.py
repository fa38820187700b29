"""What the `show` commands return: JSON-ready dicts with stable, Junos-style keys.

The keys are hyphenated like Junos's own JSON output and documented in
docs/operational-commands.md; scripts and monitoring read them, so they only
ever grow.  Times inside the cores are monotonic; here they become remaining
seconds or UTC timestamps.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from groupvpn.ike.endpoint import IkeEndpoint

JsonDict = dict[str, Any]


class Clock:
    """Converts the cores' monotonic times into wall-clock UTC for display."""

    def __init__(self, monotonic_now: float, wall_now: float | None = None) -> None:
        self.now = monotonic_now
        self._offset = (time.time() if wall_now is None else wall_now) - monotonic_now

    def utc(self, monotonic: float) -> str:
        moment = datetime.fromtimestamp(monotonic + self._offset, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def remaining(self, deadline: float | None) -> int | None:
        return None if deadline is None else max(0, int(deadline - self.now))


def ike_security_associations(endpoints: Iterable[IkeEndpoint], clock: Clock) -> JsonDict:
    endpoints = list(endpoints)
    rows = []
    # Negotiations waiting for MM3, and Phase 1 drops by reason (docs/hostile-network.md).
    half_open = sum(endpoint.half_open_count() for endpoint in endpoints)
    dropped = dict(phase1_drop_counts(endpoints))
    for endpoint in endpoints:
        for sa in endpoint.established():
            expires = sa.established_at + sa.lifetime_seconds
            rows.append(
                {
                    "remote-address": sa.peer[0],
                    "remote-port": sa.peer[1],
                    "local-address": endpoint.local_address,
                    "gateway": sa.gateway,
                    "state": "UP",
                    "initiator-cookie": sa.initiator_cookie.hex(),
                    "responder-cookie": sa.responder_cookie.hex(),
                    "role": sa.role,
                    "mode": sa.mode,
                    "encryption": sa.encryption,
                    "authentication": sa.hash,
                    "dh-group": sa.dh_group,
                    "lifetime-remaining": clock.remaining(expires),
                    "established": clock.utc(sa.established_at),
                    "local-identity": sa.local_identity,
                    "remote-identity": sa.remote_identity,
                }
            )
    for index, row in enumerate(rows, start=1):
        row["index"] = index
    return {"security-associations": rows, "half-open": half_open, "phase1-drops": dropped}


def selectors(source: object, destination: object, sport: int, dport: int, proto: int) -> JsonDict:
    return {
        "source": str(source),
        "destination": str(destination),
        "source-port": sport,
        "destination-port": dport,
        "protocol": proto,
    }


def phase1_drop_counts(endpoints: Iterable[IkeEndpoint]) -> Counter[str]:
    """Every IKE endpoint's Phase 1 drops since it started, by reason, added up."""
    total: Counter[str] = Counter()
    for endpoint in endpoints:
        total.update({reason.value: count for reason, count in endpoint.drop_counts.items()})
    return total
