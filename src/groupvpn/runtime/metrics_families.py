"""The Prometheus metrics of each daemon, built from the JSON views `show` prints.

Building them from the views (not from the counters directly) means a scrape and
`show ... statistics --json` can never disagree.  The text is rendered by
``prometheus_client`` (exposition format 0.0.4: HELP and TYPE lines, escaping
of label values); each scrape builds fresh families, so nothing is registered
globally.  Names carry the ``groupvpn_`` prefix, counters end in ``_total`` and
bytes in ``_bytes``; labels are ``group`` (the server's group name), ``vpn``
(the member's group VPN name), ``reason``, ``result`` and ``direction``, all
from small fixed sets.  No key, PSK or other secret is in any view, so none can
reach a metric.  docs/operations.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

JsonDict = dict[str, Any]

#: (metric name without _total, help, view key) of the per-group server counters.
_SERVER_GROUP_COUNTERS = (
    ("registrations", "Members registered (GROUPKEY-PULL completed).", "registrations"),
    ("rekeys_sent", "Rekey pushes sent (one per SEQ, with new keys or deletes).",
     "rekeys-sent"),
    ("heartbeats_sent", "Heartbeat pushes sent (one per SEQ).", "heartbeats-sent"),
    ("push_copies_sent", "First copies of rekeys and heartbeats: one per unicast member, "
     "one per multicast push.", "push-copies-sent"),
    ("rekey_retransmissions", "Unicast rekey copies sent again for want of an ACK.",
     "retransmissions"),
    ("rekeys_completed", "Unicast rekeys that every member ACKed, left or moved on from.",
     "rekeys-completed"),
)  # fmt: skip


def render(families: Callable[[], Iterable[Metric]]) -> bytes:
    """The exposition text of ``families()`` plus this process's own process_* metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    ProcessCollector(namespace="groupvpn", registry=registry)
    return generate_latest(registry)


class _Families(Collector):
    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families()


def server_families(view: JsonDict) -> list[Metric]:
    """Metrics of `show security group-vpn server statistics --json`."""
    groups = view["groups"]
    members = GaugeMetricFamily(
        "groupvpn_server_members", "Members registered now.", labels=["group"]
    )
    families: list[Metric] = [members]
    for group in groups:
        members.add_metric([group["group"]], group["members"])
    for name, help_text, key in _SERVER_GROUP_COUNTERS:
        family = CounterMetricFamily(f"groupvpn_server_{name}", help_text, labels=["group"])
        for group in groups:
            family.add_metric([group["group"]], group[key])
        families.append(family)
    for name, help_text, key, label in (
        ("rekey_reasons", "Rekeys sent per reason (a rekey with two reasons counts twice).",
         "rekeys-by-reason", "reason"),
        ("acks_received", "Rekey ACKs that verified, per result.", "acks-by-result", "result"),
        ("members_removed", "Members removed from the group, per reason (inactive: no ACK "
         "after every retransmission).", "members-removed-by-reason", "reason"),
    ):  # fmt: skip
        family = CounterMetricFamily(f"groupvpn_server_{name}", help_text,
                                     labels=["group", label])  # fmt: skip
        for group in groups:
            for value, count in group[key].items():
                family.add_metric([group["group"], value], count)
        families.append(family)
    for name, help_text, key in (
        ("registration_failures", "Registrations refused or broken, per reason.",
         "registration-failures"),
        ("acks_dropped", "Rekey ACKs dropped because they did not open or verify.",
         "acks-dropped"),
        ("phase1_drops", "IKE Phase 1 datagrams dropped, per reason (docs/hostile-network.md).",
         "phase1-drops"),
    ):  # fmt: skip
        family = CounterMetricFamily(f"groupvpn_server_{name}", help_text, labels=["reason"])
        for reason, count in view[key].items():
            family.add_metric([reason], count)
        families.append(family)
    families.append(_since("server", view["seconds"]))
    return families


def member_families(
    statistics: JsonDict, keks: JsonDict | None = None, ike: JsonDict | None = None
) -> list[Metric]:
    """Metrics of `show security group-vpn member ipsec statistics --json` and, when
    given, the rekey counters of `show ... member kek security-associations --json`
    and the registration state of `show ... member ike security-associations --json`."""
    families: list[Metric] = []
    if ike is not None:
        families += _member_registration_families(ike)
    engine = statistics.get("engine")
    if engine is not None:
        for name, help_text, unit_in, unit_out in (
            ("esp_packets", "ESP packets through the group SAs.", "packets-in", "packets-out"),
            ("esp_bytes", "Octets of the inner packets the group SAs carried.", "bytes-in",
             "bytes-out"),
        ):  # fmt: skip
            family = CounterMetricFamily(f"groupvpn_member_{name}", help_text,
                                         labels=["direction"])  # fmt: skip
            family.add_metric(["in"], engine.get(unit_in, 0))
            family.add_metric(["out"], engine.get(unit_out, 0))
            families.append(family)
        for name, help_text, key in (
            ("clear_packets", "Packets passed in clear (no dynamic policy matched).",
             "clear-packets"),
            ("fragments", "ESP fragments sent (inner packet too big for one).", "fragments"),
            ("icmp_errors", "ICMP errors sent to the LAN (too big, TTL exceeded).",
             "icmp-errors"),
        ):  # fmt: skip
            families.append(
                CounterMetricFamily(f"groupvpn_member_{name}", help_text, engine.get(key, 0))
            )
        for name, help_text, key in (
            ("esp_drops", "Arriving ESP packets not delivered, per reason.", "dropped"),
            ("esp_refused", "LAN packets not sent as ESP, per reason.", "refused"),
        ):
            family = CounterMetricFamily(f"groupvpn_member_{name}", help_text,
                                         labels=["reason"])  # fmt: skip
            for reason, count in engine.get(key, {}).items():
                family.add_metric([reason], count)
            families.append(family)
        families.append(_since("member", statistics.get("seconds", 0)))
    if keks is not None:
        families += _member_kek_families(keks)
    return families


def _member_registration_families(ike: JsonDict) -> list[Metric]:
    registered = GaugeMetricFamily(
        "groupvpn_member_registered",
        "1 while the group VPN is registered with its key server, else 0.",
        labels=["vpn"],
    )
    failures = GaugeMetricFamily(
        "groupvpn_member_registration_failures",
        "Registration attempts failed in a row (0 after a success).",
        labels=["vpn"],
    )
    for status in ike.get("registrations", []):
        registered.add_metric([status["vpn"]], 1 if status["state"] == "registered" else 0)
        failures.add_metric([status["vpn"]], status["failures"])
    return [registered, failures]


def _member_kek_families(keks: JsonDict) -> list[Metric]:
    sas = [sa for sa in keks.get("security-associations", []) if "rekeys-received" in sa]
    families: list[Metric] = []
    for name, help_text, key in (
        ("rekeys_received", "Rekeys received and applied under the current KEK.",
         "rekeys-received"),
        ("heartbeats_received", "Heartbeats received under the current KEK.",
         "heartbeats-received"),
        ("acks_sent", "Rekey ACKs sent under the current KEK.", "acks-sent"),
    ):  # fmt: skip
        family = CounterMetricFamily(f"groupvpn_member_{name}", help_text, labels=["vpn"])
        for sa in sas:
            family.add_metric([sa["vpn"]], sa[key])
        families.append(family)
    drops = CounterMetricFamily(
        "groupvpn_member_pushes_dropped", "Rekey pushes dropped, per reason.", labels=["reason"]
    )
    for reason, count in (keks.get("push-rejections") or {}).items():
        drops.add_metric([reason], count)
    families.append(drops)
    return families


def _since(role: str, seconds: int) -> Metric:
    return GaugeMetricFamily(
        f"groupvpn_{role}_statistics_age_seconds",
        "Seconds since the daemon started or its statistics were last cleared.",
        seconds,
    )
