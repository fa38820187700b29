"""Junos-style text for the `show` commands, from the JSON the daemons return.

Pure functions from the documented JSON (runtime/views.py) to text, so the
text and the JSON can never disagree and both are tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JsonDict = dict[str, Any]


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    cells = [[("-" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def ike_security_associations(view: JsonDict) -> str:
    """Like Junos `show security ike security-associations`."""
    rows = [
        (sa["index"], sa["state"], sa["initiator-cookie"], sa["responder-cookie"],
         sa["mode"].capitalize(), sa["remote-address"])
        for sa in view["security-associations"]
    ]  # fmt: skip
    text = _table(
        ("Index", "State", "Initiator cookie", "Responder cookie", "Mode", "Remote Address"), rows
    )
    registrations = view.get("registrations")
    if registrations is not None:
        text += "\n\n" + _table(
            ("VPN", "Gateway", "Group", "Registration", "Failures", "Next attempt", "Last error"),
            [
                (r["vpn"], r["gateway"], r["group-id"], r["state"], r["failures"],
                 None if r["next-attempt-seconds"] is None else f"{r['next-attempt-seconds']}s",
                 r["last-error"] or None)
                for r in registrations
            ],
        )  # fmt: skip
    return text


def server_registered_members(view: JsonDict) -> str:
    blocks = []
    for group in view["groups"]:
        header = f"Group: {group['group']}, Group Id: {group['group-id']}"
        rows = [(m["address"], m["gateway"], m["registered"]) for m in group["members"]]
        body = _table(("Member", "Gateway", "Registered"), rows, indent="  ")
        blocks.append(f"{header}\n{body}\n  Total members: {len(rows)}")
    return "\n\n".join(blocks) if blocks else "No groups configured"


def server_ipsec_security_associations(view: JsonDict) -> str:
    blocks = []
    for group in view["groups"]:
        rows = [
            (sa["policy"], sa["spi"], f"ESP:{sa['encryption']}/{sa['authentication']}",
             sa["lifetime-remaining"], sa["source"], sa["destination"])
            for sa in group["security-associations"]
        ]  # fmt: skip
        body = _table(
            ("Policy", "SPI", "Algorithm", "Life:sec", "Source", "Destination"), rows, "  "
        )
        blocks.append(f"Group: {group['group']}, Group Id: {group['group-id']}\n{body}")
    return "\n\n".join(blocks) if blocks else "No groups configured"


def member_ipsec_security_associations(view: JsonDict) -> str:
    sas = view["security-associations"]
    rows = [
        (sa["vpn"], sa["group-id"], sa["spi"], f"ESP:{sa['encryption']}/{sa['authentication']}",
         sa["lifetime-remaining"], sa["source"], sa["destination"])
        for sa in sas
    ]  # fmt: skip
    header = f"  Total active group SAs: {len(sas)}"
    table = _table(
        ("VPN", "Group", "SPI", "Algorithm", "Life:sec", "Source", "Destination"), rows, "  "
    )
    return f"{header}\n{table}"


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
        text += "\n\nGroup policies not installed:\n" + _table(
            ("Source", "Destination", "From zone", "To zone", "Reason"),
            [(p["source"], p["destination"], p["from-zone"], p["to-zone"], p["reason"])
             for p in rejected],
            indent="  ",
        )  # fmt: skip
    return text


def server_kek_security_associations(view: JsonDict) -> str:
    """Each group's KEK (rekey SA): cookies, algorithms, remaining life and SEQ."""
    sas = view["security-associations"]
    if not sas:
        return "No KEK: no group has server-member-communication"
    rows = [
        (sa["index"], sa["group"], sa["group-id"], sa["initiator-cookie"], sa["responder-cookie"],
         f"{sa['encryption']}/{sa['signature-algorithm']}-{sa['signature-key-length']}"
         f"/{sa['signature-hash']}",
         sa["lifetime-remaining"], sa["communication-type"], sa["sequence"])
        for sa in sas
    ]  # fmt: skip
    return _table(
        ("Index", "Group", "Group Id", "Initiator cookie", "Responder cookie", "Algorithm",
         "Life:sec", "Rekey", "Seq"),
        rows,
    )  # fmt: skip


def member_kek_security_associations(view: JsonDict) -> str:
    """Like Junos `show security group-vpn member kek security-associations`."""
    sas = view["security-associations"]
    rows = [
        (sa["index"], sa["vpn"], sa["group-id"], sa["source"], sa["initiator-cookie"],
         sa["responder-cookie"],
         f"{sa['encryption']}/{sa['signature-algorithm']}-{sa['signature-key-length']}"
         f"/{sa['signature-hash']}",
         sa["lifetime-remaining"], sa["sequence"])
        for sa in sas
    ]  # fmt: skip
    table = _table(
        ("Index", "VPN", "Group", "Server Address", "Initiator cookie", "Responder cookie",
         "Algorithm", "Life:sec", "Seq"),
        rows,
    )  # fmt: skip
    return f"  Total KEK SAs: {len(sas)}\n{table}"
