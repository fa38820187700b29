"""Junos-style text for the group member's `show` commands (from runtime/member_views.py)."""

from __future__ import annotations

from groupvpn.cli.tables import JsonDict, table


def ipsec_security_associations(view: JsonDict) -> str:
    sas = view["security-associations"]
    rows = [
        (sa["vpn"], sa["group-id"], sa["spi"], f"ESP:{sa['encryption']}/{sa['authentication']}",
         sa["lifetime-remaining"], sa["source"], sa["destination"])
        for sa in sas
    ]  # fmt: skip
    header = f"  Total active group SAs: {len(sas)}"
    text = table(
        ("VPN", "Group", "SPI", "Algorithm", "Life:sec", "Source", "Destination"), rows, "  "
    )
    return f"{header}\n{text}"


def kek_security_associations(view: JsonDict) -> str:
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
    text = table(
        ("Index", "VPN", "Group", "Server Address", "Initiator cookie", "Responder cookie",
         "Algorithm", "Life:sec", "Seq"),
        rows,
    )  # fmt: skip
    return f"  Total KEK SAs: {len(sas)}\n{text}"
