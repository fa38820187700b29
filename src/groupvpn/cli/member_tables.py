"""Junos-style text for the group member's `show` commands (from runtime/member_views.py)."""

from __future__ import annotations

from groupvpn.cli.tables import JsonDict, esp_algorithm, table


def ipsec_security_associations(view: JsonDict) -> str:
    sas = view["security-associations"]
    rows = [
        (sa["vpn"], sa["group-id"], sa["spi"], esp_algorithm(sa),
         sa.get("state"), sa["lifetime-remaining"], sa.get("activates-in"), sa["source"],
         sa["destination"])
        for sa in sas
    ]  # fmt: skip
    active = sum(1 for sa in sas if sa.get("state", "active") == "active")
    header = f"  Total group SAs: {len(sas)}, active: {active}"
    text = table(
        ("VPN", "Group", "SPI", "Algorithm", "State", "Life:sec", "Activates:sec", "Source",
         "Destination"),
        rows, "  ",
    )  # fmt: skip
    return f"{header}\n{text}"


def kek_security_associations(view: JsonDict) -> str:
    """Like Junos `show security group-vpn member kek security-associations`.

    Then, when the daemon reports them, what came under each KEK (rekeys,
    heartbeats, ACKs) and the pushes dropped per reason.
    """
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
    text = f"  Total KEK SAs: {len(sas)}\n{text}"
    rekeys = [sa for sa in sas if "rekeys-received" in sa]
    if rekeys:
        text += "\n\n" + table(
            ("VPN", "Rekeys", "ACKs", "Heartbeats", "Interval", "Threshold", "Detection",
             "Last heard", "Missed"),
            [
                (sa["vpn"], sa["rekeys-received"],
                 sa["acks-sent"] if sa["acks-requested"] else "off",
                 sa["heartbeats-received"],
                 None if sa["heartbeat-interval"] is None else f"{sa['heartbeat-interval']}s",
                 sa["heartbeat-threshold"], "on" if sa["heartbeat-detection"] else "off",
                 sa["heartbeat-last-heard"], sa["heartbeats-missed"])
                for sa in rekeys
            ],
        )  # fmt: skip
    drops = view.get("push-rejections")
    if drops is not None:
        counts = ", ".join(f"{reason} {count}" for reason, count in drops.items())
        text += f"\n\n  Pushes dropped: {counts}"
    return text


def ipsec_statistics(view: JsonDict) -> str:
    """Like Junos `show security ipsec statistics`: the member data plane's ESP counters.

    Packets and octets are the inner (clear) packets the group SAs carried; every
    packet the data plane did not deliver is counted once under its reason.
    """
    if view.get("dataplane") == "none":
        return "No data plane: the member runs without --dataplane linux."
    engine = view.get("engine", {})
    lines = [
        "ESP Statistics:",
        f"  Encrypted bytes:   {engine.get('bytes-out', 0):>14}",
        f"  Decrypted bytes:   {engine.get('bytes-in', 0):>14}",
        f"  Encrypted packets: {engine.get('packets-out', 0):>14}",
        f"  Decrypted packets: {engine.get('packets-in', 0):>14}",
        f"  Passed in clear:   {engine.get('clear-packets', 0):>14}  (no dynamic policy matched)",
        f"  Fragmented:        {engine.get('fragments', 0):>14}",
        f"  ICMP errors sent:  {engine.get('icmp-errors', 0):>14}",
    ]
    for title, counts in (
        ("Dropped on receipt", engine.get("dropped", {})),
        ("Not sent", engine.get("refused", {})),
    ):
        lines.append(f"{title}:")
        shown = [(reason, count) for reason, count in counts.items() if count]
        lines += [f"  {reason}: {count}" for reason, count in shown] or ["  none"]
    return "\n".join(lines)
