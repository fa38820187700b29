"""The spec's example network on loopback, for the system tests (see test_spec_example.py).

The spec's Junos configurations (tests/configs/spec/) with their addresses moved onto
127.0.0.0/8: the key server's 20.0.0.1 becomes 127.0.0.20, member1 127.0.0.11,
member2 127.0.0.12.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.20", 0))
        port: int = probe.getsockname()[1]
        return port


def show_json(control: Path, *words: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "show", *words, "--control", str(control), "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


SpecNetwork = tuple[dict[str, Path], dict[str, DaemonProcess]]


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
            if extra:
                conf.write_text(conf.read_text() + "\n".join(extra) + "\n")
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
