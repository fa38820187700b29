"""Our daemons against strongSwan, and our packets through tshark, in network namespaces.

Side ``a`` is 198.51.100.1, side ``b`` 198.51.100.2 (TEST-NET-2, inside namespaces the
test creates).  strongSwan runs on UDP 500: on any other port it adds the non-ESP
marker (see the lab notes), so the interop runs use ``--port 500``.  A test passes only
if strongSwan reports the IKE SA established *and* our side logs it up with the same
cookies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop import tshark
from tests.interop.daemon import (
    IKE_SA_FAILED,
    IKE_SA_UP,
    DaemonProcess,
    groupvpn_argv,
    read_debug_keys,
)
from tests.interop.netns import NetnsPair
from tests.interop.strongswan import StrongSwan

pytestmark = [pytest.mark.root, pytest.mark.interop]

PSK = "interop-psk-0123456789"


@dataclass(frozen=True)
class Suite:
    strongswan: str
    encryption: str
    hash: str
    group: int


SUITES = [
    Suite("3des-sha1-modp1024", "3des-cbc", "sha1", 2),
    Suite("aes128-sha1-modp2048", "aes-128-cbc", "sha1", 14),
    Suite("aes256-sha256-modp2048", "aes-256-cbc", "sha-256", 14),
]


def junos_config(
    role: str,
    suite: Suite,
    *,
    peer: str,
    local: str,
    mode: str = "main",
    psk: str = PSK,
    local_identity: str | None = None,
    remote_identity: str | None = None,
) -> str:
    """A complete IKE configuration for one gateway, as an operator would write it."""
    base = f"set security group-vpn {role} ike"
    lines = [
        f"{base} proposal p1 authentication-method pre-shared-keys",
        f"{base} proposal p1 dh-group group{suite.group}",
        f"{base} proposal p1 authentication-algorithm {suite.hash}",
        f"{base} proposal p1 encryption-algorithm {suite.encryption}",
        f"{base} policy pol1 mode {mode}",
        f"{base} policy pol1 proposals p1",
        f'{base} policy pol1 pre-shared-key ascii-text "{psk}"',
        f"{base} gateway gw1 ike-policy pol1",
        f"{base} gateway gw1 address {peer}",
        f"{base} gateway gw1 local-address {local}",
    ]
    if local_identity:
        lines.append(f"{base} gateway gw1 local-identity hostname {local_identity}")
    if remote_identity:
        lines.append(f"{base} gateway gw1 remote-identity hostname {remote_identity}")
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _start_server(pair: NetnsPair, tmp_path: Path, config: str, *extra: str) -> DaemonProcess:
    conf = _write(tmp_path / "server.conf", config)
    server = pair.daemon(
        pair.b, groupvpn_argv("server", conf, extra=extra), tmp_path / "server.log"
    )
    server.wait_for_line("key server running", timeout=15)
    return server


def _strongswan(pair: NetnsPair, tmp_path: Path, suite: Suite, psk: str = PSK) -> StrongSwan:
    swan = StrongSwan.in_pair(pair, "a", tmp_path / "charon", proposals=suite.strongswan, psk=psk)
    return swan.start()


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.strongswan)
def test_strongswan_main_mode_to_our_server(netns_pair: NetnsPair, tmp_path: Path, suite: Suite):
    pair = netns_pair
    server = _start_server(
        pair, tmp_path, junos_config("server", suite, peer=pair.addr_a, local=pair.addr_b)
    )
    swan = _strongswan(pair, tmp_path, suite)
    assert swan.initiate("mm", timeout=10), swan.last_output
    sa = swan.wait_established(timeout=5, conn="mm")
    assert sa is not None, swan.log_tail()
    up = server.wait_for_line(IKE_SA_UP, timeout=5)
    assert (up["icookie"], up["rcookie"]) == (sa.icookie, sa.rcookie)
    assert (up["role"], up["mode"], up["encryption"], up["hash"], up["dh_group"]) == (
        "responder", "main", suite.encryption, suite.hash, f"group{suite.group}",
    )  # fmt: skip


def test_strongswan_aggressive_mode_to_our_server(netns_pair: NetnsPair, tmp_path: Path):
    pair, suite = netns_pair, SUITES[0]
    config = junos_config(
        "server", suite, peer=pair.addr_a, local=pair.addr_b, mode="aggressive",
        local_identity="b.gvt.test", remote_identity="a.gvt.test",
    )  # fmt: skip
    server = _start_server(pair, tmp_path, config)
    swan = _strongswan(pair, tmp_path, suite)
    assert swan.initiate("am", timeout=10), swan.last_output
    sa = swan.wait_established(timeout=5, conn="am")
    assert sa is not None, swan.log_tail()
    up = server.wait_for_line(IKE_SA_UP, timeout=5)
    assert (up["icookie"], up["rcookie"]) == (sa.icookie, sa.rcookie)
    assert up["mode"] == "aggressive"
    assert "remote-id=fqdn:a.gvt.test" in server.log_text()


def _run_member(pair: NetnsPair, tmp_path: Path, config: str, *extra: str) -> DaemonProcess:
    conf = _write(tmp_path / "member.conf", config)
    member = pair.daemon(
        pair.a, groupvpn_argv("member", conf, extra=extra), tmp_path / "member.log"
    )
    member.wait(timeout=60)
    return member


def _strongswan_responder(
    pair: NetnsPair, tmp_path: Path, suite: Suite, psk: str = PSK
) -> StrongSwan:
    swan = StrongSwan.in_pair(pair, "b", tmp_path / "charon", proposals=suite.strongswan, psk=psk)
    return swan.start()


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.strongswan)
@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_our_member_to_strongswan(netns_pair: NetnsPair, tmp_path: Path, suite: Suite, mode: str):
    pair = netns_pair
    swan = _strongswan_responder(pair, tmp_path, suite)
    identities = (
        {"local_identity": "a.gvt.test", "remote_identity": "b.gvt.test"}
        if mode == "aggressive"
        else {}
    )
    config = junos_config(
        "member", suite, peer=pair.addr_b, local=pair.addr_a, mode=mode, **identities
    )
    member = _run_member(pair, tmp_path, config)
    log = member.log_text()
    assert member.returncode == 0, log
    up = IKE_SA_UP.search(log)
    assert up is not None and up["role"] == "initiator" and up["mode"] == mode, log
    assert (up["encryption"], up["hash"], up["dh_group"]) == (
        suite.encryption, suite.hash, f"group{suite.group}",
    )  # fmt: skip
    # strongSwan took the SA up with us, then accepted the Delete our member sent on exit.
    charon = swan.log_text()
    conn = "mm" if mode == "main" else "am"
    assert re.search(
        rf"IKE_SA {conn}\[\d+\] established between {pair.addr_b}\[[^]]+\]\.\.\.{pair.addr_a}\[",
        charon,
    ), swan.log_tail()
    assert re.search(rf"received DELETE for IKE_SA {conn}\[", charon), swan.log_tail()


def test_wrong_psk_from_strongswan_fails_cleanly(netns_pair: NetnsPair, tmp_path: Path):
    pair, suite = netns_pair, SUITES[1]
    server = _start_server(
        pair, tmp_path, junos_config("server", suite, peer=pair.addr_a, local=pair.addr_b)
    )
    swan = _strongswan(pair, tmp_path, suite, psk="not-the-same-key")
    assert not swan.initiate("mm", timeout=6)
    assert swan.wait_established(timeout=1) is None
    failed = server.wait_for_line(IKE_SA_FAILED, timeout=5)
    assert failed["notify"] == "AUTHENTICATION-FAILED"
    assert "pre-shared key mismatch" in failed["reason"]
    assert server.is_alive() and swan.is_alive()
    assert "not-the-same-key" not in server.log_text() and PSK not in server.log_text()


def test_wrong_psk_from_our_member_fails_cleanly(netns_pair: NetnsPair, tmp_path: Path):
    pair, suite = netns_pair, SUITES[0]
    swan = _strongswan_responder(pair, tmp_path, suite, psk="not-the-same-key")
    config = junos_config("member", suite, peer=pair.addr_b, local=pair.addr_a)
    member = _run_member(
        pair, tmp_path, config, "--retransmit-interval", "0.5", "--retransmit-limit", "2"
    )
    log = member.log_text()
    assert member.returncode == 1, log
    [failed] = [m for line in log.splitlines() if (m := IKE_SA_FAILED.search(line))]
    assert "pre-shared key mismatch" in failed["reason"], log
    assert "Traceback" not in log and PSK not in log
    assert swan.is_alive() and not [sa for sa in swan.list_sas() if sa.state == "ESTABLISHED"]


@pytest.mark.parametrize("mode", ["main", "aggressive"])
def test_tshark_decodes_our_own_handshake(netns_pair: NetnsPair, tmp_path: Path, mode: str):
    """Member and server of ours on UDP 848; tshark decrypts with our keys, nothing malformed."""
    pair, suite = netns_pair, SUITES[2]
    ids = (
        {"local_identity": "ks.example", "remote_identity": "m1.example"}
        if mode == "aggressive"
        else {}
    )
    member_ids = (
        {"local_identity": "m1.example", "remote_identity": "ks.example"}
        if mode == "aggressive"
        else {}
    )
    keys_file = tmp_path / "keys.txt"
    common = ("--phase1-doi", "ipsec", "--port", "848")
    server = _start_server(
        pair,
        tmp_path,
        junos_config("server", suite, peer=pair.addr_a, local=pair.addr_b, mode=mode, **ids),
        *common,
    )
    pcap = tmp_path / "phase1.pcap"
    with tshark.capture(pair.a, pair.iface_a, pcap, pair=pair):
        member_conf = junos_config(
            "member", suite, peer=pair.addr_b, local=pair.addr_a, mode=mode, **member_ids
        )
        member = _run_member(pair, tmp_path, member_conf, *common, "--debug-keys", str(keys_file))
        assert member.returncode == 0, member.log_text()
        server.wait_for_line(r"IKE SA down: .* reason=deleted by peer", timeout=5)
    keys = read_debug_keys(keys_file)
    assert len(keys) == 1
    assert tshark.malformed_frames(pcap, ports=(848,), keys=keys) == []
    exchange = 2 if mode == "main" else 4
    required = (5, 8) if mode == "main" else (8,)
    tshark.assert_decrypted(
        pcap, keys, exchange=exchange, required=required,
        min_messages=2 if mode == "main" else 1, ports=(848,),
    )  # fmt: skip
    # The Delete our member sent on exit is a protected Informational: HASH(1) then D.
    informational = [f for f in tshark.payload_types(pcap, (848,), keys) if f[1] == 5]
    assert [(enc, types) for _, _, enc, types in informational] == [(True, [8, 12])]


def test_tshark_decodes_a_v2_registration(netns_pair: NetnsPair, tmp_path: Path):
    """Phase 1 + GROUPKEY-PULL of the spec's group in the v2 (RFC 6407) dialect on UDP 848:
    tshark decrypts every message with our keys and finds nothing malformed."""
    pair = netns_pair
    spec = Path(__file__).resolve().parent.parent / "configs" / "spec"
    moves = {"20.0.0.1": pair.addr_b, "198.51.100.1": pair.addr_a}
    configs = {}
    for name in ("server", "member1"):
        text = (spec / f"{name}.conf").read_text()
        for old, new in moves.items():
            text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        configs[name] = _write(tmp_path / f"{name}.conf", text)
    common = ("--phase1-doi", "ipsec", "--dialect", "v2")
    keys_file = tmp_path / "keys.txt"
    server = pair.daemon(
        pair.b, groupvpn_argv("server", configs["server"], port=848, extra=common),
        tmp_path / "server.log",
    )  # fmt: skip
    server.wait_for_line("key server running", timeout=15)
    pcap = tmp_path / "registration.pcap"
    with tshark.capture(pair.a, pair.iface_a, pcap, pair=pair):
        member = pair.daemon(
            pair.a,
            groupvpn_argv("member", configs["member1"], port=848, debug_keys=keys_file,
                          extra=common),
            tmp_path / "member.log",
        )  # fmt: skip
        member.wait_for_line(r"group SAs installed: vpn=gvpn1 installed=2", timeout=30)
        server.wait_for_line(r"member registered: group=g1", timeout=5)
    keys = read_debug_keys(keys_file)
    assert tshark.malformed_frames(pcap, ports=(848,), keys=keys) == []
    pull = [f for f in tshark.payload_types(pcap, (848,), keys) if f[1] == 32]
    # HASH(1) Ni ID / HASH(2) Nr SA / HASH(3) / HASH(4) SEQ KD, all decrypted (the spec's
    # group has server-member-communication, so the registration carries a KEK and SEQ).
    assert [types[:3] for _, _, _, types in pull] == [[8, 10, 5], [8, 10, 1], [8], [8, 18, 17]]
