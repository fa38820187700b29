"""Junos-style text for the key server's `show` commands (from runtime/server_views.py)."""

from __future__ import annotations

from groupvpn.cli.tables import JsonDict, table


def registered_members(view: JsonDict) -> str:
    blocks = []
    for group in view["groups"]:
        header = f"Group: {group['group']}, Group Id: {group['group-id']}"
        rows = [(m["address"], m["gateway"], m["registered"]) for m in group["members"]]
        body = table(("Member", "Gateway", "Registered"), rows, indent="  ")
        blocks.append(f"{header}\n{body}\n  Total members: {len(rows)}")
    return "\n\n".join(blocks) if blocks else "No groups configured"


def ipsec_security_associations(view: JsonDict) -> str:
    blocks = []
    for group in view["groups"]:
        rows = [
            (sa["policy"], sa["spi"], f"ESP:{sa['encryption']}/{sa['authentication']}",
             sa["lifetime-remaining"], sa["source"], sa["destination"])
            for sa in group["security-associations"]
        ]  # fmt: skip
        body = table(
            ("Policy", "SPI", "Algorithm", "Life:sec", "Source", "Destination"), rows, "  "
        )
        blocks.append(f"Group: {group['group']}, Group Id: {group['group-id']}\n{body}")
    return "\n\n".join(blocks) if blocks else "No groups configured"


def kek_security_associations(view: JsonDict) -> str:
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
    return table(
        ("Index", "Group", "Group Id", "Initiator cookie", "Responder cookie", "Algorithm",
         "Life:sec", "Rekey", "Seq"),
        rows,
    )  # fmt: skip
