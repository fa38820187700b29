"""A member with a host behind it and a core router in front, in network namespaces.

::

    host (10.1.1.1/16) --- member (10.1.0.1/16 | 198.51.100.1/24) --- core (198.51.100.2/24)
                           LAN: gvt-lan                 WAN: gvt-veth-a

The member and core are :func:`tests.interop.netns.netns_pair` (a and b); the host is
one more namespace with a veth into the member.  The member forwards (ip_forward on),
routes 10.2.0.0/16 via the core, and the core routes 10.1.0.0/16 back via the member,
as a site behind a member does across an MPLS core.  Everything (the namespaces, their
processes) is removed when the context ends, also after a failure.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from groupvpn.dataplane.linux import OWNED_PRIORITIES
from groupvpn.lab import topology as lab_topology
from groupvpn.lab.layout import LabTopology
from tests.interop.netns import (
    NetnsPair,
    ip,
    list_netns,
    netns_pair,
    netns_pids,
    ns_argv,
    terminate_pid,
)

HOST_ADDRESS = "10.1.1.1"
MEMBER_LAN_ADDRESS = "10.1.0.1"
LAN_PREFIX = "10.1.0.0/16"
REMOTE_PREFIX = "10.2.0.0/16"
REMOTE_HOST = "10.2.1.1"
GROUP = "239.1.1.1"
LAN_IFACE = "gvt-lan"
HOST_IFACE = "gvt-host"


@dataclass
class DataplaneLab:
    pair: NetnsPair
    host: str

    @property
    def member(self) -> str:
        return self.pair.a

    @property
    def core(self) -> str:
        return self.pair.b

    @property
    def wan(self) -> str:
        return self.pair.iface_a

    @property
    def core_iface(self) -> str:
        return self.pair.iface_b

    def tool(self, ns: str, *words: str, **popen: Any) -> subprocess.Popen[str]:
        """``python -m tests.system.dataplane_tool WORDS`` in ``ns``, stopped at teardown."""
        argv = [sys.executable, "-m", "tests.system.dataplane_tool", *words]
        popen.setdefault("stdout", subprocess.PIPE)
        popen.setdefault("stderr", subprocess.STDOUT)
        process = subprocess.Popen(ns_argv(ns, argv), text=True, stdin=subprocess.DEVNULL, **popen)
        self.pair.adopt(process)
        return process

    def ip_json(self, ns: str, *words: str) -> Any:
        out = subprocess.run(
            ["ip", "-n", ns, "-j", *words], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out) if out.strip() else []

    def send_udp(self, ns: str, source: str, destination: str, port: int, data: bytes) -> None:
        code = (
            "import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,8);"
            f"s.bind(({source!r},0));s.sendto(bytes.fromhex({data.hex()!r}),"
            f"({destination!r},{port}))"
        )
        self.pair.run(ns, [sys.executable, "-c", code])


def wait_ready(process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """The process's first line, which must start with READY."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("READY"):
            return line
    process.kill()
    rest = process.stdout.read() if process.stdout else ""
    raise AssertionError(f"not ready: {''.join(lines)}{rest}")


def lines_of(process: subprocess.Popen[str], timeout: float = 15.0) -> list[str]:
    out, _ = process.communicate(timeout=timeout)
    return out.splitlines()


@contextlib.contextmanager
def dataplane_lab() -> Iterator[DataplaneLab]:
    with netns_pair() as pair:
        host = f"{pair.a[:-2]}-h"
        try:
            ip("netns", "add", host)
            ip("link", "add", LAN_IFACE, "netns", pair.a, "type", "veth",
                "peer", "name", HOST_IFACE, "netns", host)  # fmt: skip
            ip("-n", host, "link", "set", "lo", "up")
            ip("-n", host, "addr", "add", f"{HOST_ADDRESS}/16", "dev", HOST_IFACE)
            ip("-n", host, "link", "set", HOST_IFACE, "up")
            ip("-n", host, "route", "add", "default", "via", MEMBER_LAN_ADDRESS)
            ip("-n", pair.a, "addr", "add", f"{MEMBER_LAN_ADDRESS}/16", "dev", LAN_IFACE)
            ip("-n", pair.a, "link", "set", LAN_IFACE, "up")
            pair.run(pair.a, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
            ip("-n", pair.a, "route", "add", REMOTE_PREFIX, "via", pair.addr_b)
            ip("-n", pair.b, "route", "add", LAN_PREFIX, "via", pair.addr_a)
            # The core sends (and would replicate) multicast out of its link.
            ip("-n", pair.b, "route", "add", "224.0.0.0/4", "dev", pair.iface_b)
            yield DataplaneLab(pair, host)
        finally:
            if host in list_netns():
                for pid in netns_pids(host):
                    terminate_pid(pid)
                subprocess.run(["ip", "netns", "del", host], check=False)


def udp_packet(source: str, destination: str, sport: int, dport: int, data: bytes) -> bytes:
    """An IPv4/UDP packet (checksums 0: the IP one is filled by the kernel, UDP's optional)."""
    import socket
    import struct

    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
        socket.inet_aton(source), socket.inet_aton(destination),
    )  # fmt: skip
    return header + udp


def checksum(header: bytes) -> int:
    total = sum(int.from_bytes(header[i : i + 2], "big") for i in range(0, len(header), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def with_checksum(packet: bytes) -> bytes:
    header = bytearray(packet[:20])
    header[10:12] = b"\0\0"
    header[10:12] = checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + packet[20:]


def policy_args(policies: Sequence[str]) -> list[str]:
    return [word for policy in policies for word in ("--policy", policy)]


def host_view(topology: LabTopology, prefix: str) -> dict[str, set[Any]]:
    """What of the kinds a lab makes the namespace the tests run in holds: links by the
    lab's interface names, TUNs and its prefix, rules by the data plane's priorities."""
    ours = {name for link in topology.links for _, name, _ in (link.a, link.b)}
    links = json.loads(lab_topology.ip("-j", "link", "show") or "[]")
    rules = json.loads(lab_topology.ip("-j", "rule", "show") or "[]")
    return {
        "links": {link["ifname"] for link in links
                  if link["ifname"] in ours or link["ifname"].startswith(("gvpn", prefix))},
        "rules": {rule.get("priority") for rule in rules} & set(OWNED_PRIORITIES),
    }  # fmt: skip
