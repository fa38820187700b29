"""Junos-style text for `show security group-vpn server statistics` (server/statistics.py)."""

from __future__ import annotations

from groupvpn.cli.tables import JsonDict, table

_COLUMNS = (
    ("Members", "members"),
    ("Registrations", "registrations"),
    ("Rekeys", "rekeys-sent"),
    ("Heartbeats", "heartbeats-sent"),
    ("Copies", "push-copies-sent"),
    ("Retransmissions", "retransmissions"),
    ("ACKs", "acks-received"),
    ("Removed", "members-removed"),
)


def server_statistics(view: JsonDict) -> str:
    """Per group and in total, then the breakdowns by reason (zero counts left out)."""
    rows = [
        (group["group"], group["group-id"], *(group[key] for _, key in _COLUMNS))
        for group in view["groups"]
    ]
    total = view["total"]
    rows.append(("Total", "", *(total[key] for _, key in _COLUMNS)))
    lines = [
        f"Group VPN server statistics since {view['since']} ({view['seconds']} seconds)",
        "",
        table(("Group", "Group ID", *(title for title, _ in _COLUMNS)), rows, "  "),
        "",
        f"Registrations failed: {total['registrations-failed']}",
        *_breakdown(view["registration-failures"]),
        "Rekeys sent by reason:",
        *_breakdown(total["rekeys-by-reason"]),
        "ACKs received by result:",
        *_breakdown(total["acks-by-result"]),
        "ACKs dropped by reason:",
        *_breakdown(view["acks-dropped"]),
        "Members removed by reason:",
        *_breakdown(total["members-removed-by-reason"]),
        "Phase 1 packets dropped by reason:",
        *_breakdown(view["phase1-drops"]),
    ]
    return "\n".join(lines)


def _breakdown(counts: dict[str, int]) -> list[str]:
    shown = [f"  {reason}: {count}" for reason, count in counts.items() if count]
    return shown or ["  none"]
