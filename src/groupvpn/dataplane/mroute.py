"""The kernel's IPv4 multicast routing API (<linux/mroute.h>), and the member's router.

The kernel forwards multicast only by its multicast forwarding cache, never by
routes or rules; a process that holds the one multicast routing socket of a
network namespace (``MRT_INIT``, as mrouted, pimd and smcroute do) says which
interfaces take part ("vifs") and which (source, group) goes where.  Two users:
the member data plane (:class:`MulticastRouter`: protected groups between its LANs
and its TUN) and the lab core (``groupvpn.lab.mrouter``: every group between the
core's links).  Closing the socket, also by a crash, removes every vif and entry.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
from collections.abc import Iterable
from ipaddress import IPv4Address

log = logging.getLogger("groupvpn")

MRT_INIT, MRT_ADD_VIF, MRT_ADD_MFC, MRT_DEL_MFC = 200, 202, 204, 205
VIFF_USE_IFINDEX = 0x8
#: The upcall for a datagram no forwarding entry covers.
IGMPMSG_NOCACHE = 1
MAXVIFS = 32
#: TTL threshold of a forwarding vif (forward when TTL > 1), and of one never used.
FORWARD, NEVER = 1, 255

#: struct vifctl: vifi, flags, threshold, rate_limit, lcl_ifindex, rmt_addr.
VIFCTL = struct.Struct("@HBBIi4s")
#: struct mfcctl: origin, mcastgrp, parent, ttls[MAXVIFS], pkt_cnt, byte_cnt, wrong_if, expire.
MFCCTL = struct.Struct(f"@4s4sH{MAXVIFS}sIIIi")


def vifctl(vifi: int, ifindex: int, threshold: int = FORWARD) -> bytes:
    """Make interface ``ifindex`` vif number ``vifi``."""
    return VIFCTL.pack(vifi, VIFF_USE_IFINDEX, threshold, 0, ifindex, bytes(4))


def mfcctl(origin: bytes, group: bytes, parent: int, ttls: bytes) -> bytes:
    """A forwarding entry: (origin, group) arriving on vif ``parent`` leaves by every vif
    whose TTL threshold in ``ttls`` (one octet per vif, ``MAXVIFS`` of them) is below
    the datagram's TTL; 0 and 255 mean never.  ``origin`` 0.0.0.0 is any source."""
    if len(ttls) != MAXVIFS:
        raise ValueError(f"{len(ttls)} TTL thresholds, the kernel takes {MAXVIFS}")
    return MFCCTL.pack(origin, group, parent, ttls, 0, 0, 0, 0)


class MulticastRouter:
    """The kernel's multicast forwarding between the LAN interfaces and the TUN.

    One mroute socket (``MRT_INIT``); vif 0 is ``lo`` (never forwarded to), vif 1 the
    TUN, the LAN interfaces after it.  A (*,*) entry whose parent is ``lo`` makes every
    vif part of the "static tree" without forwarding anything itself; a (*,G) entry
    per protected group, parent the TUN, forwards G from a LAN into the TUN (where the
    engine encrypts it) and from the TUN (decrypted) to every LAN, never back to where
    it came from, as a router: TTL above 1, decremented.  Closing the socket (also by
    a crash) makes the kernel drop the vifs and entries.
    """

    def __init__(self, lo: int, tun: int, lans: Iterable[int]) -> None:
        self._interfaces = [lo, tun, *list(lans)[: MAXVIFS - 2]]
        self._socket: socket.socket | None = None
        self._groups: set[IPv4Address] = set()

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IGMP)
        self._socket = sock
        # Upcalls for unknown groups are not read: a small buffer, then dropped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.setsockopt(socket.IPPROTO_IP, MRT_INIT, struct.pack("i", 1))
        for vif, index in enumerate(self._interfaces):
            sock.setsockopt(socket.IPPROTO_IP, MRT_ADD_VIF, vifctl(vif, index, FORWARD))
        self._entry(MRT_ADD_MFC, IPv4Address(0), parent=0)

    def set_groups(self, groups: Iterable[IPv4Address]) -> None:
        wanted = set(groups)
        for group in sorted(self._groups - wanted):
            with contextlib.suppress(OSError):
                self._entry(MRT_DEL_MFC, group, parent=1)
            self._groups.discard(group)
        for group in sorted(wanted - self._groups):
            try:
                self._entry(MRT_ADD_MFC, group, parent=1)
            except OSError as exc:
                log.warning(
                    "data plane: cannot forward multicast %s: %s",
                    group,
                    exc.strerror or str(exc),
                )
                continue
            self._groups.add(group)

    def groups(self) -> list[IPv4Address]:
        return sorted(self._groups)

    def _entry(self, command: int, group: IPv4Address, parent: int) -> None:
        assert self._socket is not None
        ttls = bytes([NEVER] + [FORWARD] * (len(self._interfaces) - 1)).ljust(MAXVIFS, b"\xff")
        self._socket.setsockopt(
            socket.IPPROTO_IP, command, mfcctl(bytes(4), group.packed, parent, ttls)
        )

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._groups.clear()
