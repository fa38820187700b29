"""Fixtures for the interop harness (network namespaces, leak check)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.interop import netns
from tests.interop.netns import NetnsPair


@pytest.fixture(name="netns_pair")
def netns_pair_fixture() -> Iterator[NetnsPair]:
    """Two fresh namespaces joined by a veth pair; everything is removed afterwards.

    Skips when not root or when ``ip netns`` is unavailable.
    """
    with netns.netns_pair() as pair:
        yield pair


@pytest.fixture(scope="session", autouse=True)
def _no_leftovers() -> Iterator[None]:
    """At the end of the session: none of our namespaces, links or processes is left."""
    yield
    alive = [p.pid for p in netns.started_processes if p.poll() is None]
    for proc in netns.started_processes:  # don't leave them behind either way
        netns.terminate_process(proc)
    assert not alive, f"processes left running: {alive}"
    if netns.netns_unavailable_reason() is not None:
        return
    ours = [ns for ns in netns.list_netns() if ns.startswith(netns.NS_PREFIX)]
    for ns in ours:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert not ours, f"network namespaces left behind: {ours}"
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=False
    ).stdout
    host_veths = [
        name
        for name in (netns.IFACE_A, netns.IFACE_B)
        if re.search(rf": {re.escape(name)}[@:]", links)
    ]
    assert not host_veths, f"test interfaces in the host namespace: {host_veths}"
