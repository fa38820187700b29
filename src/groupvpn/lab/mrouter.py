"""The lab core's multicast router: the kernel replicates, this process tells it where.

Run inside the core's namespace (``python -m groupvpn.lab.mrouter IFACE...``).  It
opens the kernel's IPv4 multicast routing socket (MRT_INIT, as mrouted, pimd and
smcroute do), makes every named interface a virtual interface, and answers each
"no cache entry" upcall (the first datagram of a new source and group) with a
forwarding entry from the interface it arrived on to all the others.  From then on
the kernel forwards that flow by itself, decrementing the TTL like any router; the
datagram that caused the upcall is forwarded too, once the entry is in.

This floods like PIM dense mode without pruning: enough for a lab core, where the
members are the only receivers, and independent of IGMP.  Link-local groups
(224.0.0.0/24) never reach multicast routing.  Closing the socket (at exit) removes
every entry.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import struct
import sys
import time
from typing import NoReturn

from groupvpn.dataplane.mroute import (
    IGMPMSG_NOCACHE,
    MAXVIFS,
    MRT_ADD_MFC,
    MRT_ADD_VIF,
    MRT_INIT,
    mfcctl,
    vifctl,
)


def flood_entry(source: bytes, group: bytes, parent: int, outgoing: list[int]) -> bytes:
    """Forward (source, group) arriving on ``parent`` out of ``outgoing`` (TTL threshold
    1: any datagram with a TTL left to spend)."""
    return mfcctl(source, group, parent, bytes(1 if v in outgoing else 0 for v in range(MAXVIFS)))


def parse_upcall(data: bytes) -> tuple[int, int, bytes, bytes] | None:
    """struct igmpmsg (message type, vif, source, group), or None for real IGMP.

    The upcall overlays an IP header: its "protocol" byte (im_mbz) is 0."""
    if len(data) < 20 or data[9] != 0:
        return None
    return data[8], data[10] | (data[11] << 8), data[12:16], data[16:20]


def _log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} groupvpn-lab-mrouter: {message}", file=sys.stderr, flush=True)


def _stop(signum: int, frame: object) -> NoReturn:
    _log(f"received {signal.Signals(signum).name}, stopping")
    raise SystemExit(0)


def serve(interfaces: list[str]) -> int:
    if len(interfaces) > MAXVIFS:
        _log(f"at most {MAXVIFS} interfaces")
        return 2
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
    try:
        sock.setsockopt(socket.IPPROTO_IP, MRT_INIT, struct.pack("i", 1))
    except OSError as exc:
        _log(f"cannot become the multicast router (MRT_INIT): {exc.strerror}")
        return 1
    for vifi, name in enumerate(interfaces):
        sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_VIF, vifctl(vifi, socket.if_nametoindex(name)))
    vifs = list(range(len(interfaces)))
    _log(f"multicast router running; interfaces {', '.join(interfaces)}")
    while True:
        upcall = parse_upcall(sock.recv(65535))
        if upcall is None:
            continue
        kind, vif, source, group = upcall
        if kind != IGMPMSG_NOCACHE or vif not in vifs:
            continue
        outgoing = [other for other in vifs if other != vif]
        sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_MFC, flood_entry(source, group, vif, outgoing))
        _log(
            f"forwarding {ipaddress.IPv4Address(source)} -> {ipaddress.IPv4Address(group)} "
            f"from {interfaces[vif]} to {', '.join(interfaces[o] for o in outgoing)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m groupvpn.lab.mrouter")
    parser.add_argument("interfaces", nargs="+", help="interfaces to route multicast between")
    parser.add_argument("--lab", help="the lab's state directory (only names the process)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return serve(args.interfaces)


if __name__ == "__main__":
    sys.exit(main())
