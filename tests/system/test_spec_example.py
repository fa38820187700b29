"""The spec's example (Example: Configuring Group VPNv1 Server and Members) on loopback.

Real daemons, real UDP, the spec's Junos configurations (tests/configs/spec/) with their
addresses moved onto 127.0.0.0/8: the key server's 20.0.0.1 becomes 127.0.0.20,
member1 127.0.0.11, member2 127.0.0.12.  Assertions are on the `--json` output of the
show commands.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv

SPEC = Path(__file__).resolve().parent.parent / "configs" / "spec"
ADDRESSES = {"20.0.0.1": "127.0.0.20", "198.51.100.1": "127.0.0.11", "203.0.113.1": "127.0.0.12"}


def _loopback_config(name: str, target: Path) -> Path:
    text = (SPEC / name).read_text()
    for spec_address, loopback in ADDRESSES.items():
        text = re.sub(rf"\b{re.escape(spec_address)}\b", loopback, text)
    target.write_text(text)
    return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.20", 0))
        port: int = probe.getsockname()[1]
        return port


def _show(control: Path, *words: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "show", *words, "--control", str(control), "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def spec_network(tmp_path: Path):
    port = _free_port()
    daemons: dict[str, DaemonProcess] = {}
    try:
        for name in ("server", "member1", "member2"):
            conf = _loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
            role = "server" if name == "server" else "member"
            daemon = DaemonProcess(
                groupvpn_argv(role, conf, port=port), tmp_path / f"{name}.log", name=name
            ).start()
            daemons[name] = daemon
            ready = "key server running" if role == "server" else "member running"
            daemon.wait_for_line(ready, timeout=20)
        for name in ("member1", "member2"):
            daemons[name].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30)
        yield {name: tmp_path / f"{name}.sock" for name in daemons}, daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


def _dynamic(control: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    view = _show(control, "security", "dynamic-policies")
    return {
        (p["source"], p["destination"], p["from-zone"], p["to-zone"]): p
        for p in view["dynamic-policies"]
    }


def test_the_spec_example_registers_and_installs_what_the_spec_says(spec_network):
    sockets, daemons = spec_network
    members = _show(sockets["server"], "security", "group-vpn", "server", "registered-members")
    [group] = members["groups"]
    assert (group["group"], group["group-id"]) == ("g1", 1)
    assert sorted((m["address"], m["gateway"]) for m in group["members"]) == [
        ("127.0.0.11", "gw-member1"), ("127.0.0.12", "gw-member2"),
    ]  # fmt: skip

    # member1: scope 10.0.0.0/8 both ways installs p1 and p2, never the multicast p3.
    member1 = _dynamic(sockets["member1"])
    for context in (("trust", "untrust"), ("untrust", "trust")):
        assert member1[("10.1.0.0/16", "10.2.0.0/16", *context)]["installed"]
        assert member1[("10.2.0.0/16", "10.1.0.0/16", *context)]["installed"]
        assert not member1[("10.1.1.1/32", "239.1.1.1/32", *context)]["installed"]

    # member2: p2 is not installed where deny2 matches it first (the spec's statement).
    member2 = _dynamic(sockets["member2"])
    p2 = member2[("10.2.0.0/16", "10.1.0.0/16", "untrust", "trust")]
    assert not p2["installed"] and p2["reason"] == "shadowed by policy deny2"

    # Both members hold exactly the keys of p1 and p2; p3's key was discarded.
    server_sas = _show(sockets["server"], "security", "group-vpn", "server", "ipsec",
                       "security-associations")["groups"][0]["security-associations"]  # fmt: skip
    spi_of = {sa["policy"]: sa["spi"] for sa in server_sas}
    for name in ("member1", "member2"):
        installed = _show(sockets[name], "security", "group-vpn", "member", "ipsec",
                          "security-associations")["security-associations"]  # fmt: skip
        assert sorted(sa["spi"] for sa in installed) == sorted([spi_of["p1"], spi_of["p2"]])
        ike = _show(sockets[name], "security", "group-vpn", "member", "ike",
                    "security-associations")  # fmt: skip
        [registration] = ike["registrations"]
        assert registration["state"] == "registered" and registration["group-id"] == 1
        assert ike["security-associations"][0]["remote-address"] == "127.0.0.20"
    for daemon in daemons.values():
        assert "Traceback" not in daemon.log_text()
        assert "$ecret-Key 1" not in daemon.log_text()


def test_clear_makes_a_member_register_again(spec_network):
    sockets, daemons = spec_network
    before = daemons["member1"].log_offset()
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "clear", "security", "group-vpn", "member", "ipsec",
         "security-associations", "--control", str(sockets["member1"])],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout == ""
    daemons["member1"].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30, since=before)
    assert "group SAs cleared by operator" in daemons["member1"].log_text()[before:]
