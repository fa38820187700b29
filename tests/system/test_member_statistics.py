"""The member's ESP statistics with the real data plane in network namespaces.

A host behind the member sends two packets through the group SA and the core sends
the member an ESP packet with an SPI it has no key for.  `show security group-vpn
member ipsec statistics` and a scrape of /metrics (inside the member's namespace,
on loopback) count two packets out, their octets, and one drop for the SPI; `clear
security group-vpn member ipsec statistics` sets them all back to zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import groupvpn_argv
from tests.system.dataplane_lab import HOST_ADDRESS, REMOTE_HOST, DataplaneLab, dataplane_lab
from tests.system.spec_network import eventually, groupvpn, show_json
from tests.system.test_dataplane_linux import _member_argv, _member_config, _server_config
from tests.system.test_statistics import sample

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

METRICS_PORT = 9848
STATISTICS = ("security", "group-vpn", "member", "ipsec", "statistics")


def engine_counters(control: Path) -> dict[str, Any]:
    view: dict[str, Any] = show_json(control, *STATISTICS)["engine"]
    return view


def scrape_in(lab: DataplaneLab) -> str:
    code = (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/metrics',"
        "timeout=5).read().decode())"
    )
    return lab.pair.run(lab.member, [sys.executable, "-c", code])


def send_bogus_esp(lab: DataplaneLab) -> None:
    """One ESP packet from the core to the member's WAN address, SPI 0xdeadbeef."""
    code = (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_ESP);"
        f"s.sendto(bytes.fromhex('deadbeef00000001')+bytes(48),({lab.pair.addr_a!r},0))"
    )
    lab.pair.run(lab.core, [sys.executable, "-c", code])


def test_esp_counters_show_scrape_and_clear(tmp_path: Path):
    with dataplane_lab() as lab:
        server_conf, member_conf = tmp_path / "server.conf", tmp_path / "member.conf"
        server_conf.write_text(_server_config(lab))
        member_conf.write_text(_member_config(lab))
        control = member_conf.with_suffix(".sock")
        server = lab.pair.daemon(lab.core, groupvpn_argv("server", server_conf, port=848),
                                 tmp_path / "server.log")  # fmt: skip
        server.wait_for_line("key server running", timeout=20)
        argv = [*_member_argv(member_conf, tmp_path / "state"), "--metrics", str(METRICS_PORT)]
        member = lab.pair.daemon(lab.member, argv, tmp_path / "member.log")
        member.wait_for_line("group SAs installed: vpn=v1 installed=2", timeout=30)
        member.wait_for_line(r"data plane: routes into gvpn0: .*10\.2\.0\.0/16", timeout=10)
        member.wait_for_line(rf"metrics at http://127\.0\.0\.1:{METRICS_PORT}/metrics")

        for payload in (b"one", b"two!"):
            lab.send_udp(lab.host, HOST_ADDRESS, REMOTE_HOST, 4000, payload)
        send_bogus_esp(lab)
        counters = eventually(
            lambda: (
                (c := engine_counters(control))["packets-out"] == 2
                and sum(c["dropped"].values()) == 1
                and c
            ),
            timeout=10,
        )
        assert counters, engine_counters(control)
        # Octets of the inner packets: IPv4 20 + UDP 8 + payload.
        assert counters["bytes-out"] == (28 + 3) + (28 + 4)
        assert counters["dropped"]["bad-spi"] == 1 and counters["packets-in"] == 0

        text = groupvpn("show", *STATISTICS, "--control", str(control), check=True).stdout
        shown = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        assert shown["  Encrypted packets"].split() == ["2"]
        assert shown["  Encrypted bytes"].split() == ["63"]
        assert "Dropped on receipt:\n  bad-spi: 1\n" in text

        metrics = scrape_in(lab)
        assert sample(metrics, "groupvpn_member_esp_packets_total", direction="out") == 2
        assert sample(metrics, "groupvpn_member_esp_bytes_total", direction="out") == 63
        assert sample(metrics, "groupvpn_member_esp_drops_total", reason="bad-spi") == 1
        assert sample(metrics, "groupvpn_member_esp_drops_total", reason="bad-icv") == 0

        cleared = groupvpn("clear", *STATISTICS, "--control", str(control), check=True)
        assert cleared.stdout == ""
        counters = engine_counters(control)
        assert counters["packets-out"] == counters["bytes-out"] == 0
        assert set(counters["dropped"].values()) == {0}
        assert sample(scrape_in(lab), "groupvpn_member_esp_packets_total", direction="out") == 0
        member.wait_for_line("event=statistics-cleared", timeout=5)

        # Counting goes on after the clear.
        lab.send_udp(lab.host, HOST_ADDRESS, REMOTE_HOST, 4000, b"three")
        assert eventually(lambda: engine_counters(control)["packets-out"] == 1, timeout=10)
        assert member.stop() == 0
