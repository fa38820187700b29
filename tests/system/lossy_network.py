"""A network namespace whose loopback loses a share of the GDOI datagrams, both ways.

Every daemon of a test runs inside it (``ip netns exec``), so each one has the whole
127.0.0.0/8 to itself and nothing reaches the host's network.  nftables drops
datagrams to the daemons' UDP port at random on the *input* hook: the sender sees
a successful send, as on a real lossy path (a drop on output would return EPERM to
the sender instead).  The namespace, its processes and its rules are gone when the
context ends, also after a failure.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.interop.netns import list_netns, netns_pids, skip_unless_netns, terminate_pid

_counter = itertools.count()


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def lossy_namespace(port: int, loss_percent: int) -> Iterator[str]:
    """A fresh namespace where ``loss_percent``% of UDP datagrams to ``port`` vanish."""
    skip_unless_netns()
    if shutil.which("nft") is None:
        reason = "nftables 'nft' not found (scripts/setup installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: a missing nft is a broken setup
        pytest.skip(reason)
    ns = f"gvl-{os.getpid()}-{next(_counter)}"
    _run("ip", "netns", "add", ns)
    try:
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        nft = ("ip", "netns", "exec", ns, "nft")
        _run(*nft, "add", "table", "inet", "loss")
        _run(*nft, "add", "chain", "inet", "loss", "input",
             "{ type filter hook input priority 0; }")  # fmt: skip
        _run(*nft, "add", "rule", "inet", "loss", "input", "udp", "dport", str(port), "numgen",
             "random", "mod", "100", "<", str(loss_percent), "counter", "drop")  # fmt: skip
        yield ns
    finally:
        for pid in netns_pids(ns):
            terminate_pid(pid)
        if ns in list_netns():
            subprocess.run(["ip", "netns", "del", ns], check=False)


def dropped_datagrams(ns: str) -> int:
    """How many datagrams the loss rule has dropped so far."""
    result = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "loss"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in result.stdout.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets")[1].split()[0])
    raise AssertionError("no counter in the loss rule")
