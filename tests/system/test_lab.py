"""`groupvpn lab`: the spec's example in network namespaces, built, shown and removed.

The root tests run the real command line with a prefix of their own
(``gvlabt<pid>``), so they never touch a lab someone runs with the default name,
and check after each that no namespace, link or process of it is left.  The demo's
traffic test passes only once the member daemon has a data plane: until a TUN
device appears in member1's namespace it is an expected failure, with the demo's
own report of what the core saw as the reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from groupvpn.cli.main import cli
from groupvpn.config import load_config
from groupvpn.lab import configs, demo, probe, topology
from groupvpn.lab.topology import Lab
from tests.interop.netns import skip_unless_netns
from tests.system.spec_network import eventually, show_json

PREFIX = f"gvlabt{os.getpid()}"
LAB = Lab(PREFIX)
MEMBER_ADDRESSES = {"member1": "198.51.100.1", "member2": "203.0.113.1"}


def lab_cli(*words: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "groupvpn", "lab", "--prefix", PREFIX, *words],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def lab_processes() -> list[int]:
    """Processes whose command line names this lab's state directory."""
    found = []
    for entry in Path("/proc").iterdir():
        pid = int(entry.name) if entry.name.isdigit() else 0
        if pid and topology.pid_alive(pid) and str(LAB.state_dir) in topology.pid_cmdline(pid):
            found.append(pid)
    return found


def assert_nothing_left(pids: Sequence[int] = ()) -> None:
    assert LAB.present_namespaces() == []
    assert not LAB.state_dir.exists()
    host_links = topology.ip("-o", "link", "show")
    assert PREFIX not in host_links
    assert lab_processes() == []
    assert [pid for pid in pids if topology.pid_alive(pid)] == []


@pytest.fixture
def lab_prefix() -> Iterator[str]:
    skip_unless_netns()
    assert LAB.present_namespaces() == [], "a lab of this test's name is already there"
    try:
        yield PREFIX
    finally:
        lab_cli("down")
    assert_nothing_left()


def status() -> tuple[int, dict[str, Any]]:
    result = lab_cli("status", "--json")
    return result.returncode, json.loads(result.stdout)


# -- without root -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["up", "demo", "status", "down"])
def test_without_root_says_so_and_exits_2(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["lab", command])
    assert result.exit_code == 2
    assert "groupvpn lab needs root: it creates network namespaces" in result.output
    assert isinstance(result.exception, SystemExit)  # no traceback


def test_help_needs_no_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["lab", "up", "--help"])
    assert result.exit_code == 0
    assert "Build the lab" in result.output


# -- the configurations and the demo's bookkeeping (no root) ------------------------------


def test_generated_configs_are_the_spec_example_with_the_lab_addresses() -> None:
    texts = configs.all_configs()
    server = load_config(texts["server"], "server.conf")
    assert server.server is not None
    gateways = server.server.ike.gateways
    assert {a for g in gateways.values() for a in g.addresses} == {
        IPv4Address(a) for a in MEMBER_ADDRESSES.values()
    }
    for name in ("member1", "member2"):
        member = load_config(texts[name], f"{name}.conf")
        assert member.member is not None
        vpn = member.member.vpns["gvpn1"]
        assert vpn.external_interface == "wan0.0"
    assert "communication-type unicast" in texts["server"]
    for policy, (source, destination) in {
        "p1": ("10.1.0.0/16", "10.2.0.0/16"),
        "p2": ("10.2.0.0/16", "10.1.0.0/16"),
        "p3": ("10.1.1.1/32", "239.1.1.1/32"),
    }.items():
        assert f"match-policy {policy} source {source}\n" in texts["server"]
        assert f"match-policy {policy} destination {destination}\n" in texts["server"]


def _ipv4(source: str, destination: str, proto: int, body: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0,
        socket.inet_aton(source), socket.inet_aton(destination),
    )  # fmt: skip
    return header + body


def test_capture_tells_esp_from_clear() -> None:
    esp = _ipv4("10.1.1.1", "10.2.1.1", 50, bytes.fromhex("8a5f6a56") + bytes(20))
    assert probe.flow_of(esp) == ("esp", "10.1.1.1", "10.2.1.1", "spi 8a5f6a56")
    echo = _ipv4("10.1.1.1", "10.2.1.1", 1, probe.echo_request(1, 1, b"x"))
    assert probe.flow_of(echo) == ("icmp", "10.1.1.1", "10.2.1.1", "echo-request")
    udp = _ipv4("10.1.1.1", "239.1.1.1", 17, bytes.fromhex("c35013890010") + bytes(10))
    assert probe.flow_of(udp) == ("udp", "10.1.1.1", "239.1.1.1", "port 5001")
    assert probe.flow_of(b"\x60" + bytes(39)) is None  # IPv6


def _flow(interface: str, protocol: str, source: str, destination: str, n: int) -> Any:
    return {"interface": interface, "protocol": protocol, "source": source,
            "destination": destination, "detail": "", "packets": n}  # fmt: skip


def _observed(core: list[Any], answered: int, multicast: int) -> dict[str, Any]:
    ping = {"source": "", "destination": "", "sent": 5, "received": answered, "rtt-ms": []}
    return {
        "count": 5,
        "dataplane": {},
        "ping": {"host1->host2": ping, "host2->host1": ping},
        "multicast": {"sent": {"sent": 5}, "received": {"received": multicast}},
        "captures": {"core": core, "host1": [], "host2": []},
    }


def test_demo_checks_pass_only_for_esp_with_the_hosts_addresses_and_delivery() -> None:
    protected = [
        _flow("to-member1", "esp", "10.1.1.1", "10.2.1.1", 10),
        _flow("to-member2", "esp", "10.2.1.1", "10.1.1.1", 10),
        _flow("to-member1", "esp", "10.1.1.1", "239.1.1.1", 5),
        _flow("to-server", "udp", "192.0.2.1", "198.51.100.1", 3),
    ]
    result = demo.evaluate(_observed(protected, answered=5, multicast=5))
    assert result["ok"], result["checks"]
    assert result["core"] == {
        "esp": {"10.1.1.1 > 10.2.1.1": 10, "10.2.1.1 > 10.1.1.1": 10, "10.1.1.1 > 239.1.1.1": 5},
        "clear": {},
    }
    # The same traffic in clear: delivered, but not protected.
    clear = [_flow(f["interface"], "icmp", f["source"], f["destination"], f["packets"])
             for f in protected[:2]]  # fmt: skip
    result = demo.evaluate(_observed(clear, answered=5, multicast=5))
    failed = [c["check"] for c in result["checks"] if not c["ok"]]
    assert not result["ok"]
    assert "core saw no clear packet between the hosts" in failed
    assert len(failed) == 4  # three kinds of ESP missing, clear seen
    # ESP, but nothing arrives.
    result = demo.evaluate(_observed(protected, answered=0, multicast=2))
    assert [c["ok"] for c in result["checks"]] == [True, True, True, True, False, False, False]


def test_members_run_the_linux_data_plane() -> None:
    from groupvpn.lab import daemons

    assert daemons.argv(LAB, "member1")[-2:] == ["--dataplane", "linux"]
    assert "--dataplane" not in daemons.argv(LAB, "server")


# -- as root --------------------------------------------------------------------------------


@pytest.mark.root
def test_up_registers_both_members_status_reports_it_and_down_removes_everything(
    lab_prefix: str,
) -> None:
    result = lab_cli("up")
    assert result.returncode == 0, result.stdout + result.stderr
    for text in ("member1 registered", "member2 registered",
                 "$ groupvpn show security group-vpn server registered-members",
                 "$ groupvpn show security dynamic-policies"):  # fmt: skip
        assert text in result.stdout

    # Registrations, from the daemons themselves over their control sockets.
    members = show_json(LAB.control("server"), "security", "group-vpn", "server",
                        "registered-members")  # fmt: skip
    listed = {m["address"] for g in members["groups"] for m in g["members"]}
    assert listed == set(MEMBER_ADDRESSES.values())
    for member in ("member1", "member2"):
        ike = show_json(LAB.control(member), "security", "group-vpn", "member", "ike",
                        "security-associations")  # fmt: skip
        assert [r["state"] for r in ike["registrations"]] == ["registered"]
        policies = show_json(LAB.control(member), "security", "dynamic-policies")
        installed = {(p["source"], p["destination"]) for p in policies["dynamic-policies"]
                     if p["installed"]}  # fmt: skip
        assert installed == {("10.1.0.0/16", "10.2.0.0/16"), ("10.2.0.0/16", "10.1.0.0/16"),
                             ("10.1.1.1/32", "239.1.1.1/32")}  # fmt: skip

    code, view = status()
    assert code == 0
    assert view["state"] == "up"
    assert all(view["namespaces"].values())
    assert all(p["running"] for p in view["processes"].values())
    assert {m["registration"] for m in view["members"].values()} == {"registered"}
    shown = lab_cli("status")
    assert shown.returncode == 0 and f"lab {PREFIX}: up" in shown.stdout

    # The core routes and replicates multicast by itself (no data plane involved):
    # clear UDP from member1's WAN address to the group reaches member2's WAN.
    receiver = subprocess.Popen(
        topology.in_ns(LAB.ns("member2"), demo.probe_argv(
            "mcast-recv", "203.0.113.1", "239.1.1.1", "5002")),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
    demo.probe(LAB, "member1", "mcast-send", "198.51.100.1", "239.1.1.1", "5002", "--count", "3")
    time.sleep(0.3)
    receiver.send_signal(signal.SIGTERM)
    out, _ = receiver.communicate(timeout=10)
    assert json.loads(out.splitlines()[-1])["received"] == 3

    again = lab_cli("up")
    assert again.returncode == 1
    assert f"the lab {PREFIX} is already up" in again.stderr
    assert "Traceback" not in again.stderr
    assert status()[0] == 0  # refused, and the running lab untouched

    pids = [p["pid"] for p in view["processes"].values()]
    down = lab_cli("down")
    assert down.returncode == 0, down.stderr
    assert "stopped 4 processes" in down.stdout
    assert_nothing_left(pids)
    repeat = lab_cli("down")
    assert repeat.returncode == 0
    assert "nothing to remove" in repeat.stdout
    code, view = status()
    assert code == 1 and view["state"] == "down"


@pytest.mark.root
def test_down_cleans_up_after_up_crashed(lab_prefix: str) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "groupvpn", "lab", "--prefix", PREFIX, "up"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert eventually(lambda: LAB.log("member2").exists(), timeout=60)
    finally:
        up.kill()  # a crash: nothing of `up`'s own clean-up runs
        up.wait()
    pids = list(LAB.recorded_pids().values())
    assert len(pids) == 4
    assert status()[1]["state"] in ("up", "broken")
    down = lab_cli("down")
    assert down.returncode == 0, down.stderr
    assert_nothing_left(pids)

    # Only namespaces left (no state file), one with a process inside.
    for node in ("core", "host1"):
        topology.ip("netns", "add", LAB.ns(node))
    sleeper = subprocess.Popen(topology.in_ns(LAB.ns("host1"), ["sleep", "300"]))
    try:
        code, view = status()
        assert code == 1 and view["state"] == "broken"
        assert lab_cli("up").returncode == 1  # refuses to build over the remains
        down = lab_cli("down")
        assert down.returncode == 0, down.stderr
        assert "stopped 1 process" in down.stdout
        sleeper.wait(timeout=10)
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert_nothing_left()


@pytest.mark.root
def test_demo_protects_unicast_both_ways_and_multicast(lab_prefix: str) -> None:
    result = lab_cli("demo", "--json", timeout=240)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert_nothing_left()  # the demo tears the lab down by itself
    summary = "; ".join(
        f"{'ok' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}" for c in report["checks"]
    )
    assert report["member-dataplane"] == "linux"
    assert report["dataplane"]["member1"]["tun"], f"--dataplane linux, but no TUN: {summary}"
    core = report["core"]
    assert core["clear"] == {}, summary
    assert core["esp"].get("10.1.1.1 > 10.2.1.1", 0) >= 5, summary
    assert core["esp"].get("10.2.1.1 > 10.1.1.1", 0) >= 5, summary
    assert core["esp"].get("10.1.1.1 > 239.1.1.1", 0) >= 1, summary
    for direction, ping in report["ping"].items():
        assert ping["received"] == ping["sent"] == 5, (direction, summary)
    assert report["multicast"]["received"]["received"] == 5, summary
    arrived_host2 = {(f["protocol"], f["source"], f["destination"])
                     for f in report["captures"]["host2"]}  # fmt: skip
    assert ("udp", "10.1.1.1", "239.1.1.1") in arrived_host2
    assert not any(f["protocol"] == "esp" for h in ("host1", "host2")
                   for f in report["captures"][h])  # fmt: skip
    assert report["ok"], summary
    assert result.returncode == 0
