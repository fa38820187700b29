"""Co-location: the key server and a group member on one host, from one configuration.

The spec's "Example: Configuring Group VPNv1 with Server-Member Colocation": member1
runs on the key server's device, with its own address.  One configuration file holds
`co-location`, the server and member1; `groupvpn server` and `groupvpn member` both
run from it on this host (the server on 127.0.0.20, the colocated member on
127.0.0.11), and member2 runs from its own file.  Both members register with the
server and take its rekeys.  Without `co-location` the same file is refused.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import (
    eventually,
    free_port,
    loopback_config,
    registered_members,
    rekey,
    running_daemons,
)


def _colocated_config(tmp_path: Path) -> Path:
    server = loopback_config("server.conf", tmp_path / "s.conf").read_text()
    member = loopback_config("member1.conf", tmp_path / "m.conf").read_text()
    member_only = "\n".join(
        line for line in member.splitlines() if line.startswith("set security group-vpn member")
    )
    conf = tmp_path / "colocated.conf"
    conf.write_text(f"set security group-vpn co-location\n{server}\n{member_only}\n")
    return conf


def _applied(daemon: DaemonProcess) -> list[int]:
    return [int(n) for n in re.findall(r"rekey applied: vpn=gvpn1 seq=(\d+)", daemon.log_text())]


@pytest.mark.timeout(120)
def test_server_and_member_on_one_host_from_one_configuration(tmp_path: Path):
    conf = _colocated_config(tmp_path)
    member2_conf = loopback_config("member2.conf", tmp_path / "member2.conf")
    port = free_port()
    argv = {
        "server": groupvpn_argv("server", conf, port=port),
        # The colocated member needs its own control socket next to its own name.
        "member1": [*groupvpn_argv("member", conf, port=port)[:-2], "--control",
                    str(tmp_path / "member1.sock")],
        "member2": groupvpn_argv("member", member2_conf, port=port),
    }  # fmt: skip
    with running_daemons(argv, tmp_path) as daemons:
        server_socket = conf.with_suffix(".sock")
        assert set(registered_members(server_socket)) == {"127.0.0.11", "127.0.0.12"}
        assert rekey(server_socket).returncode == 0
        eventually(lambda: _applied(daemons["member1"]) and _applied(daemons["member2"]))


def test_server_and_member_in_one_file_need_co_location(tmp_path: Path):
    conf = _colocated_config(tmp_path)
    conf.write_text(conf.read_text().replace("set security group-vpn co-location\n", ""))
    result = subprocess.run(
        [sys.executable, "-m", "groupvpn", "server", "-c", str(conf), "--port", "18850",
         "--control", str(tmp_path / "x.sock"), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Configuring both group-vpn server and group-vpn member is not supported" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
