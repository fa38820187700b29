"""Two network namespaces joined by a veth pair, for interop tests.

Everything lives inside the namespaces: the veth pair is created directly in
them (nothing appears in the host namespace), they get TEST-NET-2 addresses
(198.51.100.1/24 and 198.51.100.2/24), ``lo`` is up, and there is no default
route, so traffic can only reach the peer namespace.

Usage::

    with netns_pair() as pair:
        proc = pair.run_in(pair.a, ["some-daemon", "--flag"])
        ...
    # every process started through ``pair`` is gone, both namespaces deleted

The ``netns_pair`` pytest fixture in ``conftest.py`` wraps the same context
manager.  Tests skip (never fail) only when not root or when ``ip netns`` is
unavailable.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.interop.daemon import DaemonProcess

#: Every namespace created by this process starts with this prefix, so a
#: leak check can look for exactly our names (other pytest sessions may run
#: concurrently on the same host with their own PIDs).
NS_PREFIX = f"gvt-{os.getpid()}-"
#: Interface names inside the namespaces (<= 15 characters).
IFACE_A = "gvt-veth-a"
IFACE_B = "gvt-veth-b"
ADDR_A = "198.51.100.1"
ADDR_B = "198.51.100.2"
PREFIXLEN = 24

_counter = itertools.count(1)
#: Every process started by :func:`run_in` in this Python process, whether or
#: not it has been stopped.  The session leak check uses it.
started_processes: list[subprocess.Popen[Any]] = []


class NetnsUnavailable(RuntimeError):
    """Raised when namespaces cannot be used (not root or no ``ip netns``)."""


def netns_unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    ip = shutil.which("ip")
    if ip is None:
        return "iproute2 'ip' command not found"
    res = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return f"'ip netns' is unavailable: {res.stderr.strip()}"
    return None


def skip_unless_netns() -> None:
    """``pytest.skip`` with a reason when namespaces cannot be used."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; RuntimeError with its stderr when it fails and ``check`` is set."""
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


def list_netns() -> list[str]:
    """Names of all named network namespaces on the host."""
    out = ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(ns: str) -> list[int]:
    """PIDs of the processes currently inside namespace ``ns``."""
    res = ip("netns", "pids", ns, check=False)
    if res.returncode != 0:
        return []
    return [int(tok) for tok in res.stdout.split() if tok.isdigit()]


def link_packets(ns: str | None, iface: str) -> int:
    """Frames sent plus received so far on ``iface`` (in namespace ``ns``)."""
    where = ["-n", ns] if ns is not None else []
    info = json.loads(ip(*where, "-s", "-j", "link", "show", "dev", iface).stdout)[0]
    stats = info["stats64"]
    return int(stats["rx"]["packets"]) + int(stats["tx"]["packets"])


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside namespace ``ns``.

    ``ip netns exec`` exec()s the command, so the PID of the resulting process
    is the PID of the command itself.
    """
    return ["ip", "netns", "exec", ns, *argv]


def run_in(ns: str | None, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside namespace ``ns`` (or on the host when ``ns`` is None).

    ``popen_kwargs`` go to :class:`subprocess.Popen`; stdin defaults to
    ``/dev/null``.  The caller owns the process: prefer
    :meth:`NetnsPair.run_in`, which also stops it at teardown.
    """
    full = ns_argv(ns, argv) if ns is not None else list(argv)
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    proc: subprocess.Popen[Any] = subprocess.Popen(full, **popen_kwargs)
    started_processes.append(proc)
    return proc


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    # state is the first field after the ")" that closes the command name
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def terminate_pid(pid: int, timeout: float = 3.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL it (by PID only)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.02)


def terminate_process(proc: subprocess.Popen[Any], timeout: float = 3.0) -> int | None:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL; returns its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5.0)
    return proc.returncode


@dataclass
class NetnsPair:
    """Two namespaces ``a`` and ``b`` with a veth pair between them."""

    a: str
    b: str
    iface_a: str = IFACE_A
    iface_b: str = IFACE_B
    addr_a: str = ADDR_A
    addr_b: str = ADDR_B
    prefixlen: int = PREFIXLEN
    ipv6: bool = False
    term_timeout: float = 3.0
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    @property
    def namespaces(self) -> tuple[str, str]:
        return (self.a, self.b)

    def iface(self, ns: str) -> str:
        """The veth interface name inside ``ns``."""
        return {self.a: self.iface_a, self.b: self.iface_b}[ns]

    def addr(self, ns: str) -> str:
        """The TEST-NET-2 address of ``ns``."""
        return {self.a: self.addr_a, self.b: self.addr_b}[ns]

    def peer_addr(self, ns: str) -> str:
        """The address of the other namespace, seen from ``ns``."""
        return {self.a: self.addr_b, self.b: self.addr_a}[ns]

    def run_in(self, ns: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``ns``; it is stopped at teardown if still running."""
        if ns not in self.namespaces:
            raise ValueError(f"{ns!r} is not one of {self.namespaces}")
        proc = run_in(ns, argv, **popen_kwargs)
        self.processes.append(proc)
        return proc

    def daemon(
        self, ns: str, argv: Sequence[str], log_path: str | os.PathLike[str], **kwargs: Any
    ) -> DaemonProcess:
        """Start a :class:`~tests.interop.daemon.DaemonProcess` in ``ns``, stopped at teardown."""
        from tests.interop.daemon import daemon_in

        if ns not in self.namespaces:
            raise ValueError(f"{ns!r} is not one of {self.namespaces}")
        return daemon_in(self, ns, argv, log_path, **kwargs)

    def on_teardown(self, fn: Callable[[], object]) -> None:
        """Call ``fn`` at teardown, before the processes are stopped (last added, first run)."""
        self.cleanups.append(fn)

    def adopt(self, proc: subprocess.Popen[Any]) -> None:
        """Have teardown stop ``proc`` too (for processes started elsewhere)."""
        self.processes.append(proc)

    def run(self, ns: str, argv: Sequence[str], timeout: float = 10.0) -> str:
        """Run a short command inside ``ns`` and return its stdout (raises on failure)."""
        res = subprocess.run(
            ns_argv(ns, argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if res.returncode != 0:
            raise RuntimeError(f"{argv} in {ns} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def link_packets(self, ns: str) -> int:
        """Frames sent plus received so far on the veth end in ``ns``."""
        return link_packets(ns, self.iface(ns))

    def stop_processes(self) -> None:
        """Stop everything started through this pair, then anything left in the namespaces."""
        for proc in reversed(self.processes):
            terminate_process(proc, self.term_timeout)
        # Grandchildren (or anything a test started by hand) still in our own
        # private namespaces: stop them by PID too, or the namespace lingers.
        for ns in self.namespaces:
            for pid in netns_pids(ns):
                terminate_pid(pid, self.term_timeout)


def _setup(pair: NetnsPair) -> None:
    ip("netns", "add", pair.a)
    ip("netns", "add", pair.b)
    # Create the pair directly inside the namespaces: nothing in the host ns.
    ip(
        "link", "add", pair.iface_a, "netns", pair.a,
        "type", "veth", "peer", "name", pair.iface_b, "netns", pair.b,
    )  # fmt: skip
    sides = ((pair.a, pair.iface_a, pair.addr_a), (pair.b, pair.iface_b, pair.addr_b))
    for ns, iface, addr in sides:
        if not pair.ipv6:
            # No IPv6 ND/MLD chatter on the link: captures hold only test traffic.
            # /proc/sys/net is per network namespace; no sysctl(8) needed.
            knob = f"/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"
            pair.run(ns, ["sh", "-c", f"if [ -e {knob} ]; then echo 1 > {knob}; fi"])
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", f"{addr}/{pair.prefixlen}", "dev", iface)
        ip("-n", ns, "link", "set", iface, "up")
    # Static ARP entries: no ARP on the wire either.
    for (ns, iface, _addr), (peer_ns, peer_iface, peer_addr) in (sides, sides[::-1]):
        mac = json.loads(ip("-n", peer_ns, "-j", "link", "show", "dev", peer_iface).stdout)[0][
            "address"
        ]
        ip("-n", ns, "neigh", "replace", peer_addr, "lladdr", mac, "dev", iface, "nud", "permanent")
    # Wait for the link to leave "tentative"/down states so the first packet is not lost.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        states = [
            ip("-n", ns, "-o", "link", "show", "dev", iface).stdout
            for ns, iface in ((pair.a, pair.iface_a), (pair.b, pair.iface_b))
        ]
        if all("state UP" in s for s in states):
            break
        time.sleep(0.02)


def _teardown(pair: NetnsPair) -> None:
    try:
        for fn in reversed(pair.cleanups):
            try:
                fn()
            except Exception as exc:  # keep tearing down; report at the end
                warnings.warn(f"netns teardown: {fn!r} failed: {exc!r}", stacklevel=1)
        pair.stop_processes()
    finally:
        for ns in pair.namespaces:
            if ns in list_netns():
                ip("netns", "del", ns, check=False)


@contextlib.contextmanager
def netns_pair(
    addr_a: str = ADDR_A,
    addr_b: str = ADDR_B,
    prefixlen: int = PREFIXLEN,
    ipv6: bool = False,
    term_timeout: float = 3.0,
) -> Iterator[NetnsPair]:
    """Create two fresh namespaces ``gvt-<pid>-<n>-a``/``-b`` joined by a veth pair.

    The link carries nothing but what the test sends: IPv6 is off on the veth
    (unless ``ipv6``) and the ARP entries are static.  ``term_timeout`` is
    how long teardown waits after SIGTERM before it sends SIGKILL.

    Skips the test when not root or when ``ip netns`` is unavailable.  On exit
    (also on an exception) every process started through the pair is stopped
    (SIGTERM, then SIGKILL, by PID) and both namespaces are deleted.
    """
    skip_unless_netns()
    base = f"{NS_PREFIX}{next(_counter)}"
    pair = NetnsPair(
        a=f"{base}-a",
        b=f"{base}-b",
        addr_a=addr_a,
        addr_b=addr_b,
        prefixlen=prefixlen,
        ipv6=ipv6,
        term_timeout=term_timeout,
    )
    try:
        _setup(pair)
        yield pair
    finally:
        _teardown(pair)
