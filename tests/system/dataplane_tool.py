"""Processes for the data-plane namespace tests, run inside a namespace with ``-m``.

``python -m tests.system.dataplane_tool WORD ...``:

* ``run``: the member data plane alone (Linux plumbing + shell + an engine) on a WAN
  interface, with fixed keys for the policies given; prints ``READY``, runs until
  SIGTERM, tears down, prints the counters as JSON;
* ``capture``: IPv4 frames on an interface (AF_PACKET), printed as hex JSON lines;
* ``send-raw``: one IPv4 packet (hex) on a raw socket;
* ``recv-udp``: the first UDP datagram to an address and port, with its sender.

The engine is the real :class:`groupvpn.dataplane.engine.DataPlane` when it exists,
else :class:`FakeDataPlane` (``--engine fake`` forces it): same shape, ESP without
cryptography, enough to test the plumbing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa

ETH_P_IP = 0x0800
#: The SPI the fake engine writes, and the test keys' SPI.
TEST_SPI = bytes.fromhex("0000c0de")


@dataclass(frozen=True, slots=True)
class ToWan:
    packet: bytes


@dataclass(frozen=True, slots=True)
class ToTun:
    packet: bytes


def ipv4_header(source: bytes, destination: bytes, protocol: int, payload_length: int) -> bytes:
    return struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, 0, 0x4000, 64, protocol, 0,
        source, destination,
    )  # fmt: skip


class FakeDataPlane:
    """The engine's shape without cryptography: "ESP" is SPI, sequence, inner packet."""

    def __init__(self, local_address: IPv4Address, *, mtu: int = 1500, counters: Any = None):
        self.local_address = local_address
        self.mtu = mtu
        self._order: dict[str, list[PolicySelectors]] = {}
        self._sequence = 0

    def install_keys(
        self,
        vpn: str,
        group_id: int,
        order: Sequence[PolicySelectors],
        encrypting: Mapping[PolicySelectors, GroupSa],
        decrypting: Iterable[GroupSa],
        group_time: Callable[[float], float | None],
    ) -> None:
        self._order[vpn] = [sel for sel in order if sel in encrypting]

    def remove_vpn(self, vpn: str) -> None:
        self._order.pop(vpn, None)

    def outbound(self, packet: bytes, now: float) -> list[ToWan | ToTun]:
        source, destination = IPv4Address(packet[12:16]), IPv4Address(packet[16:20])
        for selectors in (s for order in self._order.values() for s in order):
            if source in selectors.source and destination in selectors.destination:
                self._sequence += 1
                body = TEST_SPI + struct.pack("!I", self._sequence) + packet
                return [ToWan(ipv4_header(packet[12:16], packet[16:20], 50, len(body)) + body)]
        return [ToWan(packet)]

    def inbound(self, packet: bytes, now: float) -> list[ToWan | ToTun]:
        header = (packet[0] & 0x0F) * 4
        if packet[9] != 50 or packet[header : header + 4] != TEST_SPI:
            return []
        return [ToTun(packet[header + 8 :])]

    def protected_destinations(self) -> list[IPv4Network]:
        found = (s.destination for order in self._order.values() for s in order)
        return list(dict.fromkeys(found))

    def overhead(self) -> int:
        return 28


def engine_module(kind: str) -> Any:
    """The real engine module, or this module (the fake) when asked or absent."""
    if kind != "fake":
        try:
            from groupvpn.dataplane import engine

            return engine
        except ImportError:
            if kind == "real":
                raise
    return sys.modules[__name__]


def make_engine(kind: str, local: IPv4Address, mtu: int) -> tuple[Any, type]:
    module = engine_module(kind)
    cls = module.DataPlane if hasattr(module, "DataPlane") else FakeDataPlane
    return cls(local, mtu=mtu), module.ToWan


def fixed_sa(policy: PolicySelectors, spi: bytes = TEST_SPI) -> GroupSa:
    """A fixed AES-128-CBC / HMAC-SHA1-96 key for ``policy`` (both sides build the same)."""
    from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

    cipher, integrity = ESP_CIPHERS["aes-128-cbc"], ESP_INTEGRITY["hmac-sha1-96"]
    return GroupSa(
        vpn="v1", group_id=1, spi=spi, source=policy.source, destination=policy.destination,
        source_port=0, destination_port=0, protocol=0, cipher=cipher, integrity=integrity,
        expires_at=time.monotonic() + 3600,
        encryption_key=bytes(range(cipher.key_length)),
        integrity_key=bytes(range(100, 100 + integrity.key_length)),
    )  # fmt: skip


def policies(specs: Sequence[str]) -> list[PolicySelectors]:
    """``SRC>DST`` prefixes as group policies for any port and protocol."""
    found = []
    for spec in specs:
        source, destination = spec.split(">")
        found.append(PolicySelectors(IPv4Network(source), IPv4Network(destination), 0, 0, 0))
    return found


def install(engine: Any, selectors: list[PolicySelectors]) -> None:
    keys = {sel: fixed_sa(sel, struct.pack("!I", 0xC0DE + n)) for n, sel in enumerate(selectors)}
    engine.install_keys("v1", 1, selectors, keys, keys.values(), lambda now: now)


# -- run: the data plane alone ----------------------------------------------------------------


async def run(args: argparse.Namespace) -> int:
    from groupvpn.dataplane.linux import LinuxPlumbing, find_wan_interface
    from groupvpn.dataplane.shell import DataPlaneShell

    loop = asyncio.get_running_loop()
    wan = await asyncio.to_thread(find_wan_interface, args.wan, None)
    engine, to_wan = make_engine(args.engine, wan.address, wan.mtu)
    selectors = policies(args.policy)
    install(engine, selectors)
    plumbing = LinuxPlumbing(wan, tun_name=args.tun, state_dir=Path(args.state_dir))
    await asyncio.to_thread(plumbing.start, args.tun_mtu or wan.mtu - engine.overhead())
    assert plumbing.tun_fd is not None and plumbing.esp_socket is not None
    assert plumbing.send_socket is not None and plumbing.clear_socket is not None
    shell = DataPlaneShell(
        engine, tun_fd=plumbing.tun_fd, esp_socket=plumbing.esp_socket,
        wan_socket=plumbing.send_socket, clear_socket=plumbing.clear_socket, to_wan=to_wan,
    )  # fmt: skip
    await asyncio.to_thread(plumbing.set_destinations, engine.protected_destinations())
    shell.start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def change_policies() -> None:
        # SIGUSR1: the dynamic policies change to --then-policy (as after a rekey).
        install(engine, policies(args.then_policy))
        task = asyncio.ensure_future(
            asyncio.to_thread(plumbing.set_destinations, engine.protected_destinations())
        )
        task.add_done_callback(lambda _: print("CHANGED", flush=True))

    loop.add_signal_handler(signal.SIGUSR1, change_policies)
    print("READY", type(engine).__name__, flush=True)
    await stop.wait()
    shell.stop()
    await asyncio.to_thread(plumbing.teardown)
    print("COUNTERS", json.dumps(shell.counters.as_dict()), flush=True)
    return 0


# -- capture, send, receive ------------------------------------------------------------------


def capture(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sock.bind((args.iface, ETH_P_IP))
    print("READY", flush=True)
    deadline = time.monotonic() + args.timeout
    seen = 0
    while seen < args.count and (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        packet, address = sock.recvfrom(65535)
        if args.protocol and packet[9] != args.protocol:
            continue
        outgoing = address[2] == socket.PACKET_OUTGOING
        print(json.dumps({"hex": packet.hex(), "outgoing": outgoing}), flush=True)
        seen += 1
    return 0


def send_raw(args: argparse.Namespace) -> int:
    packet = bytes.fromhex(args.packet)
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        for _ in range(args.repeat):
            sock.sendto(packet, (socket.inet_ntoa(packet[16:20]), 0))
            time.sleep(0.05)
    return 0


def recv_udp(args: argparse.Namespace) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if args.join:
            # A group's datagrams: bind to the group, join it on the interface of ``address``.
            sock.bind((args.join, args.port))
            request = socket.inet_aton(args.join) + socket.inet_aton(args.address)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
        else:
            sock.bind((args.address, args.port))
        sock.settimeout(args.timeout)
        print("READY", flush=True)
        try:
            data, peer = sock.recvfrom(65535)
        except TimeoutError:
            print(json.dumps({"timeout": True}), flush=True)
            return 1
        print(json.dumps({"data": data.hex(), "peer": peer[0]}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dataplane_tool")
    words = parser.add_subparsers(dest="word", required=True)
    p = words.add_parser("run")
    p.add_argument("--wan", required=True)
    p.add_argument("--tun", default="gvpn0")
    p.add_argument("--tun-mtu", type=int, default=0)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--engine", choices=["auto", "fake", "real"], default="auto")
    p.add_argument("--policy", action="append", default=[], help="SRC>DST")
    p.add_argument("--then-policy", action="append", default=[], help="after SIGUSR1")
    p = words.add_parser("capture")
    p.add_argument("--iface", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--protocol", type=int, default=0)
    p = words.add_parser("send-raw")
    p.add_argument("--packet", required=True)
    p.add_argument("--repeat", type=int, default=1)
    p = words.add_parser("recv-udp")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--join", default="", help="a multicast group to receive")
    args = parser.parse_args(argv)
    if args.word == "run":
        return asyncio.run(run(args))
    return {"capture": capture, "send-raw": send_raw, "recv-udp": recv_udp}[args.word](args)


if __name__ == "__main__":
    sys.exit(main())
