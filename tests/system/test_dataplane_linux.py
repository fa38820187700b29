"""The member data plane's Linux plumbing in network namespaces (tests/system/dataplane_lab.py).

A host behind the member sends to the remote site: the packet is routed into the TUN,
and the core sees one ESP packet whose outer addresses are the host's and the remote
host's.  ESP from the core for the host is received on the raw socket, decrypted and
written into the TUN, and the host gets the inner packet with the remote source.  Set
up and torn down, the plumbing leaves nothing; killed, its leftovers go at the next
start.  The engine is the real one when it exists (dataplane_tool.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import groupvpn_argv
from tests.interop.netns import ns_argv
from tests.system.dataplane_lab import (
    GROUP,
    HOST_ADDRESS,
    LAN_PREFIX,
    REMOTE_HOST,
    REMOTE_PREFIX,
    DataplaneLab,
    dataplane_lab,
    lines_of,
    policy_args,
    udp_packet,
    wait_ready,
    with_checksum,
)
from tests.system.dataplane_tool import fixed_sa, install, make_engine, policies
from tests.system.spec_network import ike_lines, member_keys

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

POLICIES = [f"{LAN_PREFIX}>{REMOTE_PREFIX}", f"{REMOTE_PREFIX}>{LAN_PREFIX}"]
MULTICAST_POLICIES = [*POLICIES, f"{LAN_PREFIX}>{GROUP}/32", f"{REMOTE_PREFIX}>{GROUP}/32"]
OUR_PRIORITIES = set(range(8480, 8490))
OUR_TABLES = set(range(8480, 8490))


def _state_files(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("dataplane-net*.json")) if state_dir.exists() else []


def _ours(lab: DataplaneLab) -> dict[str, list[Any]]:
    """Our rules, routes and TUN in the member namespace, as `ip -j` shows them."""
    rules = [r for r in lab.ip_json(lab.member, "rule") if r.get("priority") in OUR_PRIORITIES]
    routes = [
        r for r in lab.ip_json(lab.member, "route", "show", "table", "all")
        if isinstance(r.get("table"), str) and r["table"].isdigit()
        and int(r["table"]) in OUR_TABLES
    ]  # fmt: skip
    links = [link for link in lab.ip_json(lab.member, "link") if link["ifname"] == "gvpn0"]
    return {"rules": rules, "routes": routes, "links": links}


def _start(lab: DataplaneLab, state_dir: Path, *extra: str, policies: list[str] = POLICIES):
    process = lab.tool(
        lab.member, "run", "--wan", lab.wan, "--state-dir", str(state_dir),
        *policy_args(policies), *extra,
    )  # fmt: skip
    return process, wait_ready(process)


def _stop(process) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    lines = lines_of(process)
    assert process.returncode == 0, lines
    counters = [line for line in lines if line.startswith("COUNTERS ")]
    assert counters, lines
    found: dict[str, Any] = json.loads(counters[-1].split(" ", 1)[1])
    return found


def test_set_up_then_torn_down_leaves_nothing(tmp_path: Path):
    state_dir = tmp_path / "state"
    with dataplane_lab() as lab:
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}
        process, _ = _start(lab, state_dir)
        ours = _ours(lab)
        rules = {r["priority"]: r for r in ours["rules"]}
        assert sorted(rules) == [8480, 8481, 8482, 8483, 8484]
        assert rules[8480]["fwmark"] == "0x848" and rules[8480]["table"] == "8481"
        assert rules[8481]["fwmark"] == "0x849" and rules[8481]["table"] == "main"
        assert rules[8482]["ipproto"] == "esp" and rules[8482]["iif"] == lab.wan
        assert rules[8483]["iif"] == "gvpn0" and rules[8483]["table"] == "main"
        assert "not" in rules[8484] and rules[8484]["fwmask"] == "0xfffffffe"
        assert rules[8484]["table"] == "8480"
        routes = {(r["table"], r["dst"], r.get("gateway"), r["dev"]) for r in ours["routes"]}
        assert routes == {
            ("8480", REMOTE_PREFIX, None, "gvpn0"),
            ("8480", LAN_PREFIX, None, "gvpn0"),
            ("8481", REMOTE_PREFIX, lab.pair.addr_b, lab.wan),
            ("8481", LAN_PREFIX, None, lab.wan),  # on-link: our own LAN is not via the WAN
            ("8482", "default", None, "lo"),
        }
        (link,) = ours["links"]
        assert "UP" in link["flags"]
        (state,) = _state_files(state_dir)
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        recorded = json.loads(state.read_text())
        assert recorded["tun"] == "gvpn0" and recorded["wan"] == lab.wan
        assert sorted(recorded["destinations"]) == sorted([LAN_PREFIX, REMOTE_PREFIX])

        _stop(process)
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}
        assert _state_files(state_dir) == []


def test_a_crash_leaves_rules_that_the_next_start_removes(tmp_path: Path):
    state_dir = tmp_path / "state"
    with dataplane_lab() as lab:
        process, _ = _start(lab, state_dir)
        before = _ours(lab)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        left = _ours(lab)
        assert left["links"] == []  # not persistent: the kernel removed the TUN
        assert len(left["rules"]) == 5 and left["routes"]  # rules and table routes stay
        assert len(_state_files(state_dir)) == 1

        process, _ = _start(lab, state_dir)
        again = _ours(lab)
        assert len(again["rules"]) == 5  # the old ones were removed, not duplicated
        assert sorted(json.dumps(r, sort_keys=True) for r in again["rules"]) == sorted(
            json.dumps(r, sort_keys=True) for r in before["rules"]
        )
        _stop(process)
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}
        assert _state_files(state_dir) == []


def test_routes_and_group_joins_follow_the_dynamic_policies(tmp_path: Path):
    with dataplane_lab() as lab:
        then = [f"{LAN_PREFIX}>10.3.0.0/16"]
        extra = [word for spec in then for word in ("--then-policy", spec)]
        process, _ = _start(lab, tmp_path / "state", *extra, policies=MULTICAST_POLICIES)
        before = {(r["table"], r["dst"]) for r in _ours(lab)["routes"]}
        assert ("8480", f"{GROUP}") in before and ("8481", f"{GROUP}") in before
        assert GROUP in _joined_groups(lab)
        process.send_signal(signal.SIGUSR1)
        assert process.stdout is not None
        assert process.stdout.readline().startswith("CHANGED")
        after = {(r["table"], r["dst"]) for r in _ours(lab)["routes"]}
        assert after == {("8480", "10.3.0.0/16"), ("8481", "10.3.0.0/16"), ("8482", "default")}
        assert GROUP not in _joined_groups(lab)
        _stop(process)
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}


def _joined_groups(lab: DataplaneLab) -> set[str]:
    """The IPv4 groups joined on the member's WAN (/proc/net/igmp, hex little-endian)."""
    text = lab.pair.run(lab.member, ["cat", "/proc/net/igmp"])
    groups, current = set(), None
    for line in text.splitlines()[1:]:
        if not line.startswith("\t"):
            current = line.split()[1].rstrip(":") if len(line.split()) > 1 else None
        elif current == lab.wan:
            raw = bytes.fromhex(line.split()[0])[::-1]
            groups.add(socket.inet_ntoa(raw))
    return groups


def test_a_second_data_plane_in_the_same_namespace_is_refused(tmp_path: Path):
    state_dir = tmp_path / "state"
    with dataplane_lab() as lab:
        process, _ = _start(lab, state_dir)
        second = lab.tool(lab.member, "run", "--wan", lab.wan, "--state-dir", str(state_dir),
                          *policy_args(POLICIES))  # fmt: skip
        out = "\n".join(lines_of(second))
        assert second.returncode != 0
        assert "another member data plane" in out, out
        assert len(_ours(lab)["rules"]) == 5  # the running one's rules are untouched
        _stop(process)
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}


def _capture(lab: DataplaneLab, count: int = 1, protocol: int = 50):
    process = lab.tool(lab.core, "capture", "--iface", lab.core_iface, "--count", str(count),
                       "--protocol", str(protocol), "--timeout", "8")  # fmt: skip
    wait_ready(process)
    return process


def _captured(process) -> list[bytes]:
    return [
        bytes.fromhex(json.loads(line)["hex"])
        for line in lines_of(process)
        if line.startswith("{") and not json.loads(line)["outgoing"]
    ]


def _core_engine(specs: list[str] = POLICIES) -> Any:
    """The remote member's engine, holding the same keys: it decrypts what the core saw."""
    engine, _ = make_engine("auto", IPv4Address("198.51.100.2"), 1500)
    install(engine, policies(specs))
    return engine


def test_a_host_packet_leaves_as_esp_with_the_inner_addresses(tmp_path: Path):
    with dataplane_lab() as lab:
        process, _ = _start(lab, tmp_path / "state")
        capture = _capture(lab)
        lab.send_udp(lab.host, HOST_ADDRESS, REMOTE_HOST, 4000, b"hello through the group SA")
        (esp,) = _captured(capture)
        assert esp[9] == 50
        assert socket.inet_ntoa(esp[12:16]) == HOST_ADDRESS
        assert socket.inet_ntoa(esp[16:20]) == REMOTE_HOST
        (inner,) = [out.packet for out in _core_engine().inbound(esp, time.monotonic())]
        assert socket.inet_ntoa(inner[12:16]) == HOST_ADDRESS
        assert socket.inet_ntoa(inner[16:20]) == REMOTE_HOST
        assert inner.endswith(b"hello through the group SA")
        counters = _stop(process)
        assert counters["tun-packets-read"] >= 1 and counters["wan-packets-sent"] >= 1


def test_esp_for_the_host_behind_the_member_reaches_it(tmp_path: Path):
    with dataplane_lab() as lab:
        process, _ = _start(lab, tmp_path / "state")
        receiver = lab.tool(lab.host, "recv-udp", "--address", HOST_ADDRESS, "--port", "5000",
                            "--timeout", "8")  # fmt: skip
        wait_ready(receiver)
        inner = udp_packet(REMOTE_HOST, HOST_ADDRESS, 4001, 5000, b"from the remote site")
        (out,) = _core_engine().outbound(with_checksum(inner), time.monotonic())
        esp = out.packet
        assert esp[9] == 50 and esp[16:20] == socket.inet_aton(HOST_ADDRESS)
        sender = lab.tool(lab.core, "send-raw", "--packet", esp.hex())
        lines_of(sender)
        (line,) = [json.loads(x) for x in lines_of(receiver) if x.startswith("{")]
        assert line == {"data": b"from the remote site".hex(), "peer": REMOTE_HOST}
        counters = _stop(process)
        assert counters["esp-packets-read"] >= 1 and counters["tun-packets-written"] >= 1


def test_a_packet_no_policy_matches_keeps_its_normal_path(tmp_path: Path):
    with dataplane_lab() as lab:
        # Only 10.1.5.0/24 is protected: the host's packet passes the TUN in the clear
        # and leaves by the main table's route, to the core.
        process, _ = _start(lab, tmp_path / "state", policies=[f"10.1.5.0/24>{REMOTE_PREFIX}"])
        capture = _capture(lab, protocol=17)
        lab.send_udp(lab.host, HOST_ADDRESS, REMOTE_HOST, 4002, b"in the clear")
        (packet,) = _captured(capture)
        assert socket.inet_ntoa(packet[12:16]) == HOST_ADDRESS
        assert packet.endswith(b"in the clear")
        counters = _stop(process)
        assert counters["clear-packets-sent"] >= 1 and counters["wan-packets-sent"] == 0


# -- the member daemon with its data plane ------------------------------------------------------

PSK = "dataplane-lab-psk"


def _server_config(lab: DataplaneLab) -> str:
    group = "set security group-vpn server group g1"
    lines = [
        f"set interfaces ge-0/0/0 unit 0 family inet address {lab.pair.addr_b}/24",
        "set security group-vpn server ipsec proposal gp authentication-algorithm hmac-sha1-96",
        "set security group-vpn server ipsec proposal gp encryption-algorithm aes-128-cbc",
        *ike_lines("server", "m1", lab.pair.addr_a, lab.pair.addr_b, PSK),
        f"{group} group-id 1",
        f"{group} ike-gateway m1",
        f"{group} ipsec-sa sa proposal gp",
    ]
    for name, source, destination in (("p1", LAN_PREFIX, REMOTE_PREFIX),
                                      ("p2", REMOTE_PREFIX, LAN_PREFIX)):  # fmt: skip
        match = f"{group} ipsec-sa sa match-policy {name}"
        lines += [f"{match} source {source}", f"{match} destination {destination}",
                  f"{match} source-port 0", f"{match} destination-port 0",
                  f"{match} protocol 0"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _member_config(lab: DataplaneLab) -> str:
    vpn = "set security group-vpn member ipsec vpn v1"
    zone = "set security zones security-zone"
    lines = [
        *ike_lines("member", "ks", lab.pair.addr_b, lab.pair.addr_a, PSK),
        "set interfaces ge-0/0/0 unit 0 family inet address 10.1.0.1/16",
        f"set interfaces ge-0/0/1 unit 0 family inet address {lab.pair.addr_a}/24",
        "set interfaces ge-0/0/1 mtu 1400",
        f"{vpn} ike-gateway ks",
        f"{vpn} group 1",
        f"{vpn} group-vpn-external-interface ge-0/0/1.0",
        f"{zone} trust interfaces ge-0/0/0.0",
        f"{zone} untrust interfaces ge-0/0/1.0",
        "set security address-book book-trust address net10 10.0.0.0/8",
        "set security address-book book-trust attach zone trust",
        "set security address-book book-untrust address net10 10.0.0.0/8",
        "set security address-book book-untrust attach zone untrust",
    ]
    for source, destination in (("trust", "untrust"), ("untrust", "trust")):
        policy = f"set security policies from-zone {source} to-zone {destination} policy scope"
        lines += [f"{policy} match source-address net10",
                  f"{policy} match destination-address net10",
                  f"{policy} match application any",
                  f"{policy} then permit tunnel ipsec-group-vpn v1"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _member_argv(conf: Path, state_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.system.dataplane_member", "-c", str(conf),
        "--port", "848", "--control", str(conf.with_suffix(".sock")),
        "--state-dir", str(state_dir),
    ]  # fmt: skip


def test_the_member_daemon_forwards_through_its_group_sa_and_cleans_up(tmp_path: Path):
    state_dir = tmp_path / "state"
    with dataplane_lab() as lab:
        server_conf, member_conf = tmp_path / "server.conf", tmp_path / "member.conf"
        server_conf.write_text(_server_config(lab))
        member_conf.write_text(_member_config(lab))
        server = lab.pair.daemon(lab.core, groupvpn_argv("server", server_conf, port=848),
                                 tmp_path / "server.log")  # fmt: skip
        server.wait_for_line("key server running", timeout=20)
        member = lab.pair.daemon(lab.member, _member_argv(member_conf, state_dir),
                                 tmp_path / "member.log")  # fmt: skip
        member.wait_for_line(r"data plane: TUN gvpn0 \(mtu 1400\)", timeout=20)
        member.wait_for_line("group SAs installed: vpn=v1 installed=2", timeout=30)
        member.wait_for_line(r"data plane: routes into gvpn0: .*10\.2\.0\.0/16", timeout=10)
        spis = {k["spi"] for k in member_keys(member_conf.with_suffix(".sock"))}

        capture = _capture(lab)
        lab.send_udp(lab.host, HOST_ADDRESS, REMOTE_HOST, 4000, b"through the daemon")
        (esp,) = _captured(capture)
        assert socket.inet_ntoa(esp[12:16]) == HOST_ADDRESS
        assert socket.inet_ntoa(esp[16:20]) == REMOTE_HOST
        assert esp[20:24].hex() in {spi.replace("0x", "").lower()[-8:] for spi in spis}, spis
        assert b"through the daemon" not in esp

        assert member.stop() == 0
        log_text = member.log_text()
        assert "Traceback" not in log_text, log_text[-3000:]
        assert "data plane stopped" in log_text
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}
        assert _state_files(state_dir) == []


def test_a_member_without_network_privileges_says_so_and_stops(tmp_path: Path):
    if shutil.which("setpriv") is None:
        if os.environ.get("CI"):
            pytest.fail("setpriv (util-linux) not found: CI's Debian has it")
        pytest.skip("setpriv (util-linux) not found")
    with dataplane_lab() as lab:
        member_conf = tmp_path / "member.conf"
        member_conf.write_text(_member_config(lab))
        drop = ["setpriv", "--bounding-set", "-net_admin,-net_raw",
                "--inh-caps", "-net_admin,-net_raw"]  # fmt: skip
        result = subprocess.run(
            ns_argv(lab.member, [*drop, *_member_argv(member_conf, tmp_path / "state")]),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "cannot start: data plane: the data plane needs root" in result.stderr
        assert "Traceback" not in result.stderr
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}


def test_multicast_from_the_host_leaves_as_one_esp_packet_to_the_group(tmp_path: Path):
    with dataplane_lab() as lab:
        process, _ = _start(lab, tmp_path / "state", policies=MULTICAST_POLICIES)
        capture = _capture(lab)
        lab.send_udp(lab.host, HOST_ADDRESS, GROUP, 4003, b"to the group")
        (esp,) = _captured(capture)
        assert socket.inet_ntoa(esp[12:16]) == HOST_ADDRESS
        assert socket.inet_ntoa(esp[16:20]) == GROUP
        remote = _core_engine(MULTICAST_POLICIES)
        (inner,) = [out.packet for out in remote.inbound(esp, time.monotonic())]
        assert inner.endswith(b"to the group")
        _stop(process)
        assert _ours(lab) == {"rules": [], "routes": [], "links": []}


def test_esp_to_a_group_reaches_the_group_members_behind_the_member(tmp_path: Path):
    with dataplane_lab() as lab:
        process, _ = _start(lab, tmp_path / "state", policies=MULTICAST_POLICIES)
        receiver = lab.tool(lab.host, "recv-udp", "--address", HOST_ADDRESS, "--join", GROUP,
                            "--port", "5001", "--timeout", "8")  # fmt: skip
        wait_ready(receiver)
        inner = udp_packet(REMOTE_HOST, GROUP, 4004, 5001, b"from a remote group sender")
        (out,) = _core_engine(MULTICAST_POLICIES).outbound(with_checksum(inner), time.monotonic())
        assert out.packet[16:20] == socket.inet_aton(GROUP)
        lines_of(lab.tool(lab.core, "send-raw", "--packet", out.packet.hex()))
        (line,) = [json.loads(x) for x in lines_of(receiver) if x.startswith("{")]
        assert line == {"data": b"from a remote group sender".hex(), "peer": REMOTE_HOST}
        _stop(process)


# -- what the daemon feeds the engine (no namespace needed) ---------------------------------------


def test_keys_are_fed_in_dynamic_policy_order_with_the_encrypting_key_of_each():
    from groupvpn.dataplane.shell import vpn_keys
    from groupvpn.member.group_clock import GroupClock
    from groupvpn.member.keyring import GroupKeyring

    first, second = policies(POLICIES)
    sa1, sa2 = fixed_sa(first, b"\0\0\0\1"), fixed_sa(second, b"\0\0\0\2")
    keyring = GroupKeyring()
    keyring.install_pulled([sa1, sa2], time.monotonic(), 10)

    class Source:
        vpn, group_id = "v1", 1

        def __init__(self) -> None:
            self.keyring, self.clock = keyring, GroupClock()

        def dynamic_policies(self) -> list[dict[str, Any]]:
            # The scope policies put the second group policy first.
            return [{"spi": "00000002", "sequence": 1, "installed": True},
                    {"spi": "00000001", "sequence": 2, "installed": True},
                    {"spi": "00000003", "sequence": None, "installed": False}]  # fmt: skip

    keys = vpn_keys(Source())
    assert keys.order == (second, first)
    assert keys.encrypting == {first: sa1, second: sa2}
    assert set(keys.decrypting) == {sa1, sa2}
    assert keys.group_time(5.0) is None  # no group time before the server gives one
