"""The member data plane's Linux plumbing: TUN device, raw sockets, policy routing.

What it sets up (all IPv4), and why (../shared/reference/python-performance.md §2,
"Two kernel/routing findings"):

* a non-persistent TUN (``IFF_TUN | IFF_NO_PI``, default ``gvpn0``): clear traffic for
  the protected destinations enters it, decrypted traffic leaves it.  Non-persistent:
  the kernel removes it (and every route through it) when the process exits, crash
  included;
* table ``TABLE_TUN`` (8480): each protected destination ``dev gvpn0``;
* table ``TABLE_WAN`` (8481): each protected destination via the WAN's next hop for it
  (the gateway of the main table's best route through the WAN, else on-link);
* table ``TABLE_ESP_IN`` (8482): ``local default dev lo``;
* rules, in this order (lower priority number first):

  ====== ======================================= =================================
  pref   selector                                why
  ====== ======================================= =================================
  8480   ``fwmark 0x848 lookup 8481``            our own ESP leaves by the WAN, never
                                                 back into the TUN, although its
                                                 outer destination is a protected
                                                 host (address preservation)
  8481   ``fwmark 0x849 lookup main``            clear packets the engine passes on
                                                 (no dynamic policy matched) take
                                                 their normal path
  8482   ``iif WAN ipproto esp lookup 8482``     ESP whose outer destination is a
                                                 host behind us is delivered locally,
                                                 to the raw ESP socket
  8483   ``iif gvpn0 lookup main``               decrypted packets take the normal
                                                 path to the LAN
  8484   ``not fwmark 0x848/0xfffffffe``         everything else (not sent by us) for
         ``lookup 8480``                         a protected destination goes into
                                                 the TUN; what table 8480 does not
                                                 hold falls through to ``main``
  ====== ======================================= =================================

* two raw ``IPPROTO_RAW`` sockets (our own IP header, so the outer source is the
  inner one): ESP with ``SO_MARK 0x848``, clear packets with ``SO_MARK 0x849``;
  multicast out of the WAN, without loopback;
* a raw ``IPPROTO_ESP`` socket bound to the WAN, which joins the multicast groups of
  the protected destinations: ESP to a group is delivered locally only to a member
  of the group (multicast input ignores the routing rules);
* multicast forwarding between the LAN interfaces and the TUN for those groups
  (:class:`MulticastRouter`): the kernel forwards multicast only by its multicast
  routing table, never by routes or rules, so a host's datagram to a protected group
  reaches the TUN, and a decrypted one reaches the LANs, only through (*,G) entries.

Everything added is tagged: rule priorities 8480-8489, tables 8480-8489, the TUN
name, and a state file ``dataplane-net<inode>.json`` (mode 0600) in the state
directory, one per network namespace.  :meth:`LinuxPlumbing.teardown` removes it
all; :meth:`LinuxPlumbing.start` first removes what a crashed run left, unless the
state file names a member that still runs here (then it refuses to start).

pyroute2's synchronous ``IPRoute`` must not run on the event loop's thread
(python-performance.md §3): the shell calls these methods from a worker thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from groupvpn.dataplane.mroute import MulticastRouter

log = logging.getLogger("groupvpn")

#: Default TUN name; every TUN this module creates starts with ``TUN_PREFIX``.
DEFAULT_TUN_NAME = "gvpn0"
TUN_PREFIX = "gvpn"
#: The fwmark of the ESP the data plane sends (0x848: the GDOI port), and of the clear
#: packets it passes on (``FWMARK | 1``); ``OWN_MARKS`` matches both.
FWMARK = 0x848
CLEAR_MARK = FWMARK | 1
OWN_MARKS_MASK = 0xFFFFFFFE
TABLE_TUN = 8480
TABLE_WAN = 8481
TABLE_ESP_IN = 8482
#: Tables and rule priorities this module owns (and removes at start and stop).
OWNED_TABLES = range(8480, 8490)
OWNED_PRIORITIES = range(8480, 8490)
PRIORITY_MARKED = 8480
PRIORITY_CLEAR = 8481
PRIORITY_ESP_IN = 8482
PRIORITY_FROM_TUN = 8483
PRIORITY_TO_TUN = 8484
#: Where the state file goes by default: run-time state, like the TUN and the rules.
DEFAULT_STATE_DIR = Path("/run/groupvpn")
MAIN_TABLE = 254
FIB_RULE_INVERT = 0x2
#: Socket buffers for the raw sockets (root may exceed the sysctl maxima).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MULTICAST = IPv4Network("224.0.0.0/4")


class PlumbingError(Exception):
    """The data plane cannot be set up; the message is for the operator."""


@dataclass(frozen=True, slots=True)
class WanInterface:
    name: str
    index: int
    address: IPv4Address
    mtu: int


@dataclass
class _Installed:
    """What this run added, as written to the state file."""

    tun: str | None = None
    wan: str | None = None
    destinations: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)


def netns_id() -> int:
    """The inode of our network namespace: names the state file, one per namespace."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def state_file(state_dir: Path) -> Path:
    return state_dir / f"dataplane-net{netns_id()}.json"


def find_wan_interface(name: str | None, address: IPv4Address | None) -> WanInterface:
    """The Linux interface for `group-vpn-external-interface`.

    Junos names (``ge-0/0/1.0``) are not Linux names, so the interface is the one
    holding the address configured for it; a Linux name that exists is taken as is.
    """
    iproute = _iproute()
    with iproute() as ipr:
        links = {_attr(link, "IFLA_IFNAME"): link for link in ipr.get_links()}
        addresses = [
            (int(a["index"]), IPv4Address(_attr(a, "IFA_LOCAL") or _attr(a, "IFA_ADDRESS")))
            for a in ipr.get_addr(family=socket.AF_INET)
        ]
    chosen = None
    if name is not None:
        physical = name.partition(".")[0]
        chosen = links.get(name) or links.get(physical)
    if chosen is None and address is not None:
        index = next((i for i, a in addresses if a == address), None)
        chosen = next((link for link in links.values() if int(link["index"]) == index), None)
    if chosen is None:
        where = f" with address {address}" if address is not None else ""
        raise PlumbingError(
            f"external interface {name or '-'}: no Linux interface of that name or{where} "
            f"in this network namespace"
        )
    index = int(chosen["index"])
    own = [a for i, a in addresses if i == index]
    if not own:
        raise PlumbingError(
            f"external interface {_attr(chosen, 'IFLA_IFNAME')} has no IPv4 address"
        )
    local = address if address in own else own[0]
    return WanInterface(_attr(chosen, "IFLA_IFNAME"), index, local, int(_attr(chosen, "IFLA_MTU")))


class LinuxPlumbing:
    """The TUN, the raw sockets and the routing of one member data plane.

    Use: :meth:`start`, then :meth:`set_destinations` whenever the protected
    destinations change, then :meth:`teardown`.  The methods are blocking (netlink)
    and thread-safe; never call them on the event loop's thread.
    """

    def __init__(
        self,
        wan: WanInterface,
        *,
        tun_name: str = DEFAULT_TUN_NAME,
        state_dir: Path = DEFAULT_STATE_DIR,
        mark: int = FWMARK,
    ) -> None:
        if not tun_name.startswith(TUN_PREFIX) or len(tun_name) > 15:
            raise PlumbingError(
                f"TUN name {tun_name!r} must start with {TUN_PREFIX!r} and have at most 15 "
                f"characters"
            )
        if mark & 1:
            raise PlumbingError(f"fwmark {mark:#x} must be even (mark | 1 marks clear packets)")
        self.wan = wan
        self.tun_name = tun_name
        self.state_path = state_file(state_dir)
        self.mark = mark
        self.tun_fd: int | None = None
        self.tun_index: int | None = None
        self.send_socket: socket.socket | None = None
        self.clear_socket: socket.socket | None = None
        self.esp_socket: socket.socket | None = None
        self._installed = _Installed()
        self._destinations: dict[IPv4Network, IPv4Address | None] = {}
        self._groups: set[IPv4Address] = set()
        self._mrouter: MulticastRouter | None = None
        self._lock = threading.Lock()

    # -- start and stop ------------------------------------------------------------------

    def start(self, tun_mtu: int) -> None:
        """Remove leftovers, then create the TUN, the sockets, the rules; all or nothing."""
        check_privileges()
        with self._lock:
            removed = clean_leftovers(self.state_path.parent, self.tun_name)
            if removed:
                log.warning(
                    "data plane: removed leftovers of an earlier run: %s", "; ".join(removed)
                )
            try:
                self._installed = _Installed(tun=self.tun_name, wan=self.wan.name)
                self._write_state()
                self._open_tun(tun_mtu)
                self._open_sockets()
                self._add_rules()
                self._start_multicast_routing()
            except PlumbingError:
                self._teardown_locked()
                raise
            except Exception as exc:  # OSError, NetlinkError: undo what was done, say why
                self._teardown_locked()
                raise PlumbingError(f"data plane set-up failed: {_reason(exc)}") from exc
        log.info(
            "data plane: TUN %s (mtu %d), WAN %s (%s, mtu %d), fwmark %#x, "
            "rules %d-%d, tables %d/%d/%d",
            self.tun_name, tun_mtu, self.wan.name, self.wan.address, self.wan.mtu, self.mark,
            PRIORITY_MARKED, PRIORITY_TO_TUN, TABLE_TUN, TABLE_WAN, TABLE_ESP_IN,
        )  # fmt: skip
        with contextlib.suppress(OSError):
            if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0":
                log.warning(
                    "data plane: net.ipv4.ip_forward is 0, so this member does not forward: "
                    "only its own traffic goes through the group SAs, not its hosts'"
                )

    def teardown(self) -> None:
        """Remove everything this run added; never raises (what fails is logged)."""
        with self._lock:
            self._teardown_locked()

    def _teardown_locked(self) -> None:
        if self._mrouter is not None:
            self._mrouter.close()  # the kernel drops the vifs and entries with the socket
            self._mrouter = None
        for sock in (self.send_socket, self.clear_socket, self.esp_socket):
            if sock is not None:
                sock.close()
        self.send_socket = self.clear_socket = self.esp_socket = None
        if self.tun_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.tun_fd)  # a non-persistent TUN goes with its last descriptor
            self.tun_fd = None
        try:
            removed = _remove_owned()
        except Exception as exc:  # teardown must go on: report and carry on
            log.error("data plane: removing rules and routes failed: %s", exc)
            return
        self._destinations.clear()
        self._groups.clear()
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        if removed:
            log.info("data plane: removed %s", "; ".join(removed))

    # -- the routes ------------------------------------------------------------------------

    def set_destinations(self, destinations: Iterable[IPv4Network]) -> None:
        """Route exactly ``destinations`` into the TUN (and our ESP for them to the WAN)."""
        wanted = set(destinations)
        with self._lock:
            if self.tun_index is None:
                raise PlumbingError("the data plane is not started")
            iproute = _iproute()
            with iproute() as ipr:
                main = _main_routes_via(ipr, self.wan.index)
                for prefix in sorted(set(self._destinations) - wanted):
                    for table in (TABLE_TUN, TABLE_WAN):
                        _quietly(ipr.route, "del", dst=str(prefix), table=table)
                    del self._destinations[prefix]
                for prefix in sorted(wanted):
                    hop = None if prefix.subnet_of(MULTICAST) else _next_hop(main, prefix)
                    if prefix in self._destinations and self._destinations[prefix] == hop:
                        continue
                    ipr.route("replace", dst=str(prefix), oif=self.tun_index, table=TABLE_TUN)
                    via: dict[str, Any] = {} if hop is None else {"gateway": str(hop)}
                    ipr.route(
                        "replace", dst=str(prefix), oif=self.wan.index, table=TABLE_WAN, **via
                    )
                    self._destinations[prefix] = hop
            self._sync_groups(wanted)
            self._installed.destinations = [str(p) for p in sorted(self._destinations)]
            self._installed.groups = [str(g) for g in sorted(self._groups)]
            self._write_state()
        log.info(
            "data plane: routes into %s: %s",
            self.tun_name, ", ".join(str(p) for p in sorted(wanted)) or "none",
        )  # fmt: skip

    def destinations(self) -> list[IPv4Network]:
        with self._lock:
            return sorted(self._destinations)

    def _sync_groups(self, wanted: set[IPv4Network]) -> None:
        """Join the multicast groups among the destinations on the ESP socket's WAN."""
        sock = self.esp_socket
        assert sock is not None
        groups = {p.network_address for p in wanted if p.subnet_of(MULTICAST)}
        for prefix in wanted:
            if prefix.subnet_of(MULTICAST) and prefix.prefixlen != 32:
                log.warning(
                    "data plane: multicast destination %s is not one group: ESP to its groups "
                    "is received only for groups joined by other means", prefix,
                )  # fmt: skip
                groups.discard(prefix.network_address)
        for group in sorted(self._groups - groups):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, self._mreq(group))
            self._groups.discard(group)
        for group in sorted(groups - self._groups):
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, self._mreq(group))
            except OSError as exc:
                log.warning(
                    "data plane: cannot join %s on %s: %s", group, self.wan.name, _reason(exc)
                )
                continue
            self._groups.add(group)
            log.info("data plane: joined %s on %s for group ESP", group, self.wan.name)
        if self._mrouter is not None:
            self._mrouter.set_groups(groups)

    def _start_multicast_routing(self) -> None:
        """Multicast forwarding LANs <-> TUN; without it (another multicast router runs
        here, or no kernel support) the data plane carries unicast only."""
        assert self.tun_index is not None
        iproute = _iproute()
        with iproute() as ipr:
            lo = int(ipr.link_lookup(ifname="lo")[0])
            with_address = {int(a["index"]) for a in ipr.get_addr(family=socket.AF_INET)}
            lans = [
                int(link["index"]) for link in ipr.get_links()
                if int(link["index"]) in with_address
                and int(link["index"]) not in (lo, self.wan.index, self.tun_index)
                and _attr(link, "IFLA_OPERSTATE") != "DOWN"
            ]  # fmt: skip
        router = MulticastRouter(lo, self.tun_index, lans)
        try:
            router.open()
        except OSError as exc:
            router.close()
            log.warning(
                "data plane: no multicast forwarding (%s): protected multicast groups are not "
                "carried", _reason(exc),
            )  # fmt: skip
            return
        self._mrouter = router

    def _mreq(self, group: IPv4Address) -> bytes:
        return struct.pack("4s4si", group.packed, self.wan.address.packed, self.wan.index)

    # -- the pieces --------------------------------------------------------------------------

    def _open_tun(self, mtu: int) -> None:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            request = struct.pack("16sH", self.tun_name.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, request)
        except OSError as exc:
            os.close(fd)
            raise PlumbingError(f"cannot create TUN {self.tun_name}: {_reason(exc)}") from exc
        self.tun_fd = fd
        # No IPv6 on the TUN: no link-local address, no router solicitations in it.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{self.tun_name}/disable_ipv6").write_text("1")
        # The engine's ICMP errors to a local sender ("fragmentation needed") come from
        # the member's own WAN address: the kernel drops packets with a local source
        # arriving on an interface unless accept_local is set on it.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv4/conf/{self.tun_name}/accept_local").write_text("1")
        iproute = _iproute()
        with iproute() as ipr:
            self.tun_index = int(ipr.link_lookup(ifname=self.tun_name)[0])
            ipr.link("set", index=self.tun_index, mtu=mtu, txqlen=1000, state="up")

    def _open_sockets(self) -> None:
        self.send_socket = send = self._raw_sender(self.mark)
        self.clear_socket = clear = self._raw_sender(self.mark | 1)
        esp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ESP)
        self.esp_socket = esp
        esp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.wan.name.encode())
        for sock in (send, clear, esp):
            _enlarge_buffers(sock)
            sock.setblocking(False)

    def _add_rules(self) -> None:
        iproute = _iproute()
        with iproute() as ipr:
            lo = int(ipr.link_lookup(ifname="lo")[0])
            ipr.route(
                "replace", dst="0.0.0.0/0", type="local", scope="host", oif=lo, table=TABLE_ESP_IN
            )
            mark = {"fwmark": self.mark, "fwmask": 0xFFFFFFFF}
            ipr.rule("add", table=TABLE_WAN, priority=PRIORITY_MARKED, **mark)
            clear = {"fwmark": self.mark | 1, "fwmask": 0xFFFFFFFF}
            ipr.rule("add", table=MAIN_TABLE, priority=PRIORITY_CLEAR, **clear)
            ipr.rule(
                "add", table=TABLE_ESP_IN, priority=PRIORITY_ESP_IN,
                ip_proto=socket.IPPROTO_ESP, iifname=self.wan.name,
            )  # fmt: skip
            ipr.rule("add", table=MAIN_TABLE, priority=PRIORITY_FROM_TUN, iifname=self.tun_name)
            ours = {"fwmark": self.mark, "fwmask": OWN_MARKS_MASK}
            ipr.rule(
                "add", table=TABLE_TUN, priority=PRIORITY_TO_TUN, flags=FIB_RULE_INVERT, **ours
            )

    def _raw_sender(self, mark: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self.wan.address.packed)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        except OSError:
            sock.close()
            raise
        return sock

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "started": time.time(),
            "tun": self._installed.tun,
            "wan": self._installed.wan,
            "mark": self.mark,
            "tables": [TABLE_TUN, TABLE_WAN, TABLE_ESP_IN],
            "priorities": list(range(PRIORITY_MARKED, PRIORITY_TO_TUN + 1)),
            "destinations": self._installed.destinations,
            "groups": self._installed.groups,
        }
        write_private(self.state_path, json.dumps(state, indent=1).encode() + b"\n")


# -- leftovers ----------------------------------------------------------------------------


def clean_leftovers(state_dir: Path, tun_name: str = DEFAULT_TUN_NAME) -> list[str]:
    """Remove what a data plane that did not stop cleanly left in this namespace.

    Refuses (PlumbingError) when a member data plane still runs here: the state file
    names a live process whose TUN exists, or our TUN name is taken.  (A crashed
    run's TUN is already gone: it was not persistent.)
    """
    path = state_file(state_dir)
    state = read_state(path)
    if state is not None:
        pid, tun = state.get("pid"), state.get("tun")
        if (
            isinstance(pid, int) and pid != os.getpid() and _alive(pid)
            and isinstance(tun, str) and _link_exists(tun)
        ):  # fmt: skip
            raise PlumbingError(
                f"another member data plane (pid {pid}, TUN {tun}) runs in this network "
                f"namespace ({path})"
            )
    if _link_exists(tun_name):
        raise PlumbingError(
            f"interface {tun_name} already exists: another member data plane or another "
            f"program uses that name"
        )
    removed = _remove_owned()
    if path.exists():
        path.unlink()
        removed.append(f"state file {path}")
    return removed


def leftovers(tun_name: str = DEFAULT_TUN_NAME) -> list[str]:
    """What of ours is in this namespace now (rules, routes, the TUN); for tests and checks."""
    iproute = _iproute()
    found = []
    with iproute() as ipr:
        for rule in ipr.get_rules(family=socket.AF_INET):
            if (priority := rule.get("priority")) in OWNED_PRIORITIES:
                found.append(f"rule {priority}")
        for route in ipr.route("dump", family=socket.AF_INET):
            if (table := _route_table(route)) in OWNED_TABLES:
                dst = route.get_attr("RTA_DST") or "0.0.0.0"
                found.append(f"route {dst}/{route['dst_len']} table {table}")
        if ipr.link_lookup(ifname=tun_name):
            found.append(f"link {tun_name}")
    return found


def _remove_owned() -> list[str]:
    """Delete every rule with one of our priorities and every route in our tables."""
    iproute = _iproute()
    removed = []
    with iproute() as ipr:
        for rule in ipr.get_rules(family=socket.AF_INET):
            priority = rule.get("priority")
            if priority in OWNED_PRIORITIES:
                _quietly(ipr.rule, "del", priority=priority, table=_rule_table(rule))
                removed.append(f"rule {priority}")
        tables = {_route_table(route) for route in ipr.route("dump", family=socket.AF_INET)}
        for table in sorted(tables & set(OWNED_TABLES)):
            ipr.flush_routes(table=table, family=socket.AF_INET)
            removed.append(f"routes of table {table}")
    return removed


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("data plane: ignoring unreadable state file %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` as mode 0600, atomically (temporary name, rename)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".new")
        temporary.unlink(missing_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        raise PlumbingError(
            f"cannot write the data plane state file {path}: {_reason(exc)}"
        ) from exc


# -- helpers ------------------------------------------------------------------------------


def check_privileges() -> None:
    """A clear error when this process cannot create a TUN or raw sockets."""
    if not os.path.exists("/dev/net/tun"):
        raise PlumbingError("no /dev/net/tun: this system (or container) has no TUN support")
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ESP)
    except PermissionError as exc:
        raise PlumbingError(
            "the data plane needs root (CAP_NET_ADMIN and CAP_NET_RAW) for its TUN, "
            "routes and raw sockets"
        ) from exc
    probe.close()


def _iproute() -> Any:
    try:
        from pyroute2 import IPRoute  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise PlumbingError("the Linux data plane needs pyroute2 (pip install pyroute2)") from exc
    return IPRoute


def _attr(message: Any, name: str) -> Any:
    return message.get_attr(name)


def _route_table(route: Any) -> int:
    table = route.get_attr("RTA_TABLE")
    return int(table if table is not None else route["table"])


def _rule_table(rule: Any) -> int:
    table = rule.get_attr("FRA_TABLE")
    return int(table if table is not None else rule["table"])


def _main_routes_via(ipr: Any, oif: int) -> list[tuple[IPv4Network, IPv4Address | None]]:
    """The main table's routes out of interface ``oif``: (prefix, gateway or None)."""
    routes = []
    for route in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
        if route.get_attr("RTA_OIF") != oif or route["type"] != 1:  # RTN_UNICAST
            continue
        dst = route.get_attr("RTA_DST") or "0.0.0.0"
        gateway = route.get_attr("RTA_GATEWAY")
        prefix = IPv4Network(f"{dst}/{route['dst_len']}", strict=False)
        routes.append((prefix, IPv4Address(gateway) if gateway else None))
    return routes


def _next_hop(
    routes: list[tuple[IPv4Network, IPv4Address | None]], prefix: IPv4Network
) -> IPv4Address | None:
    """The gateway of the longest main-table route through the WAN covering ``prefix``."""
    covering = [(p, gw) for p, gw in routes if prefix.subnet_of(p)]
    if not covering:
        return None
    return max(covering, key=lambda route: route[0].prefixlen)[1]


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    """A netlink call whose "no such thing" answer is fine (removing what may be gone)."""
    from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

    try:
        call(*args, **kwargs)
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH, errno.ENODEV):
            raise


def _link_exists(name: str) -> bool:
    iproute = _iproute()
    with iproute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _enlarge_buffers(sock: socket.socket) -> None:
    for forced, plain in ((33, socket.SO_RCVBUF), (32, socket.SO_SNDBUF)):  # *BUFFORCE
        try:
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER_BYTES)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
