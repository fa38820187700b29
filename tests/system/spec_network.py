"""The spec's example network on loopback, and the helpers the system tests share.

The spec's Junos configurations (tests/configs/spec/) with their addresses moved onto
127.0.0.0/8: the key server's 20.0.0.1 becomes 127.0.0.20, member1 127.0.0.11,
member2 127.0.0.12.  The helpers run the ``groupvpn`` command line, mostly against a
daemon's control socket, and read its ``--json`` views.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv

SPEC = Path(__file__).resolve().parent.parent / "configs" / "spec"
ADDRESSES = {"20.0.0.1": "127.0.0.20", "198.51.100.1": "127.0.0.11", "203.0.113.1": "127.0.0.12"}


def loopback_config(name: str, target: Path) -> Path:
    text = (SPEC / name).read_text()
    for spec_address, loopback in ADDRESSES.items():
        text = re.sub(rf"\b{re.escape(spec_address)}\b", loopback, text)
    target.write_text(text)
    return target


def add_lines(conf: Path, lines: Sequence[str]) -> None:
    """Append configuration lines to ``conf``."""
    conf.write_text(conf.read_text() + "".join(f"{line}\n" for line in lines))


def group_policy(name: str, source: str, destination: str) -> list[str]:
    """A match-policy ``name`` of group g1 (any port and protocol), as set lines."""
    prefix = f"set security group-vpn server group g1 ipsec-sa group-sa match-policy {name}"
    return [
        f"{prefix} {line}"
        for line in (f"source {source}", f"destination {destination}", "source-port 0",
                     "destination-port 0", "protocol 0")
    ]  # fmt: skip


def ike_lines(role: str, gateway: str, peer: str, local: str, psk: str) -> list[str]:
    """Junos IKE statements for one gateway of ``role`` (server or member), main mode, PSK."""
    base = f"set security group-vpn {role} ike"
    return [
        f"{base} proposal p authentication-method pre-shared-keys",
        f"{base} proposal p dh-group group2",
        f"{base} proposal p authentication-algorithm sha1",
        f"{base} proposal p encryption-algorithm aes-128-cbc",
        f"{base} policy pol mode main",
        f"{base} policy pol proposals p",
        f'{base} policy pol pre-shared-key ascii-text "{psk}"',
        f"{base} gateway {gateway} ike-policy pol",
        f"{base} gateway {gateway} address {peer}",
        f"{base} gateway {gateway} local-address {local}",
    ]


def free_port(address: str = "127.0.0.20") -> int:
    """A UDP port nobody on ``address`` uses at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def groupvpn(*words: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m groupvpn WORDS``, output captured; with ``check``, assert it succeeded."""
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", *words],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def show_json(control: Path, *words: str) -> Any:
    result = groupvpn("show", *words, "--control", str(control), "--json", check=True)
    return json.loads(result.stdout)


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """``check()`` once it is truthy, or its last value once ``timeout`` seconds are up."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def rekey(server_control: Path, *extra: str, group: str = "g1") -> subprocess.CompletedProcess[str]:
    """`request security group-vpn server rekey group GROUP`, which must succeed."""
    return groupvpn("request", "security", "group-vpn", "server", "rekey", "group", group,
                    "--control", str(server_control), *extra, check=True)  # fmt: skip


def clear_member_sas(member_control: Path) -> subprocess.CompletedProcess[str]:
    """`clear security group-vpn member ipsec security-associations`, which must succeed."""
    return groupvpn("clear", "security", "group-vpn", "member", "ipsec", "security-associations",
                    "--control", str(member_control), check=True)  # fmt: skip


def server_spis(server_control: Path) -> dict[str, str]:
    """The key server's current TEK SPI per policy of its first group."""
    view = show_json(server_control, "security", "group-vpn", "server", "ipsec",
                     "security-associations")  # fmt: skip
    return {sa["policy"]: sa["spi"] for sa in view["groups"][0]["security-associations"]}


def member_keys(member_control: Path) -> list[dict[str, Any]]:
    """The TEKs a member holds (`show ... member ipsec security-associations`)."""
    view = show_json(member_control, "security", "group-vpn", "member", "ipsec",
                     "security-associations")  # fmt: skip
    keys: list[dict[str, Any]] = view["security-associations"]
    return keys


def kek_view(control: Path, role: str) -> Any:
    """`show security group-vpn ROLE kek security-associations --json` (server or member)."""
    return show_json(control, "security", "group-vpn", role, "kek", "security-associations")


def registered_members(server_control: Path) -> dict[str, dict[str, Any]]:
    """The key server's registered members of every group, by address."""
    view = show_json(server_control, "security", "group-vpn", "server", "registered-members")
    return {m["address"]: m for group in view["groups"] for m in group["members"]}


SpecNetwork = tuple[dict[str, Path], dict[str, DaemonProcess]]


@contextlib.contextmanager
def running_daemons(argv: dict[str, list[str]], logs: Path) -> Iterator[dict[str, DaemonProcess]]:
    """Start each command in order (a name with "server" in it is a key server), wait
    until it runs and every member registered; stop them all at the end."""
    daemons: dict[str, DaemonProcess] = {}
    try:
        for name, command in argv.items():
            daemons[name] = DaemonProcess(command, logs / f"{name}.log", name=name).start()
            ready = "key server running" if "server" in name else "member running"
            daemons[name].wait_for_line(ready, timeout=20)
        for name, daemon in daemons.items():
            if "server" not in name:
                daemon.wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30)
        yield daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


@contextlib.contextmanager
def running_spec_network(
    tmp_path: Path,
    server_lines: Sequence[str] = (),
    member_lines: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> Iterator[SpecNetwork]:
    """The spec's server, member1 and member2, each config plus the given lines.

    Yields the control sockets and the daemons by name; stops every daemon at the end.
    """
    port = free_port()
    daemons: dict[str, DaemonProcess] = {}
    try:
        for name in ("server", "member1", "member2"):
            conf = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
            extra = server_lines if name == "server" else member_lines
            add_lines(conf, extra)
            role = "server" if name == "server" else "member"
            argv = groupvpn_argv(role, conf, port=port, extra=extra_args)
            daemon = DaemonProcess(argv, tmp_path / f"{name}.log", name=name).start()
            daemons[name] = daemon
            ready = "key server running" if role == "server" else "member running"
            daemon.wait_for_line(ready, timeout=20)
        for name in ("member1", "member2"):
            daemons[name].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30)
        yield {name: tmp_path / f"{name}.sock" for name in daemons}, daemons
    finally:
        for daemon in daemons.values():
            daemon.stop()


@pytest.fixture
def spec_network(tmp_path: Path) -> Iterator[SpecNetwork]:
    with running_spec_network(tmp_path) as network:
        yield network
