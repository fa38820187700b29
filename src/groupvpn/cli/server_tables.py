"""Junos-style text for the key server's `show` commands (from runtime/server_views.py)."""

from __future__ import annotations

from groupvpn.cli.tables import JsonDict, esp_algorithm, table


def registered_members(view: JsonDict) -> str:
    """Per group: each member, its gateway, and how it follows rekeys (state, last ACK)."""
    blocks = []
    for group in view["groups"]:
        header = f"Group: {group['group']}, Group Id: {group['group-id']}"
        kind = group.get("communication-type")
        if kind is not None:
            header += f", Rekeys: {kind}"
        rows = [
            (m["address"], m["gateway"], m["registered"], m.get("state", "registered"),
             m.get("last-acked-sequence"), m.get("last-ack"))
            for m in group["members"]
        ]  # fmt: skip
        body = table(
            ("Member", "Gateway", "Registered", "State", "Last ACKed Seq", "Last ACK"), rows, "  "
        )
        blocks.append(f"{header}\n{body}\n  Total members: {len(rows)}")
    return "\n\n".join(blocks) if blocks else "No groups configured"


def ipsec_security_associations(view: JsonDict) -> str:
    blocks = []
    for group in view["groups"]:
        rows = [
            (sa["policy"], sa["spi"], esp_algorithm(sa),
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
    rows: list[tuple[object, ...]] = [
        (sa["index"], sa["group"], sa["group-id"], sa["initiator-cookie"], sa["responder-cookie"],
         f"{sa['encryption']}/{sa['signature-algorithm']}-{sa['signature-key-length']}"
         f"/{sa['signature-hash']}",
         sa["lifetime-remaining"], sa["communication-type"], sa["sequence"])
        for sa in sas
    ]  # fmt: skip
    headers = ["Index", "Group", "Group Id", "Initiator cookie", "Responder cookie", "Algorithm",
               "Life:sec", "Rekey", "Seq"]  # fmt: skip
    if all("next-rekey-seconds" in sa for sa in sas):
        # The running daemon's schedule: seconds to the next scheduled rekey.
        headers.append("Next rekey:sec")
        rows = [(*row, sa["next-rekey-seconds"]) for row, sa in zip(rows, sas, strict=True)]
    return table(headers, rows)
