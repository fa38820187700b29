"""The group KEK end to end: real daemons on loopback, read through `show ... --json`.

One key server with three groups (g1: unicast rekeys, AES-256 KEK, SHA-256 signature
hash, 600 s; g2: no server-member-communication; g3: multicast rekeys to 226.1.1.1,
3DES KEK) and one member in all three.  The member must hold, per VPN, exactly the KEK
the server shows for the group (same SPI = PUSH cookies, same signing key), with SEQ 0,
and nothing for g2.  Addresses 127.0.3.0/24 are used by no other system test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import free_port, groupvpn, kek_view

SERVER_IP = "127.0.3.1"
MEMBER_IP = "127.0.3.11"
PSK = "kek-test-psk-never-logged"


def _ike(role: str, peer: str, local: str) -> list[str]:
    base = f"set security group-vpn {role} ike"
    gateway = "gw-m1" if role == "server" else "gw1"
    return [
        f"{base} proposal p1 authentication-method pre-shared-keys",
        f"{base} proposal p1 dh-group group14",
        f"{base} proposal p1 authentication-algorithm sha-256",
        f"{base} proposal p1 encryption-algorithm aes-128-cbc",
        f"{base} policy pol1 mode main",
        f"{base} policy pol1 proposals p1",
        f'{base} policy pol1 pre-shared-key ascii-text "{PSK}"',
        f"{base} gateway {gateway} ike-policy pol1",
        f"{base} gateway {gateway} address {peer}",
        f"{base} gateway {gateway} local-address {local}",
    ]


def _group(name: str, group_id: int, source: str, destination: str, *smc: str) -> list[str]:
    base = f"set security group-vpn server group {name}"
    lines = [
        f"{base} group-id {group_id}",
        f"{base} ike-gateway gw-m1",
        f"{base} ipsec-sa sa{group_id} proposal gp",
        f"{base} ipsec-sa sa{group_id} match-policy p{group_id} source {source}",
        f"{base} ipsec-sa sa{group_id} match-policy p{group_id} destination {destination}",
    ]
    return lines + [f"{base} server-member-communication {line}" for line in smc]


SERVER_CONFIG = "\n".join(
    [
        f"set interfaces lo0 unit 0 family inet address {SERVER_IP}/32",
        *_ike("server", MEMBER_IP, SERVER_IP),
        "set security group-vpn server ipsec proposal gp authentication-algorithm "
        "hmac-sha-256-128",
        "set security group-vpn server ipsec proposal gp encryption-algorithm aes-128-cbc",
        *_group("g1", 1, "10.1.0.0/16", "10.2.0.0/16",
                "communication-type unicast", "encryption-algorithm aes-256-cbc",
                "sig-hash-algorithm sha-256", "lifetime-seconds 600"),
        *_group("g2", 2, "10.3.0.0/16", "10.4.0.0/16"),
        *_group("g3", 3, "10.5.0.0/16", "239.5.5.5/32",
                "communication-type multicast", "multicast-group 226.1.1.1",
                "multicast-outgoing-interface lo0.0", "encryption-algorithm 3des-cbc",
                "sig-hash-algorithm sha1"),
        "",
    ]
)  # fmt: skip

MEMBER_CONFIG = "\n".join(
    [
        *_ike("member", SERVER_IP, MEMBER_IP),
        *(
            f"set security group-vpn member ipsec vpn gvpn{n} {line}"
            for n in (1, 2, 3)
            for line in ("ike-gateway gw1", f"group {n}")
        ),
        "",
    ]
)


@pytest.fixture(params=["v1", "v2"])
def kek_network(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    dialect: str = request.param
    port = free_port(SERVER_IP)
    daemons: dict[str, DaemonProcess] = {}
    try:
        for role, text in (("server", SERVER_CONFIG), ("member", MEMBER_CONFIG)):
            conf = tmp_path / f"{role}.conf"
            conf.write_text(text)
            argv = groupvpn_argv(role, conf, port=port, extra=("--dialect", dialect))
            daemon = DaemonProcess(argv, tmp_path / f"{role}.log", name=role).start()
            daemons[role] = daemon
            daemon.wait_for_line("key server running" if role == "server" else "member running",
                                 timeout=20)  # fmt: skip
        for n in (1, 2, 3):
            daemons["member"].wait_for_line(rf"registered: vpn=gvpn{n} group-id={n}", timeout=30)
        yield {
            "port": port,
            "daemons": daemons,
            "server": tmp_path / "server.sock",
            "member": tmp_path / "member.sock",
        }
    finally:
        for daemon in daemons.values():
            daemon.stop()


def test_the_member_holds_the_servers_kek_and_seq(kek_network: dict[str, Any]):
    port, daemons = kek_network["port"], kek_network["daemons"]
    server_view = kek_view(kek_network["server"], "server")
    server = {sa["group"]: sa for sa in server_view["security-associations"]}
    assert sorted(server) == ["g1", "g3"]  # g2 has no server-member-communication
    member_view = kek_view(kek_network["member"], "member")
    member = {sa["vpn"]: sa for sa in member_view["security-associations"]}
    assert sorted(member) == ["gvpn1", "gvpn3"]

    for vpn, group in (("gvpn1", "g1"), ("gvpn3", "g3")):
        ours, theirs = member[vpn], server[group]
        assert ours["spi"] == theirs["spi"] and len(ours["spi"]) == 32
        assert (ours["initiator-cookie"], ours["responder-cookie"]) == (
            theirs["initiator-cookie"], theirs["responder-cookie"],
        )  # fmt: skip
        assert ours["sequence"] == theirs["sequence"] == 0
        assert ours["signing-key-fingerprint"] == theirs["signing-key-fingerprint"]
        for key in ("encryption", "signature-hash", "signature-algorithm",
                    "signature-key-length"):  # fmt: skip
            assert ours[key] == theirs[key], key
        assert ours["source"] == f"{SERVER_IP}:{port}"
    assert server["g1"]["spi"] != server["g3"]["spi"]

    g1, g3 = member["gvpn1"], member["gvpn3"]
    assert (g1["encryption"], g1["signature-hash"], g1["signature-key-length"]) == (
        "aes-256-cbc", "sha-256", 2048,
    )  # fmt: skip
    assert 540 <= g1["lifetime-remaining"] <= 600  # lifetime-seconds 600
    assert g1["destination"] == f"{MEMBER_IP}:{port}"  # unicast rekeys come to the member
    assert (g3["encryption"], g3["signature-hash"]) == ("3des-cbc", "sha1")
    assert g3["destination"] == f"226.1.1.1:{port}"  # multicast rekeys
    assert server["g3"]["multicast-group"] == "226.1.1.1"

    # The text tables show the same cookies; no daemon logged a key or a traceback.
    text = groupvpn("show", "security", "group-vpn", "member", "kek", "security-associations",
                    "--control", str(kek_network["member"]), check=True).stdout  # fmt: skip
    assert g1["initiator-cookie"] in text and "Total KEK SAs: 2" in text
    log = daemons["member"].log_text()
    assert "registered: vpn=gvpn1 group-id=1 teks=1 kek=yes" in log
    assert "registered: vpn=gvpn2 group-id=2 teks=1 kek=no" in log
    assert "rekey signing key generated and stored: rsa-2048 sha256:" in (
        daemons["server"].log_text()
    )
    for daemon in daemons.values():
        assert "Traceback" not in daemon.log_text() and PSK not in daemon.log_text()
        assert "PRIVATE KEY" not in daemon.log_text()


def test_clear_kek_drops_it_and_registration_brings_back_the_groups_kek(
    kek_network: dict[str, Any],
):
    member_socket, member = kek_network["member"], kek_network["daemons"]["member"]
    before = kek_view(member_socket, "member")
    offset = member.log_offset()
    groupvpn("clear", "security", "group-vpn", "member", "kek", "security-associations",
             "--control", str(member_socket), check=True)  # fmt: skip
    for n in (1, 2, 3):
        member.wait_for_line(rf"registered: vpn=gvpn{n} ", timeout=30, since=offset)
    after = kek_view(member_socket, "member")
    # The group's KEK has not expired, so the member gets the same one again.
    assert [sa["spi"] for sa in after["security-associations"]] == [
        sa["spi"] for sa in before["security-associations"]
    ]
    assert "group SAs cleared by operator" in member.log_text()[offset:]


def test_a_restarted_server_signs_with_the_same_key_from_its_state_directory(
    kek_network: dict[str, Any], tmp_path: Path
):
    daemons = kek_network["daemons"]
    before = kek_view(kek_network["server"], "server")
    state = tmp_path / "server.state"  # groupvpn_argv's --state-dir for server.conf
    key_file = state / "signing-key.pem"
    assert state.stat().st_mode & 0o777 == 0o700
    assert key_file.stat().st_mode & 0o777 == 0o600
    daemons["server"].stop()
    restarted = DaemonProcess(daemons["server"].argv, tmp_path / "server-2.log", name="server")
    daemons["server"] = restarted.start()
    restarted.wait_for_line("key server running", timeout=20)
    after = kek_view(kek_network["server"], "server")
    fingerprints = {sa["signing-key-fingerprint"] for sa in before["security-associations"]}
    assert len(fingerprints) == 1
    assert {sa["signing-key-fingerprint"] for sa in after["security-associations"]} == (
        fingerprints
    )
    assert "rekey signing key loaded: rsa-2048" in restarted.log_text()
    assert "PRIVATE KEY" not in restarted.log_text()


def test_an_unusable_signing_key_stops_the_server_with_a_way_out(tmp_path: Path):
    conf = tmp_path / "server.conf"
    conf.write_text(SERVER_CONFIG)
    state = tmp_path / "server.state"
    state.mkdir(mode=0o700)
    key_file = state / "signing-key.pem"
    key_file.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    key_file.chmod(0o600)
    result = subprocess.run(
        groupvpn_argv("server", conf, port=free_port(SERVER_IP)),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "is not a usable RSA private key" in output and "move it away" in output
    assert "Traceback" not in output
    # Nothing was replaced: a fresh key would split the group.
    assert b"garbage" in key_file.read_bytes()
