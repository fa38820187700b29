"""contrib/systemd: the units start the real command line with options it has.

Each ExecStart is parsed by the ``groupvpn`` command itself (click, without
running it), the paths agree with the daemons' defaults, and where
``systemd-analyze`` exists it verifies the units (unknown keys and bad values
are warnings it prints, so its output must be empty).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from groupvpn.cli.daemons import member, server
from groupvpn.runtime.control import DEFAULT_MEMBER_SOCKET, DEFAULT_SERVER_SOCKET
from groupvpn.runtime.state import DEFAULT_SERVER_STATE_DIR

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
INSTALLED = "/usr/local/bin/groupvpn"
COMMANDS: dict[str, click.Command] = {"server": server, "member": member}


def unit(name: str) -> dict[str, list[str]]:
    """``Key`` -> its values, in order (systemd allows a key more than once)."""
    entries: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        entries.setdefault(key, []).append(value)
    return entries


def exec_argv(value: str) -> list[str]:
    """An Exec line's argv, without the environment variables systemd expands."""
    return [word for word in shlex.split(value) if not word.startswith("$")]


@pytest.mark.parametrize("role", ["server", "member"])
def test_exec_start_is_a_command_line_the_real_cli_accepts(role: str):
    entries = unit(f"groupvpn-{role}.service")
    [start] = entries["ExecStart"]
    argv = exec_argv(start)
    assert argv[:2] == [INSTALLED, role]
    # click parses it exactly as `groupvpn ROLE ...` would, without running the daemon.
    with COMMANDS[role].make_context(role, argv[2:]) as ctx:
        params = ctx.params
    socket = DEFAULT_SERVER_SOCKET if role == "server" else DEFAULT_MEMBER_SOCKET
    assert params["control"] == socket
    assert params["config_path"] == f"/etc/groupvpn/{role}.conf"
    [check] = entries["ExecStartPre"]
    assert exec_argv(check) == [INSTALLED, "check", "-c", params["config_path"]]
    # Its runtime directory is the one holding the control socket (and the data
    # plane's record), kept across restarts.
    assert Path("/run", entries["RuntimeDirectory"][0]) == socket.parent
    assert entries["RuntimeDirectoryPreserve"] == ["yes"]
    assert entries["Restart"] == ["on-failure"]
    assert entries["ProtectSystem"] == ["strict"] and entries["NoNewPrivileges"] == ["yes"]


def test_the_server_keeps_its_state_in_its_state_directory_and_reloads_on_sighup():
    entries = unit("groupvpn-server.service")
    with server.make_context("server", exec_argv(entries["ExecStart"][0])[2:]) as ctx:
        assert ctx.params["state_dir"] == DEFAULT_SERVER_STATE_DIR
    assert Path("/var/lib", entries["StateDirectory"][0]) == DEFAULT_SERVER_STATE_DIR
    assert entries["StateDirectoryMode"] == ["0700"]  # what the state directory insists on
    assert entries["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert entries["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]


def test_the_member_runs_the_data_plane_with_the_capabilities_it_needs():
    entries = unit("groupvpn-member.service")
    with member.make_context("member", exec_argv(entries["ExecStart"][0])[2:]) as ctx:
        assert ctx.params["dataplane"] == "linux"
    assert "ExecReload" not in entries  # the member has no reload
    capabilities = set(entries["CapabilityBoundingSet"][0].split())
    assert capabilities == {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
    assert entries["AmbientCapabilities"] == entries["CapabilityBoundingSet"]
    assert entries["DeviceAllow"] == ["/dev/net/tun rw"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_units(tmp_path: Path):
    groupvpn = Path(sys.executable).with_name("groupvpn")
    if not groupvpn.exists():
        pytest.skip("groupvpn is not installed next to this python")
    names = []
    for path in UNITS.glob("*.service"):
        # The installed path may not exist here: point at this environment's command.
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED, str(groupvpn)))
        names.append(str(tmp_path / path.name))
    assert len(names) == 2
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""
