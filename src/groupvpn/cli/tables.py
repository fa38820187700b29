"""Junos-style text for the `show` commands, from the JSON the daemons return.

Pure functions from the documented JSON (runtime/views.py) to text, so the
text and the JSON can never disagree and both are tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JsonDict = dict[str, Any]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def esp_algorithm(sa: JsonDict) -> str:
    """``ESP:aes-128-cbc/hmac-sha1-96``, or ``ESP:aes-128-gcm`` (no separate authentication)."""
    authentication = sa.get("authentication")
    return f"ESP:{sa['encryption']}" + (f"/{authentication}" if authentication else "")


def ike_security_associations(view: JsonDict) -> str:
    """Like Junos `show security ike security-associations`."""
    rows = [
        (sa["index"], sa["state"], sa["initiator-cookie"], sa["responder-cookie"],
         sa["mode"].capitalize(), sa["remote-address"])
        for sa in view["security-associations"]
    ]  # fmt: skip
    text = table(
        ("Index", "State", "Initiator cookie", "Responder cookie", "Mode", "Remote Address"), rows
    )
    registrations = view.get("registrations")
    if registrations is not None:
        text += "\n\n" + table(
            ("VPN", "Gateway", "Group", "Registration", "Failures", "Next attempt", "Last error"),
            [
                (r["vpn"], r["gateway"], r["group-id"], r["state"], r["failures"],
                 None if r["next-attempt-seconds"] is None else f"{r['next-attempt-seconds']}s",
                 r["last-error"] or None)
                for r in registrations
            ],
        )  # fmt: skip
    return text


def dynamic_policies(view: JsonDict) -> str:
    """Like Junos `show security dynamic-policies`, then the keys that were not installed."""
    entries = view["dynamic-policies"]
    blocks = []
    for policy in (p for p in entries if p.get("installed", True)):
        blocks.append(
            "\n".join(
                [
                    f"Policy: {policy['name']}, State: enabled, Scope Policy: "
                    f"{policy['scope-policy']}, Sequence number: {policy['sequence']}",
                    f"  From zone: {policy['from-zone']}, To zone: {policy['to-zone']}",
                    f"  Source addresses: {policy['source']}",
                    f"  Destination addresses: {policy['destination']}",
                    f"  Protocol: {policy['protocol'] or 'any'}, Source port: "
                    f"{policy['source-port'] or 'any'}, Destination port: "
                    f"{policy['destination-port'] or 'any'}",
                    f"  Action: permit, tunnel ipsec-group-vpn {policy['vpn']}",
                    f"  SPI: {policy['spi']}",
                ]
            )
        )
    text = "\n\n".join(blocks) if blocks else "No dynamic policies installed"
    rejected = [p for p in entries if not p.get("installed", True)]
    if rejected:
        text += "\n\nGroup policies not installed:\n" + table(
            ("Source", "Destination", "From zone", "To zone", "Reason"),
            [(p["source"], p["destination"], p["from-zone"], p["to-zone"], p["reason"])
             for p in rejected],
            indent="  ",
        )  # fmt: skip
    return text
