"""tshark, an independent decoder, reads a registration of ours that carries a KEK.

The spec's server (group g1 with `server-member-communication`: unicast rekeys,
aes-128-cbc KEK, md5 signature hash) and member1, in two network namespaces on UDP 848,
Phase 1 with DOI 1 so tshark can decrypt (docs/design.md).  tshark must find in PULL 2
the SA KEK with the KEK SPI the key server shows, in PULL 4 the SEQ 0 and the KD KEK
packet with that SPI, and:

* v2 (RFC 6407): nothing malformed.  tshark stops dissecting the SA at the GAP that
  follows the SA KEK (gdoi-wire.md §7: GAP is not dissected), which hides the SA TEKs
  but is not an error.
* v1 (RFC 3547): tshark 4.0 reads the SA TEK ID Data Len fields as 2 octets where
  RFC 3547 and the Cisco reference use 1 (../shared/lab/REPORT.md, "Bug: SAT";
  gdoi-wire.md §0.2), so PULL 2 is "Malformed" at the first SA TEK.  Everything before
  it (the SA KEK) and every other message decodes: PULL 2 is the only malformed frame.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from tests.interop import tshark
from tests.interop.daemon import groupvpn_argv, read_debug_keys
from tests.interop.netns import NetnsPair

pytestmark = [pytest.mark.root, pytest.mark.interop]

SPEC = Path(__file__).resolve().parent.parent / "configs" / "spec"
PORT = 848
FIELDS = (
    "isakmp.exchangetype",
    "isakmp.typepayload",
    "isakmp.sak.protoid",
    "isakmp.sak.src_id_data",
    "isakmp.sak.src_id_port",
    "isakmp.sak.dst_id_data",
    "isakmp.sak.dst_id_port",
    "isakmp.sak.spi",
    "isakmp.ipsec.attr.type",
    "isakmp.ipsec.attr.value",
    "isakmp.seq.seq",
    "isakmp.kd.payload.type",
    "isakmp.kd.payload.spi",
    "_ws.malformed",
)


def _register(pair: NetnsPair, tmp_path: Path, dialect: str) -> tuple[Path, list[Any], Any]:
    """Register member1 with the spec's server; the capture, tshark's keys, the server's KEK."""
    moves = {"20.0.0.1": pair.addr_b, "198.51.100.1": pair.addr_a}
    configs = {}
    for name in ("server", "member1"):
        text = (SPEC / f"{name}.conf").read_text()
        for old, new in moves.items():
            text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        configs[name] = tmp_path / f"{name}.conf"
        configs[name].write_text(text)
    common = ("--phase1-doi", "ipsec", "--dialect", dialect)
    keys_file = tmp_path / "keys.txt"
    server = pair.daemon(
        pair.b, groupvpn_argv("server", configs["server"], port=PORT, extra=common),
        tmp_path / "server.log",
    )  # fmt: skip
    server.wait_for_line("key server running", timeout=15)
    pcap = tmp_path / f"registration-{dialect}.pcap"
    with tshark.capture(pair.a, pair.iface_a, pcap, pair=pair):
        member = pair.daemon(
            pair.a,
            groupvpn_argv("member", configs["member1"], port=PORT, debug_keys=keys_file,
                          extra=common),
            tmp_path / "member.log",
        )  # fmt: skip
        member.wait_for_line(r"registered: vpn=gvpn1 group-id=1 teks=3 kek=yes", timeout=30)
        server.wait_for_line(r"member registered: group=g1", timeout=5)
    # The control socket is a file: the host reaches it in the namespace's daemon.
    shown = subprocess.run(
        [sys.executable, "-m", "groupvpn", "show", "security", "group-vpn", "server", "kek",
         "security-associations", "--control", str(tmp_path / "server.sock"), "--json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    [kek] = json.loads(shown.stdout)["security-associations"]
    for daemon in (server, member):
        assert "Traceback" not in daemon.log_text()
    return pcap, read_debug_keys(keys_file), kek


def _pull_frames(pcap: Path, keys: list[Any]) -> list[dict[str, list[str]]]:
    rows = tshark.decode(pcap, ports=(PORT,), keys=keys, fields=FIELDS, display_filter="isakmp")
    return [r for r in rows if r.get("isakmp.exchangetype") == ["32"]]


def _check_kek(pull: list[dict[str, list[str]]], kek: Any, pair: NetnsPair) -> None:
    pull2, pull4 = pull[1], pull[3]
    # PULL 2: the SA KEK, as the key server shows it; unicast rekeys go to the member.
    assert pull2["isakmp.sak.spi"] == [kek["spi"]]
    assert pull2["isakmp.sak.protoid"] == ["17"]
    # tshark shows SA KEK ID data as raw hex.
    assert pull2["isakmp.sak.src_id_data"] == [IPv4Address(pair.addr_b).packed.hex()]
    assert pull2["isakmp.sak.dst_id_data"] == [IPv4Address(pair.addr_a).packed.hex()]
    assert pull2["isakmp.sak.src_id_port"] == pull2["isakmp.sak.dst_id_port"] == [str(PORT)]
    # KEK attributes, which tshark labels with IPsec DOI names (gdoi-wire.md §7): AES with
    # 128-bit keys, the lifetime, MD5, RSA and the 2048-bit signing key (§4.2 numbers).
    types, values = pull2["isakmp.ipsec.attr.type"], pull2["isakmp.ipsec.attr.value"]
    assert types[:6] == ["2", "3", "4", "5", "6", "7"]
    assert values[:2] + values[3:6] == ["0003", "0080", "0001", "0001", "0800"]
    assert 3500 <= int(values[2], 16) <= 3600
    # PULL 4: HASH(4), SEQ 0, KD whose first key packet is the KEK (type 2) with its SPI.
    assert pull4["isakmp.typepayload"][:3] == ["8", "18", "17"]
    assert pull4["isakmp.seq.seq"] == ["0"]
    assert pull4["isakmp.kd.payload.type"] == ["2", "1", "1", "1"]
    assert pull4["isakmp.kd.payload.spi"][0] == kek["spi"]


def test_tshark_decodes_a_v2_registration_with_a_kek(netns_pair: NetnsPair, tmp_path: Path):
    pcap, keys, kek = _register(netns_pair, tmp_path, "v2")
    assert tshark.malformed_frames(pcap, ports=(PORT,), keys=keys) == [], tshark.decode_verbose(
        pcap, ports=(PORT,), keys=keys
    )
    pull = _pull_frames(pcap, keys)
    assert [r["isakmp.typepayload"][:3] for r in pull] == [
        ["8", "10", "5"], ["8", "10", "1"], ["8"], ["8", "18", "17"],
    ]  # fmt: skip
    _check_kek(pull, kek, netns_pair)


def test_tshark_decodes_the_kek_of_a_v1_registration(netns_pair: NetnsPair, tmp_path: Path):
    pcap, keys, kek = _register(netns_pair, tmp_path, "v1")
    pull = _pull_frames(pcap, keys)
    # tshark's SA TEK bug (see the module docstring) makes PULL 2, and only PULL 2, malformed.
    malformed = tshark.malformed_frames(pcap, ports=(PORT,), keys=keys)
    assert malformed == [int(pull[1]["frame.number"][0])]
    _check_kek(pull, kek, netns_pair)
