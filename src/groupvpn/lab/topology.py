"""The lab's network: its namespaces, veth links, addresses and routes, built and removed.

What to build is a :class:`~groupvpn.lab.layout.LabTopology`; the spec's example
(``SPEC_LAB``, what ``groupvpn lab`` builds) is six namespaces and five links::

    host1 ---- member1 ----+                +---- member2 ---- host2
                           |                |
                           +---- core ------+
                                  |
                                server

Every name the lab creates starts with its prefix (``gvlab`` unless told
otherwise): the namespaces are ``<prefix>-<node>``: ``<prefix>-server``,
``<prefix>-core``, then a member and a host namespace per site (``<prefix>-member1``,
``<prefix>-host1``, ...).  Each veth pair is created directly inside its two
namespaces, so nothing at all appears in the namespace the command runs in, and
every address is inside the lab: removing the namespaces removes everything.

The core is a *router* (IP forwarding, one subnet per link, static routes to the
members' protected prefixes as an MPLS provider would carry them), and a
multicast router: ``groupvpn.lab.mrouter`` runs in its namespace and has the
kernel replicate every multicast datagram arriving on one link to all the others,
as a provider core carries clear multicast.  The members are routers for their
LANs (IP forwarding on); what goes through the group SAs is up to the member
daemon's data plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from groupvpn.lab.layout import SPEC_LAB, LabTopology

DEFAULT_PREFIX = "gvlab"
STATE_ROOT = Path("/run/groupvpn-lab")
PREFIX_PATTERN = re.compile(r"[a-z][a-z0-9]{0,15}")

#: The spec lab's nodes, links, routes and loopback addresses (what ``groupvpn lab``
#: builds and describes); a :class:`Lab` builds its own ``topology``.
NODES = SPEC_LAB.nodes
LINKS = SPEC_LAB.links
ROUTES = SPEC_LAB.routes
LOOPBACK_ADDRESSES = SPEC_LAB.loopback_addresses


class LabError(Exception):
    """Something the operator must hear about (one line, no traceback)."""


@dataclass(frozen=True)
class Lab:
    """One lab instance: its name prefix, its topology and where its files live."""

    prefix: str = DEFAULT_PREFIX
    topology: LabTopology = SPEC_LAB

    def __post_init__(self) -> None:
        if not PREFIX_PATTERN.fullmatch(self.prefix):
            raise LabError(
                f"bad lab prefix {self.prefix!r}: a lowercase letter, then up to 15 lowercase "
                "letters or digits"
            )

    @property
    def state_dir(self) -> Path:
        return STATE_ROOT / self.prefix

    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    def ns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(node) for node in self.topology.nodes]

    def present_namespaces(self) -> list[str]:
        """This lab's namespaces that exist now (also ones an older version left)."""
        return [ns for ns in list_netns() if ns.startswith(f"{self.prefix}-")]

    def control(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.sock"

    def log(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.log"

    def config(self, daemon: str) -> Path:
        return self.state_dir / f"{daemon}.conf"

    # -- the state file: what `up` started, for `status` and `down` ------------------------

    def read_state(self) -> dict[str, object]:
        try:
            state = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def write_state(self, state: dict[str, object]) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def recorded_pids(self) -> dict[str, int]:
        processes = self.read_state().get("processes", {})
        if not isinstance(processes, dict):
            return {}
        return {str(k): int(v) for k, v in processes.items() if isinstance(v, int)}


# -- running commands --------------------------------------------------------------------


def run(argv: Iterable[str], *, check: bool = True, timeout: float = 20.0) -> str:
    """Run a command, return its stdout; raise LabError with its stderr when it fails."""
    argv = list(argv)
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer within {timeout:g} s") from exc
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def ip(*args: str, check: bool = True) -> str:
    return run(["ip", *args], check=check)


def in_ns(ns: str, argv: Iterable[str]) -> list[str]:
    """``argv`` prefixed to run inside namespace ``ns`` (``ip netns exec`` execs it)."""
    return ["ip", "netns", "exec", ns, *argv]


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(token) for token in out.split() if token.isdigit()]


def why_not_usable() -> str | None:
    """Why the lab cannot run here (not root, no iproute2), or None."""
    if os.geteuid() != 0:
        return (
            "groupvpn lab needs root: it creates network namespaces, veth links, addresses "
            "and routes (try: sudo groupvpn lab ...)"
        )
    if shutil.which("ip") is None:
        return "groupvpn lab needs iproute2's 'ip' command (apt-get install iproute2)"
    return None


# -- building --------------------------------------------------------------------------------


def _sysctls(lab: Lab, node: str) -> None:
    settings = {
        # No IPv6 chatter (router solicitations, MLD): the captures hold only the lab's traffic.
        "net/ipv6/conf/all/disable_ipv6": "1",
        "net/ipv6/conf/default/disable_ipv6": "1",
        # Reverse-path filtering off: the lab's routes are symmetric anyway, and a host's
        # distribution defaults (copied into new namespaces on some kernels) must not
        # decide whether the demo works.
        "net/ipv4/conf/all/rp_filter": "0",
        "net/ipv4/conf/default/rp_filter": "0",
    }
    if node in lab.topology.routers:
        settings["net/ipv4/ip_forward"] = "1"
    script = "; ".join(
        f"if [ -e /proc/sys/{key} ]; then echo {value} > /proc/sys/{key}; fi"
        for key, value in settings.items()
    )
    run(in_ns(lab.ns(node), ["sh", "-c", script]))


def build(lab: Lab) -> None:
    """Create the namespaces, links, addresses and routes.  The lab must not exist."""
    topology = lab.topology
    for node in topology.nodes:
        ip("netns", "add", lab.ns(node))
        ip("-n", lab.ns(node), "link", "set", "lo", "up")
        _sysctls(lab, node)
    for link in topology.links:
        (a_node, a_if, _), (b_node, b_if, _) = link.a, link.b
        ip("link", "add", a_if, "netns", lab.ns(a_node), "type", "veth",
           "peer", "name", b_if, "netns", lab.ns(b_node))  # fmt: skip
        for node, name, address in (link.a, link.b):
            ip("-n", lab.ns(node), "addr", "add", address, "dev", name)
            ip("-n", lab.ns(node), "link", "set", name, "up")
    for node, address in topology.loopback_addresses.items():
        ip("-n", lab.ns(node), "addr", "add", address, "dev", "lo")
    _wait_links_up(lab)
    for node, routes in topology.routes.items():
        for destination, gateway in routes:
            ip("-n", lab.ns(node), "route", "add", destination, "via", gateway)


def _wait_links_up(lab: Lab, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    ends = [end for link in lab.topology.links for end in (link.a, link.b)]
    while True:
        down = [
            f"{node}/{name}"
            for node, name, _ in ends
            if "LOWER_UP" not in ip("-n", lab.ns(node), "-o", "link", "show", "dev", name)
        ]
        if not down:
            return
        if time.monotonic() > deadline:
            raise LabError(f"links did not come up: {', '.join(down)}")
        time.sleep(0.05)


# -- inspecting ------------------------------------------------------------------------------


def tun_devices(lab: Lab, node: str) -> list[str]:
    """The TUN devices in ``node``'s namespace (the member data plane's, if it runs)."""
    out = ip("-n", lab.ns(node), "-j", "-d", "link", "show", check=False)
    try:
        links = json.loads(out or "[]")
    except ValueError:
        return []
    return [
        str(link["ifname"]) for link in links if link.get("linkinfo", {}).get("info_kind") == "tun"
    ]


# -- tearing down ----------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def pid_cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def terminate(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """SIGTERM each pid, wait up to ``timeout`` s for all, SIGKILL the rest; by pid only."""
    pids = [pid for pid in pids if pid_alive(pid)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if pid_alive(pid)]
            time.sleep(0.02)
        if not pids:
            break
    return pids


def lab_processes(lab: Lab) -> list[int]:
    """Processes the lab started: recorded ones still running its commands, and every
    process inside its namespaces."""
    found = {
        pid
        for pid in lab.recorded_pids().values()
        if pid_alive(pid) and str(lab.state_dir) in pid_cmdline(pid)
    }
    for ns in lab.present_namespaces():
        found.update(netns_pids(ns))
    found.discard(os.getpid())
    return sorted(found)


def teardown(lab: Lab) -> list[str]:
    """Stop the lab's processes, delete its namespaces and files; what was removed.

    Works from whatever is there (the state file may be missing after a crash), so
    it is safe to repeat."""
    removed: list[str] = []
    pids = lab_processes(lab)
    if pids:
        left = terminate(pids)
        if left:
            raise LabError(f"processes {left} did not stop")
        removed.append(f"stopped {len(pids)} process{'es' if len(pids) != 1 else ''}")
    namespaces = lab.present_namespaces()
    for ns in namespaces:
        ip("netns", "del", ns)
    if namespaces:
        removed.append(f"deleted namespaces {', '.join(sorted(namespaces))}")
    if lab.state_dir.exists():
        shutil.rmtree(lab.state_dir)
        removed.append(f"removed {lab.state_dir}")
    with contextlib.suppress(OSError):  # the last lab gone: no empty directory left either
        lab.state_dir.parent.rmdir()
    return removed
