"""The data plane end to end in a topology of its own: three sites, a core, a key server.

Not the lab's addresses or names: the key server is 172.16.0.1 behind the core's
100.64.0.0/24 link, member1..3 have WAN links in 100.64.1-3.0/24 and protect
10.11.0.0/16, 10.12.0.0/16 and 10.13.0.0/16 with one host each, host1 sends to
239.5.5.5, and the group has a policy for every member-to-member direction and one
for the multicast flow, ``anti-replay-time-window 60`` and ``activation-time-delay
10``.  Every namespace is ``gvtp<pid>-<node>``.  The lab's own builder, daemons,
traffic and capture tools (``groupvpn.lab``) run it from a
:class:`~groupvpn.lab.layout.LabTopology`.

One module-scoped fixture builds it and always removes it.  The checks: unicast
between every pair of hosts, multicast from host1 to host2 and host3, the core seeing
only ESP that keeps the hosts' addresses, a captured ESP packet replayed from the
core dropped as ``replayed``, a member whose group clock runs 200 s ahead rejected
as ``outside-anti-replay-window``, a 50 packets/s stream losing nothing across an
operator rekey, nor while the key server is killed (SIGKILL), restarted on its stored
state and rekeys, and nothing of it left afterwards (the last test tears it down).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from groupvpn.dataplane.linux import DEFAULT_STATE_DIR, OWNED_PRIORITIES, OWNED_TABLES
from groupvpn.lab import daemons, demo, topology
from groupvpn.lab.layout import LabTopology, Site
from groupvpn.lab.topology import Lab
from tests.interop.netns import skip_unless_netns
from tests.system.dataplane_lab import host_view, lines_of, wait_ready
from tests.system.spec_network import eventually, member_keys, rekey, server_spis

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

PREFIX = f"gvtp{os.getpid()}"
TOPOLOGY = LabTopology(
    sites=tuple(
        Site(f"member{n}", f"host{n}", wan=f"100.64.{n}.1/24", core=f"100.64.{n}.254/24",
             lan=f"10.1{n}.0.1/16", host_address=f"10.1{n}.1.1")
        for n in (1, 2, 3)
    ),
    server_address="172.16.0.1",
    server_wan="100.64.0.1/24",
    server_core="100.64.0.254/24",
    multicast_group="239.5.5.5",
    scope="10.8.0.0/13",
    anti_replay_time_window=60,
    activation_time_delay=10,
)  # fmt: skip
HOST = TOPOLOGY.host_addresses
SKEW = 200  # seconds: well beyond the 60 s window
STREAM_RATE, STREAM_SECONDS, STREAM_PORT = 50, 35, 5301


# -- building, inspecting and removing it ----------------------------------------------------


def state_file(lab: Lab, member: str) -> Path:
    """The member data plane's state file: one per network namespace, named by its inode."""
    return DEFAULT_STATE_DIR / f"dataplane-net{os.stat(f'/run/netns/{lab.ns(member)}').st_ino}.json"


def dataplane_leftovers(lab: Lab, member: str) -> list[str]:
    """The data plane's rules, table routes, TUN and state file in ``member``'s namespace."""
    ns = lab.ns(member)
    rules = json.loads(topology.ip("-n", ns, "-j", "rule", "show") or "[]")
    routes = json.loads(topology.ip("-n", ns, "-j", "route", "show", "table", "all") or "[]")
    state = state_file(lab, member)
    return [
        *(f"rule {r['priority']}" for r in rules if r.get("priority") in OWNED_PRIORITIES),
        *(f"route {r['dst']} table {r['table']}" for r in routes
          if str(r.get("table", "")).isdigit() and int(r["table"]) in OWNED_TABLES),
        *(f"link {tun}" for tun in topology.tun_devices(lab, member)),
        *([f"state file {state}"] if state.exists() else []),
    ]  # fmt: skip


def assert_nothing_left(lab: Lab, before: dict[str, Any], state_files: list[Path]) -> None:
    assert lab.present_namespaces() == []
    assert [path for path in state_files if path.exists()] == []
    assert not lab.state_dir.exists()
    assert host_view(TOPOLOGY, PREFIX) == before
    mine = [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if str(lab.state_dir) in topology.pid_cmdline(pid)]  # fmt: skip
    assert [pid for pid in mine if topology.pid_alive(pid)] == []


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    skip_unless_netns()
    the_lab = Lab(PREFIX, TOPOLOGY)
    assert the_lab.present_namespaces() == [], "a lab of this test's name is already there"
    before = host_view(TOPOLOGY, PREFIX)
    state_files: list[Path] = []
    try:
        topology.build(the_lab)
        state_files += [state_file(the_lab, member) for member in TOPOLOGY.members]
        daemons.start_all(the_lab, say=lambda line: None)
        view = demo.dataplane(the_lab, timeout=15)
        assert all(v["tun"] and v["route"] in v["tun"] for v in view.values()), view
        yield the_lab
    finally:
        topology.teardown(the_lab)
    assert_nothing_left(the_lab, before, state_files)


@pytest.fixture(scope="module")
def traffic(lab: Lab) -> dict[str, Any]:
    """The lab demo's traffic in this topology: every host pings every other, host1 sends
    to the group, captures on the core and the hosts, the members' counters."""
    return demo.run_traffic(lab, count=5, say=lambda line: None)


def statistics(lab: Lab, member: str) -> dict[str, Any]:
    view = daemons.control(lab, member, "member-dataplane-statistics")
    assert isinstance(view, dict) and "engine" in view, view
    return view


def dropped(lab: Lab, member: str, reason: str) -> int:
    count: int = statistics(lab, member)["engine"]["dropped"][reason]
    return count


def tool(lab: Lab, node: str, module: str, *words: str) -> subprocess.Popen[str]:
    """``python -m MODULE WORDS`` in ``node``'s namespace, stdout piped."""
    return subprocess.Popen(
        topology.in_ns(lab.ns(node), [sys.executable, "-m", module, *words]),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def arrived(capture: list[dict[str, Any]], source: str, destination: str) -> int:
    """Packets from ``source`` to ``destination`` in a probe capture's flows."""
    return sum(f["packets"] for f in capture
               if f["source"] == source and f["destination"] == destination)  # fmt: skip


def summary(result: dict[str, Any]) -> str:
    return "; ".join(f"{'ok' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}"
                     for c in result["checks"])  # fmt: skip


# -- the traffic ------------------------------------------------------------------------------


def test_unicast_is_delivered_both_ways_between_every_pair_of_hosts(
    traffic: dict[str, Any],
) -> None:
    pings = traffic["ping"]
    assert sorted(pings) == sorted(f"{a}->{b}" for a in HOST for b in HOST if a != b)
    for direction, ping in pings.items():
        assert ping["received"] == ping["sent"] == 5, (direction, ping)


def test_multicast_from_host1_reaches_every_receiving_members_host(
    traffic: dict[str, Any],
) -> None:
    received = demo.multicast_received(traffic, TOPOLOGY)
    assert set(received) == {"host2", "host3"}
    for host, view in received.items():
        assert view["received"] == traffic["multicast"]["sent"]["sent"] == 5, (host, view)
        assert view["sources"] == {HOST["host1"]: 5}
        assert arrived(traffic["captures"][host], HOST["host1"], "239.5.5.5") == 5


def test_the_core_sees_only_esp_between_the_hosts_own_addresses(traffic: dict[str, Any]) -> None:
    core = traffic["captures"]["core"]
    lans = IPv4Network(TOPOLOGY.scope)
    hosts = [*HOST.values(), "239.5.5.5"]
    from_lans = [f for f in core if lans.overlaps(IPv4Network(f["source"]))
                 or lans.overlaps(IPv4Network(f["destination"]))]  # fmt: skip
    # Everything from the hosts' LANs crosses the core as ESP, between the hosts' own
    # addresses (address preservation): no clear packet, no member WAN address.
    assert from_lans and all(f["protocol"] == "esp" for f in from_lans), from_lans
    assert all(f["source"] in hosts and f["destination"] in hosts for f in from_lans), from_lans
    esp = [f for f in core if f["protocol"] == "esp"]
    assert esp == from_lans  # no ESP between any other addresses (the members' WANs)
    assert traffic["core"]["clear"] == {}
    for a in HOST.values():
        for b in HOST.values():
            if a != b:  # 5 echo requests one way, 5 replies the other: 10 each way
                assert traffic["core"]["esp"].get(f"{a} > {b}") == 10, (a, b)
    assert traffic["core"]["esp"].get(f"{HOST['host1']} > 239.5.5.5") == 5
    for host in HOST:  # the hosts get their packets in clear, never ESP
        assert not any(f["protocol"] == "esp" for f in traffic["captures"][host])
    assert traffic["ok"], summary(traffic)


# -- anti-replay ------------------------------------------------------------------------------


def test_a_replayed_esp_packet_captured_at_the_core_is_dropped(lab: Lab) -> None:
    host1, host2 = HOST["host1"], HOST["host2"]
    capture_host1 = demo.Background.start(lab, "host1", "capture")
    try:
        sniffer = tool(lab, "core", "tests.system.dataplane_tool", "capture",
                       "--iface", "to-member2", "--protocol", "50", "--count", "1",
                       "--timeout", "10")  # fmt: skip
        wait_ready(sniffer)
        ping = demo.probe(lab, "host2", "ping", host2, host1, "--count", "1")
        assert ping["received"] == 1, ping
        packets = [json.loads(line) for line in lines_of(sniffer) if line.startswith("{")]
        (request,) = [bytes.fromhex(p["hex"]) for p in packets if not p["outgoing"]]
        assert (request[9], request[12:16], request[16:20]) == (
            50, IPv4Address(host2).packed, IPv4Address(host1).packed)  # fmt: skip

        before = dropped(lab, "member1", "replayed")
        subprocess.run(
            topology.in_ns(lab.ns("core"), [sys.executable, "-m", "tests.system.dataplane_tool",
                                            "send-raw", "--packet", request.hex()]),
            check=True, timeout=30,
        )  # fmt: skip
        assert eventually(lambda: dropped(lab, "member1", "replayed") == before + 1, timeout=5)
        time.sleep(0.5)
    finally:
        seen_at_host1 = capture_host1.stop()["flows"]
    requests = [
        f
        for f in seen_at_host1
        if (f["source"], f["destination"], f["detail"]) == (host2, host1, "echo-request")
    ]
    assert sum(f["packets"] for f in requests) == 1, seen_at_host1  # the original only


def test_a_member_whose_group_clock_is_beyond_the_window_is_rejected(lab: Lab) -> None:
    daemons.restart_member(lab, "member3", ["--group-clock-skew", str(SKEW)])
    view = demo.dataplane(lab, timeout=15)
    assert view["member3"]["tun"] and view["member3"]["route"] in view["member3"]["tun"], view
    host1, host3 = HOST["host1"], HOST["host3"]
    before = dropped(lab, "member1", "outside-anti-replay-window")
    captures = {node: demo.Background.start(lab, node, "capture") for node in ("core", "host1")}
    try:
        ping = demo.probe(lab, "host3", "ping", host3, host1, "--count", "3", "--timeout", "1")
    finally:
        seen = {node: capture.stop()["flows"] for node, capture in captures.items()}
    assert ping["sent"] == 3 and ping["received"] == 0, ping
    # member3 did encrypt and send (ESP with the hosts' addresses crossed the core) ...
    assert arrived([f for f in seen["core"] if f["protocol"] == "esp"], host3, host1) == 3
    # ... and member1 dropped every packet as too far from its own group time.
    rejected = eventually(
        lambda: dropped(lab, "member1", "outside-anti-replay-window") - before >= 3, timeout=5
    )
    assert rejected, statistics(lab, "member1")
    assert arrived(seen["host1"], host3, host1) == 0, seen["host1"]


# -- rekey --------------------------------------------------------------------------------------


class Stream:
    """What a UDP stream from host1 to host2 sent and what arrived (udp_stream.py)."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.sent = 0
        self.got: dict[str, Any] = {}

    def assert_nothing_lost(self) -> None:
        assert self.sent == STREAM_RATE * self.seconds
        missing = sorted(set(range(1, self.sent + 1)) - set(self.got["received"]))
        assert missing == [] and self.got["duplicates"] == 0, f"lost {len(missing)}: {missing[:20]}"


@contextlib.contextmanager
def stream(lab: Lab, port: int, seconds: int) -> Iterator[Stream]:
    """STREAM_RATE numbered datagrams a second from host1 to host2 for ``seconds``; the
    block runs while they flow, and the stream's end is awaited after it."""
    host1, host2 = HOST["host1"], HOST["host2"]
    run = Stream(seconds)
    receiver_process = tool(lab, "host2", "tests.system.udp_stream", "receive", host2, str(port))
    receiver = demo.Background("udp_stream receive in host2", receiver_process)
    sender = None
    try:
        assert receiver_process.stdout is not None
        assert receiver_process.stdout.readline().strip() == "ready"
        sender = tool(lab, "host1", "tests.system.udp_stream", "send", host1, host2,
                      str(port), str(STREAM_RATE), str(seconds))  # fmt: skip
        yield run
        out, _ = sender.communicate(timeout=seconds + 20)
        run.sent = json.loads(out.strip().splitlines()[-1])["sent"]
        time.sleep(0.5)
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.communicate()
        run.got = receiver.stop()


def policy_from_host1_to_host2() -> str:
    (policy,) = [name for name, flow in TOPOLOGY.group_policies().items()
                 if flow == ("10.11.0.0/16", "10.12.0.0/16")]  # fmt: skip
    return policy


def keys_from_host1_to_host2(lab: Lab, member: str) -> dict[str, str]:
    """The member's keys for that policy: SPI -> state."""
    return {
        k["spi"]: k["state"]
        for k in member_keys(lab.control(member))
        if (k["source"], k["destination"]) == ("10.11.0.0/16", "10.12.0.0/16")
    }


def test_a_stream_loses_nothing_across_an_operator_rekey(lab: Lab) -> None:
    host1, host2 = HOST["host1"], HOST["host2"]
    policy = policy_from_host1_to_host2()
    server = lab.control("server")
    old = server_spis(server)[policy]
    capture = demo.Background.start(lab, "core", "capture")
    try:
        with stream(lab, STREAM_PORT, STREAM_SECONDS) as run:
            rekey(server)
            new = server_spis(server)[policy]
    finally:
        flows = capture.stop()["flows"]
    assert new != old
    run.assert_nothing_lost()
    # The stream crossed the core under the old SPI, then the new one.
    spis = {
        f["detail"]: f["packets"]
        for f in flows
        if (f["protocol"], f["source"], f["destination"]) == ("esp", host1, host2)
    }
    assert spis.get(f"spi {old}", 0) > 0 and spis.get(f"spi {new}", 0) > 0, spis
    assert sum(spis.values()) == run.sent, spis
    # Both ends show the new key active and the old one retiring (it decrypts until its
    # hard lifetime, encrypts no more).
    for member in ("member1", "member2"):
        keys = keys_from_host1_to_host2(lab, member)
        assert keys == {new: "active", old: "retiring"}, (member, keys)


def test_a_stream_loses_nothing_while_the_key_server_is_killed_and_restarted(lab: Lab) -> None:
    """Issue 6: kill -9 of the key server in the middle of a stream, a restart on its
    stored state, then a rekey: not one packet is lost for lack of keys, the restarted
    server has the same keys, and no member registers again."""
    policy = policy_from_host1_to_host2()
    server = lab.control("server")
    before = server_spis(server)
    registered_before = set(daemons.registered_members(lab))
    # The rekey comes about 8 s in; its keys encrypt 2 x ATD after they arrive, and a v1
    # member, which RFC 3547 cannot tell the server's ATD, uses the Junos default 15 s.
    with stream(lab, STREAM_PORT + 1, seconds=45) as run:
        time.sleep(3)
        pid = lab.recorded_pids()["server"]
        os.kill(pid, signal.SIGKILL)
        daemons.wait_until(lab, "server", lambda: not topology.pid_alive(pid), "killed", 5)
        time.sleep(2)  # the stream goes on meanwhile, on the members' keys
        runs = lab.log("server").read_text().count("key server running")
        daemons.start(lab, "server")
        daemons.wait_until(
            lab, "server",
            lambda: lab.log("server").read_text().count("key server running") > runs,
            "running again", 20,
        )  # fmt: skip
        assert server_spis(server) == before  # the same keys, not new ones
        rekey(server)
        new = server_spis(server)[policy]
    assert new != before[policy]
    run.assert_nothing_lost()
    assert set(daemons.registered_members(lab)) == registered_before
    for member in TOPOLOGY.members:
        assert "registering again" not in lab.log(member).read_text(), member
        keys = keys_from_host1_to_host2(lab, member)
        assert keys.get(new) == "active", (member, keys)  # the rekey after the restart arrived


# -- removal ------------------------------------------------------------------------------------


def test_everything_is_removed_afterwards(lab: Lab) -> None:
    """Stopped, each member removes its data plane; then the lab goes entirely (the
    fixture checks, once more, that nothing is left in the host's namespace)."""
    assert all(dataplane_leftovers(lab, member) for member in TOPOLOGY.members)
    for member in TOPOLOGY.members:
        daemons.stop(lab, member)
    for member in TOPOLOGY.members:
        assert dataplane_leftovers(lab, member) == [], member
    removed = topology.teardown(lab)
    assert removed[0] == "stopped 2 processes"  # the key server and the multicast router
    assert lab.present_namespaces() == []
    assert not lab.state_dir.exists()
