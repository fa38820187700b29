"""Pushes a member must not apply: a replay, a forged signature, an unknown KEK.

On the spec's network, a real rekey is captured on the loopback (dumpcap, through the
tests' tshark helper) as it reaches member1.  The test then sends member1 that push
again, the push with one ciphertext octet of its signature changed, and the push
under a KEK SPI nobody issued.  Each is dropped, counted under its own reason in
`show ... member kek security-associations`, and changes no key.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.interop import tshark
from tests.system.spec_network import SpecNetwork, eventually, kek_view, member_keys, rekey

MEMBER1 = "127.0.0.11"


def _port(network: SpecNetwork) -> int:
    argv = network[1]["server"].argv
    return int(argv[argv.index("--port") + 1])


def _rejections(socket_path: Path) -> dict[str, int]:
    view: dict[str, Any] = kek_view(socket_path, "member")
    counts: dict[str, int] = view["push-rejections"]
    return counts


def _captured_push(pcap: Path, destination: str) -> bytes:
    rows = subprocess.run(
        [tshark.TSHARK, "-n", "-r", str(pcap), "-Y", f"ip.dst == {destination}",
         "-T", "fields", "-e", "udp.payload"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    pushes = [bytes.fromhex(row) for row in rows if row and bytes.fromhex(row)[18] == 33]
    assert pushes, f"no push to {destination} captured"
    return pushes[0]


def test_replayed_forged_and_unknown_pushes_are_dropped_and_counted(
    spec_network: SpecNetwork, tmp_path: Path
):
    sockets, daemons = spec_network
    port = _port(spec_network)
    pcap = tmp_path / "rekey.pcap"
    with tshark.capture(None, "lo", pcap, capture_filter=f"udp port {port}"):
        rekey(sockets["server"])
        assert eventually(lambda: "rekey applied" in daemons["member1"].log_text())
    push = _captured_push(pcap, MEMBER1)
    keys_before = sorted(k["spi"] for k in member_keys(sockets["member1"]))
    before = _rejections(sockets["member1"])

    forged = push[:-20] + bytes([push[-20] ^ 0x01]) + push[-19:]  # inside the SIG payload
    unknown = b"\x01" * 16 + push[16:]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind(("127.0.0.20", 0))
        for datagram in (push, forged, unknown):
            sender.sendto(datagram, (MEMBER1, port))

    def counted() -> dict[str, int] | None:
        now = _rejections(sockets["member1"])
        grown = {reason: now[reason] - before.get(reason, 0) for reason in now}
        wanted = ("replayed-seq", "bad-signature", "unknown-kek")
        return grown if all(grown.get(reason, 0) >= 1 for reason in wanted) else None

    grown = eventually(counted, timeout=10)
    assert grown, _rejections(sockets["member1"])
    assert sorted(k["spi"] for k in member_keys(sockets["member1"])) == keys_before
    time.sleep(0.2)
    log = daemons["member1"].log_text()
    assert "push dropped" in log and "Traceback" not in log
