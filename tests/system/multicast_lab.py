"""A small LAN in network namespaces where multicast really flows: for multicast rekeys.

One "core" namespace holds a Linux bridge; every host (key server, members) is a
namespace of its own with a veth into that bridge and an address on 192.0.2.0/24
(TEST-NET-1, inside these namespaces only).  The bridge floods multicast (IGMP
snooping off, so no querier is needed) and each host routes 224.0.0.0/4 out of
its veth, so a datagram to a group address leaves the server once and reaches
every member that joined the group.  Everything is removed when the context ends,
also after a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.interop.netns import ip, list_netns, netns_pids, skip_unless_netns, terminate_pid

_counter = itertools.count()
PREFIX = "192.0.2."
PREFIX_LENGTH = 24


@dataclass
class MulticastLan:
    core: str
    #: host name -> (namespace, interface, address)
    hosts: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def namespace(self, host: str) -> str:
        return self.hosts[host][0]

    def address(self, host: str) -> str:
        return self.hosts[host][2]

    @property
    def namespaces(self) -> list[str]:
        return [self.core, *(ns for ns, _, _ in self.hosts.values())]


@contextlib.contextmanager
def multicast_lan(hosts: dict[str, int]) -> Iterator[MulticastLan]:
    """Hosts by name with the last octet of their address, e.g. {"server": 1}."""
    skip_unless_netns()
    base = f"gvm-{os.getpid()}-{next(_counter)}"
    lan = MulticastLan(core=f"{base}-core")
    try:
        ip("netns", "add", lan.core)
        ip("-n", lan.core, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        ip("-n", lan.core, "link", "set", "br0", "up")
        for n, (host, octet) in enumerate(hosts.items()):
            ns, inside, outside = f"{base}-{n}", f"eth{n}", f"port{n}"
            lan.hosts[host] = (ns, inside, f"{PREFIX}{octet}")
            ip("netns", "add", ns)
            ip("link", "add", inside, "netns", ns, "type", "veth",
                "peer", "name", outside, "netns", lan.core)  # fmt: skip
            ip("-n", lan.core, "link", "set", outside, "master", "br0")
            ip("-n", lan.core, "link", "set", outside, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "addr", "add", f"{PREFIX}{octet}/{PREFIX_LENGTH}", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", inside)
        _wait_up(lan)
        yield lan
    finally:
        for ns in lan.namespaces:
            if ns in list_netns():
                for pid in netns_pids(ns):
                    terminate_pid(pid)
                subprocess.run(["ip", "netns", "del", ns], check=False)


def _wait_up(lan: MulticastLan) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        states = [_link_state(ns, iface) for ns, iface, _ in lan.hosts.values()]
        if all("state UP" in state or "LOWER_UP" in state for state in states):
            return
        time.sleep(0.05)
    raise RuntimeError("the LAN's links did not come up")


def _link_state(ns: str, iface: str) -> str:
    command = ["ip", "-n", ns, "-o", "link", "show", "dev", iface]
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout
