"""Reloading the running key server's configuration (`groupvpn reload`, SIGHUP).

On the spec's example network: a bad configuration is refused with the reason and the
server goes on with the old one; a good one changes the groups and pushes a rekey
(tests/system/test_rekeys.py follows that rekey to the members), and a member that
registers again also gets the new group policy.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.interop.daemon import DaemonProcess
from tests.system.spec_network import (
    add_lines,
    clear_member_sas,
    group_policy,
    groupvpn,
    server_spis,
    show_json,
)

P4 = group_policy("p4", "10.1.0.0/16", "10.9.0.0/16")


def _reload(control: Path) -> subprocess.CompletedProcess[str]:
    return groupvpn("reload", "--control", str(control))


def _server_policies(control: Path) -> list[str]:
    return sorted(server_spis(control))


def test_a_bad_configuration_is_refused_and_the_old_one_keeps_running(
    spec_network: tuple[dict[str, Path], dict[str, DaemonProcess]], tmp_path: Path
):
    sockets, daemons = spec_network
    conf = tmp_path / "server.conf"
    good = conf.read_text()
    conf.write_text(good + "set security group-vpn server group g1 ipsec-sa group-sa bogus 1\n")
    result = _reload(sockets["server"])
    assert result.returncode == 1
    assert "bogus" in result.stderr and "still running the previous one" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert _server_policies(sockets["server"]) == ["p1", "p2", "p3"]
    # A SIGHUP with the same bad file is logged and changes nothing either.
    server = daemons["server"]
    offset = server.log_offset()
    server.send_signal(signal.SIGHUP)
    server.wait_for_line("configuration not reloaded", timeout=10, since=offset)
    assert server.is_alive()
    # Members still register: clear member1 and watch it come back.
    member = daemons["member1"]
    offset = member.log_offset()
    clear_member_sas(sockets["member1"])
    member.wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=30, since=offset)


def test_a_new_group_policy_reaches_members_that_register_again(
    spec_network: tuple[dict[str, Path], dict[str, DaemonProcess]], tmp_path: Path
):
    sockets, daemons = spec_network
    add_lines(tmp_path / "server.conf", P4)
    result = _reload(sockets["server"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "configuration reloaded",
        "  group g1 (group-id 1): changed: policy p4 added",
        "    rekey sent: group g1 (group-id 1), SEQ 1, policy-change, to 2 members; new TEKs: p4",
    ]
    assert _server_policies(sockets["server"]) == ["p1", "p2", "p3", "p4"]
    assert "group g1 (group-id 1) changed: policy p4 added" in daemons["server"].log_text()

    # member1's scope (10.0.0.0/8 both ways) admits p4 once it registers again.
    member = daemons["member1"]
    offset = member.log_offset()
    clear_member_sas(sockets["member1"])
    member.wait_for_line(r"group SAs installed: vpn=gvpn1 installed=3", timeout=30, since=offset)
    view = show_json(sockets["member1"], "security", "dynamic-policies")
    installed = {
        (p["source"], p["destination"]) for p in view["dynamic-policies"] if p["installed"]
    }
    assert ("10.1.0.0/16", "10.9.0.0/16") in installed

    # Reloading the same file again changes nothing.
    again = _reload(sockets["server"])
    assert again.stdout.strip() == "configuration reloaded: no group changed"
