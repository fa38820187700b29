"""A restarted key server is noticed through missed heartbeats, and members come back.

The spec's network with `heartbeat 60` (the smallest Junos allows) and member1's
`heartbeat-threshold 1`.  The server is stopped and started again: it keeps its
signing key (state directory) but not yet its KEK (issue 6), so its heartbeats reach
member1 under a KEK it does not hold.  Within one interval plus the grace period
member1 says why and registers again, and ends up with the new server's KEK.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.interop.daemon import DaemonProcess
from tests.system.spec_network import kek_view, running_spec_network, show_json

SMC = "set security group-vpn server group g1 server-member-communication"
VPN = "set security group-vpn member ipsec vpn gvpn1"


def _kek_spi(socket_path: Path, role: str) -> str | None:
    sas = kek_view(socket_path, role)["security-associations"]
    return str(sas[0]["spi"]) if sas else None


@pytest.mark.timeout(240)
def test_members_detect_a_restarted_server_by_missed_heartbeats(tmp_path: Path):
    with running_spec_network(
        tmp_path,
        server_lines=[f"{SMC} heartbeat 60"],
        member_lines=[f"{VPN} heartbeat-threshold 1"],
    ) as (sockets, daemons):
        member = daemons["member1"]
        kek = kek_view(sockets["member1"], "member")["security-associations"][0]
        assert (kek["heartbeat-interval"], kek["heartbeat-threshold"]) == (60, 1)
        old_spi = _kek_spi(sockets["member1"], "member")

        server = daemons["server"]
        server.stop()
        restarted = DaemonProcess(server.argv, tmp_path / "server-2.log", name="server")
        daemons["server"] = restarted.start()
        restarted.wait_for_line("key server running", timeout=20)
        new_spi = _kek_spi(sockets["server"], "server")
        assert new_spi is not None and new_spi != old_spi

        offset = member.log_offset()
        started = time.monotonic()
        member.wait_for_line(r"registering again: vpn=gvpn1 reason=.*heartbeat", timeout=150,
                             since=offset)  # fmt: skip
        member.wait_for_line(r"registered: vpn=gvpn1", timeout=60, since=offset)
        # One interval (60 s) plus the grace period, counted from the last heartbeat
        # or registration; not a rekey or a refresh pull much later.
        assert time.monotonic() - started < 120
        assert _kek_spi(sockets["member1"], "member") == new_spi
        members = show_json(sockets["server"], "security", "group-vpn", "server",
                            "registered-members")  # fmt: skip
        assert "127.0.0.11" in {m["address"] for g in members["groups"] for m in g["members"]}
