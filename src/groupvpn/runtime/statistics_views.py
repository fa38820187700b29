"""The JSON of `show security group-vpn server statistics` (keys in docs/operations.md)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.runtime.views import Clock, JsonDict, phase1_drop_counts
from groupvpn.server.groups import GroupKeyServer
from groupvpn.server.statistics import ServerStatistics

log = logging.getLogger("groupvpn")


def statistics_view(
    statistics: ServerStatistics,
    groups: GroupKeyServer,
    clock: Clock,
    endpoints: Iterable[IkeEndpoint],
) -> JsonDict:
    """The counters with the groups configured now and their current member counts."""
    members = Counter(record.group for record in groups.members())
    configured = [(d.name, d.group_id) for d in groups.definitions()]
    return statistics.view(configured, dict(members), clock.now, clock.utc(statistics.since),
                           phase1_drop_counts(endpoints))  # fmt: skip


def clear_statistics(
    statistics: ServerStatistics, now: float, endpoints: Iterable[IkeEndpoint]
) -> None:
    """`clear security group-vpn server statistics`, noted in the log for the audit trail."""
    statistics.clear(now, phase1_drop_counts(endpoints))
    log.info("event=statistics-cleared server statistics cleared by operator")
