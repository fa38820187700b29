"""``groupvpn server`` and ``groupvpn member`` as processes on loopback (no root needed)."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.interop.daemon import IKE_SA_UP, DaemonProcess, groupvpn_argv
from tests.system.spec_network import free_port, groupvpn

SERVER_IP = "127.0.0.20"
MEMBER_IP = "127.0.0.11"
PSK = "loopback-psk-never-logged"


def _config(role: str, peer: str, local: str, psk: str = PSK) -> str:
    base = f"set security group-vpn {role} ike"
    return "\n".join(
        [
            f"{base} proposal p1 authentication-method pre-shared-keys",
            f"{base} proposal p1 dh-group group14",
            f"{base} proposal p1 authentication-algorithm sha-256",
            f"{base} proposal p1 encryption-algorithm aes-256-cbc",
            f"{base} policy pol1 mode main",
            f"{base} policy pol1 proposals p1",
            f'{base} policy pol1 pre-shared-key ascii-text "{psk}"',
            f"{base} gateway gw1 ike-policy pol1",
            f"{base} gateway gw1 address {peer}",
            f"{base} gateway gw1 local-address {local}",
            "",
        ]
    )


@pytest.fixture
def port() -> int:
    return free_port(SERVER_IP)


def _server(tmp_path: Path, port: int) -> DaemonProcess:
    conf = tmp_path / "server.conf"
    conf.write_text(_config("server", MEMBER_IP, SERVER_IP))
    server = DaemonProcess(groupvpn_argv("server", conf, port=port), tmp_path / "server.log")
    server.start()
    server.wait_for_line("key server running", timeout=15)
    return server


def _member(tmp_path: Path, port: int, psk: str = PSK) -> subprocess.CompletedProcess[str]:
    conf = tmp_path / "member.conf"
    conf.write_text(_config("member", SERVER_IP, MEMBER_IP, psk))
    argv = groupvpn_argv("member", conf, port=port)
    argv += ["--retransmit-interval", "0.3", "--retransmit-limit", "2"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_member_registers_phase1_then_server_stops_cleanly_on_sigterm(tmp_path: Path, port: int):
    server = _server(tmp_path, port)
    try:
        member = _member(tmp_path, port)
        assert member.returncode == 0, member.stderr
        up = IKE_SA_UP.search(member.stderr)
        assert up is not None and up["role"] == "initiator"
        assert (up["encryption"], up["hash"], up["dh_group"]) == (
            "aes-256-cbc",
            "sha-256",
            "group14",
        )
        server_up = server.wait_for_line(IKE_SA_UP, timeout=5)
        assert server_up["icookie"] == up["icookie"]
        server.wait_for_line(r"IKE SA down: .* reason=deleted by peer", timeout=5)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        log = server.log_text()
        assert "received SIGTERM, stopping" in log
        for text in (log, member.stderr):
            assert PSK not in text and "Traceback" not in text
    finally:
        server.stop()


def test_sigint_stops_a_member_that_waits_for_an_absent_server(tmp_path: Path, port: int):
    conf = tmp_path / "member.conf"
    conf.write_text(_config("member", SERVER_IP, MEMBER_IP))
    member = DaemonProcess(groupvpn_argv("member", conf, port=port), tmp_path / "member.log")
    member.start()
    try:
        member.wait_for_line("initiating IKE Phase 1", timeout=15)
        member.send_signal(signal.SIGINT)
        assert member.wait(timeout=10) == 1  # stopped before Phase 1 completed
        assert "received SIGINT, stopping" in member.log_text()
        assert "Traceback" not in member.log_text()
    finally:
        member.stop()


def test_wrong_psk_fails_on_both_sides_and_the_server_keeps_running(tmp_path: Path, port: int):
    server = _server(tmp_path, port)
    try:
        member = _member(tmp_path, port, psk="some-other-key")
        assert member.returncode == 1
        assert "IKE SA failed:" in member.stderr and "pre-shared key mismatch" in member.stderr
        server.wait_for_line(r"IKE SA failed: .*notify=AUTHENTICATION-FAILED", timeout=5)
        assert server.is_alive()
        # and a member with the right key still gets in afterwards
        assert _member(tmp_path, port).returncode == 0
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("set security group-vpn server ike bogus\n", "syntax error: bogus"),
        (None, "could not read configuration file"),
        ("", "no IKE gateway configured under [edit security group-vpn server ike]"),
    ],
)
def test_bad_configuration_is_a_clear_error(tmp_path: Path, content: str | None, expected: str):
    conf = tmp_path / "server.conf"
    if content is not None:
        conf.write_text(content)
    result = groupvpn("server", "-c", str(conf))
    assert result.returncode == 1
    assert expected in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_address_in_use_is_a_clear_error(tmp_path: Path, port: int):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind((SERVER_IP, port))
        conf = tmp_path / "server.conf"
        conf.write_text(_config("server", MEMBER_IP, SERVER_IP))
        result = subprocess.run(
            groupvpn_argv("server", conf, port=port),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on {SERVER_IP}:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_keys_file_is_private_and_a_bad_path_stops_startup(tmp_path: Path, port: int):
    conf = tmp_path / "server.conf"
    conf.write_text(_config("server", MEMBER_IP, SERVER_IP))
    missing_dir = tmp_path / "no-such-dir" / "keys"
    result = subprocess.run(
        [*groupvpn_argv("server", conf, port=port), "--debug-keys", str(missing_dir)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot open --debug-keys file" in result.stderr and "Traceback" not in result.stderr

    keys = tmp_path / "keys"
    keys.write_text("")
    keys.chmod(0o644)  # an existing file with loose permissions is tightened
    server = DaemonProcess(
        [*groupvpn_argv("server", conf, port=port), "--debug-keys", str(keys)],
        tmp_path / "server.log",
    ).start()
    try:
        server.wait_for_line("key server running", timeout=15)
        assert _member(tmp_path, port).returncode == 0
        server.wait_for_line(IKE_SA_UP, timeout=5)
        assert keys.stat().st_mode & 0o777 == 0o600
        [line] = keys.read_text().splitlines()
        icookie, key = line.split(",")
        assert len(icookie) == 16 and len(bytes.fromhex(key)) == 32  # aes-256-cbc
    finally:
        server.stop()
