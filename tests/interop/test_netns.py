"""The namespace pair: layout, isolation, and teardown (also when a test fails)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop import netns
from tests.interop.netns import NetnsPair

pytestmark = pytest.mark.root

UDP_ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
print("ready", flush=True)
data, peer = s.recvfrom(100)
print(f"from {peer[0]}:{peer[1]}", flush=True)
s.sendto(data[::-1], peer)
"""
UDP_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"ping", (sys.argv[1], 9999))
print(s.recvfrom(100)[0].decode())
"""


def test_pair_layout(netns_pair: NetnsPair) -> None:
    pair = netns_pair
    assert pair.a.startswith(netns.NS_PREFIX) and pair.a.endswith("-a")
    assert pair.b == pair.a[:-2] + "-b"
    assert set(pair.namespaces) <= set(netns.list_netns())
    host_links = subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert pair.iface_a not in host_links and pair.iface_b not in host_links
    for ns in pair.namespaces:
        addrs = json.loads(pair.run(ns, ["ip", "-j", "addr", "show"]))
        by_name = {a["ifname"]: a for a in addrs}
        assert set(by_name) == {"lo", pair.iface(ns)}
        assert "UP" in by_name["lo"]["flags"]
        v4 = [
            (i["local"], i["prefixlen"])
            for i in by_name[pair.iface(ns)]["addr_info"]
            if i["family"] == "inet"
        ]
        assert v4 == [(pair.addr(ns), 24)]
        assert pair.run(ns, ["ip", "route", "show", "default"]).strip() == ""
        routes = json.loads(pair.run(ns, ["ip", "-j", "route", "show"]))
        assert [r["dst"] for r in routes] == ["198.51.100.0/24"]


def test_udp_between_namespaces(netns_pair: NetnsPair, tmp_path: Path) -> None:
    pair = netns_pair
    server = pair.daemon(
        pair.b, [sys.executable, "-c", UDP_ECHO, pair.addr_b], tmp_path / "echo.log"
    )
    server.wait_for_line("ready", timeout=10)
    out = pair.run(pair.a, [sys.executable, "-c", UDP_CLIENT, pair.addr_b])
    assert out.strip() == "gnip"
    assert server.wait_for_line(r"from (\S+):", timeout=5)[1] == pair.addr_a
    assert server.wait(5) == 0


def test_teardown_after_failure_kills_everything() -> None:
    stray: subprocess.Popen[bytes] | None = None
    with (
        pytest.raises(RuntimeError, match="simulated test failure"),
        netns.netns_pair(term_timeout=0.5) as pair,
    ):
        tracked = pair.run_in(pair.a, ["sleep", "60"])
        # ignores SIGTERM: teardown has to escalate to SIGKILL
        stubborn = pair.run_in(
            pair.b,
            [
                sys.executable,
                "-c",
                "import signal,time; signal.signal(15, 1); print('up', flush=True); time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
        )
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"up\n"
        # started behind the pair's back, still inside its namespace
        stray = subprocess.Popen(["ip", "netns", "exec", pair.b, "sleep", "60"])
        raise RuntimeError("simulated test failure")
    assert tracked.poll() is not None
    assert stubborn.poll() == -9
    assert stubborn.stdout is not None
    stubborn.stdout.close()
    assert stray is not None
    assert stray.wait(5) is not None
    assert not set(pair.namespaces) & set(netns.list_netns())
