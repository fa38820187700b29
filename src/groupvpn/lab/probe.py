"""Traffic and capture tools the demo runs inside the lab's namespaces (stdlib only).

``python -m groupvpn.lab.probe ping SRC DST``        ICMP echo, JSON result on stdout
``python -m groupvpn.lab.probe mcast-send SRC GROUP PORT``
``python -m groupvpn.lab.probe mcast-recv ADDR GROUP PORT``   until SIGTERM
``python -m groupvpn.lab.probe capture``             every IPv4 packet arriving on any
                                                      interface of the namespace, until SIGTERM

The long-running ones print ``ready`` once listening and their JSON result when
they get SIGTERM.  A capture counts packets by flow: protocol, source, destination
and a detail (the SPI for ESP, the ICMP type, the UDP destination port), so the
core's view shows whether the hosts' traffic crossed it in ESP with their own
addresses, or in clear.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time
from collections import Counter
from typing import Any, NoReturn

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 50: "esp", 2: "igmp"}
ICMP_TYPES = {0: "echo-reply", 8: "echo-request", 3: "unreachable", 11: "time-exceeded"}


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: object) -> NoReturn:
    raise _Stop


def _ready() -> None:
    print("ready", flush=True)


def _result(value: Any) -> None:
    print(json.dumps(value, sort_keys=True), flush=True)


# -- ping ------------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    checksum: int = ~total & 0xFFFF
    return checksum


def echo_request(ident: int, sequence: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, sequence)
    checksum = _checksum(header + payload)
    return struct.pack("!BBHHH", 8, 0, checksum, ident, sequence) + payload


def ping(source: str, destination: str, count: int, interval: float, timeout: float) -> Any:
    """ICMP echo from ``source`` to ``destination``: how many came back, and how fast."""
    ident = os.getpid() & 0xFFFF
    sent: dict[int, float] = {}
    rtts: dict[int, float] = {}
    errors: Counter[str] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        sock.bind((source, 0))
        deadline = 0.0
        for sequence in range(1, count + 1):
            sent[sequence] = time.monotonic()
            try:
                sock.sendto(echo_request(ident, sequence, b"groupvpn-lab" * 4), (destination, 0))
            except OSError as exc:
                errors[exc.strerror or str(exc)] += 1
            deadline = time.monotonic() + (interval if sequence < count else timeout)
            while len(rtts) < len(sent):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                sock.settimeout(left)
                try:
                    data, (peer, _) = sock.recvfrom(65535)
                except TimeoutError:
                    break
                header = (data[0] & 0x0F) * 4
                if peer != destination or len(data) < header + 8:
                    continue
                kind, _code, _sum, their_id, their_seq = struct.unpack_from("!BBHHH", data, header)
                if kind == 0 and their_id == ident and their_seq in sent:
                    rtts.setdefault(their_seq, (time.monotonic() - sent[their_seq]) * 1000)
    return {
        "source": source,
        "destination": destination,
        "sent": len(sent),
        "received": len(rtts),
        "rtt-ms": [round(rtts[s], 3) for s in sorted(rtts)],
        "errors": dict(errors),
    }


# -- multicast -------------------------------------------------------------------------------


def mcast_send(source: str, group: str, port: int, count: int, interval: float, ttl: int) -> Any:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        for n in range(1, count + 1):
            sock.sendto(f"groupvpn-lab multicast {n}".encode(), (group, port))
            time.sleep(interval)
    return {"source": source, "group": group, "port": port, "sent": count, "ttl": ttl}


def mcast_recv(address: str, group: str, port: int) -> Any:
    """Join ``group`` on the interface with ``address``; count datagrams until SIGTERM."""
    sources: Counter[str] = Counter()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((group, port))
        membership = socket.inet_aton(group) + socket.inet_aton(address)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        _ready()
        try:
            while True:
                _data, (peer, _) = sock.recvfrom(65535)
                sources[peer] += 1
        except _Stop:
            pass
    return {"group": group, "port": port, "received": sum(sources.values()),
            "sources": dict(sources)}  # fmt: skip


# -- capture ---------------------------------------------------------------------------------


def flow_of(packet: bytes) -> tuple[str, str, str, str] | None:
    """(protocol, source, destination, detail) of an IPv4 packet, None if it is not one."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header = (packet[0] & 0x0F) * 4
    proto = packet[9]
    source = socket.inet_ntoa(packet[12:16])
    destination = socket.inet_ntoa(packet[16:20])
    name = PROTOCOLS.get(proto, f"ip-proto-{proto}")
    body = packet[header:]
    fragment = struct.unpack_from("!H", packet, 6)[0] & 0x1FFF
    detail = ""
    if fragment:
        detail = "fragment"
    elif proto == 50 and len(body) >= 4:
        detail = f"spi {body[:4].hex()}"
    elif proto == 1 and body:
        detail = ICMP_TYPES.get(body[0], f"type {body[0]}")
    elif proto in (6, 17) and len(body) >= 4:
        detail = f"port {struct.unpack_from('!H', body, 2)[0]}"
    return name, source, destination, detail


def capture(incoming_only: bool) -> Any:
    """Count IPv4 packets by flow on every interface of this namespace until SIGTERM."""
    flows: Counter[tuple[str, str, str, str, str]] = Counter()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        _ready()
        try:
            while True:
                frame, address = sock.recvfrom(65535)
                ifname, ethertype, pkttype = address[0], address[1], address[2]
                if ethertype != ETH_P_IP or (incoming_only and pkttype == PACKET_OUTGOING):
                    continue
                flow = flow_of(frame[14:])
                if flow is not None:
                    flows[(ifname, *flow)] += 1
        except _Stop:
            pass
    keys = ("interface", "protocol", "source", "destination", "detail", "packets")
    return {
        "flows": [dict(zip(keys, (*flow, n), strict=True)) for flow, n in sorted(flows.items())]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m groupvpn.lab.probe")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("ping")
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=2.0)
    s = commands.add_parser("mcast-send")
    s.add_argument("source")
    s.add_argument("group")
    s.add_argument("port", type=int)
    s.add_argument("--count", type=int, default=5)
    s.add_argument("--interval", type=float, default=0.2)
    s.add_argument("--ttl", type=int, default=16)
    r = commands.add_parser("mcast-recv")
    r.add_argument("address")
    r.add_argument("group")
    r.add_argument("port", type=int)
    c = commands.add_parser("capture")
    c.add_argument("--all", action="store_true", help="outgoing packets too")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    if args.command == "ping":
        _result(ping(args.source, args.destination, args.count, args.interval, args.timeout))
    elif args.command == "mcast-send":
        _result(mcast_send(args.source, args.group, args.port, args.count, args.interval,
                           args.ttl))  # fmt: skip
    elif args.command == "mcast-recv":
        _result(mcast_recv(args.address, args.group, args.port))
    else:
        _result(capture(incoming_only=not args.all))
    return 0


if __name__ == "__main__":
    sys.exit(main())
