"""tshark, an independent decoder, reads a v2 registration that hands out a sender ID.

The spec's server with its group proposal switched to AES-GCM (``encryption-algorithm
aes-128-gcm``, no ``authentication-algorithm``) and member1, in two network
namespaces on UDP 848, dialect v2, Phase 1 with DOI 1 so tshark can decrypt
(docs/design.md).  The member is offered a counter-mode TEK, so:

* PULL 3 is ``HASH(3), GAP`` and the GAP carries SENDER_ID_REQUEST (attribute 3) = 1;
* PULL 4 is ``HASH(4), SEQ, KD`` and the KD's last key packet is of type SID (4), SPI
  size 0, with NUMBER_OF_SID_BITS = 24 and one 4-octet SID_VALUE: the SID the key
  server logged for this member;

and tshark finds nothing malformed in any frame.  tshark 4.0 names a top-level GAP
"Group Associated Policy (22)" and shows its attributes as raw octets ("Data Payload:
80030001": attribute 3, TV form, value 1), and names the SID key packet "SID (4)",
labelling its attributes with TEK names (gdoi-wire.md §7), as it does for every key
packet.
"""

from __future__ import annotations

import re
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
    "isakmp.sat.transform_id",
    "isakmp.kd.payload.type",
    "isakmp.kd.payload.spi_size",
    "isakmp.key_download.attr.type",
    "isakmp.key_download.attr.length",
    "isakmp.key_download.attr.value",
    "_ws.malformed",
)


def gcm_configs(pair: NetnsPair, tmp_path: Path) -> dict[str, Path]:
    """The spec's server and member1 at the pair's addresses, the group on AES-GCM."""
    moves = {"20.0.0.1": pair.addr_b, "198.51.100.1": pair.addr_a}
    configs = {}
    for name in ("server", "member1"):
        text = (SPEC / f"{name}.conf").read_text()
        for old, new in moves.items():
            text = re.sub(rf"\b{re.escape(old)}\b", new, text)
        if name == "server":
            text = re.sub(r"(?m)^.*ipsec proposal group-prop authentication-algorithm.*\n", "",
                          text)  # fmt: skip
            text = text.replace(
                "ipsec proposal group-prop encryption-algorithm 3des-cbc",
                "ipsec proposal group-prop encryption-algorithm aes-128-gcm",
            )
            assert "aes-128-gcm" in text
        configs[name] = tmp_path / f"{name}.conf"
        configs[name].write_text(text)
    return configs


def register(pair: NetnsPair, tmp_path: Path) -> tuple[Path, list[Any], int]:
    """Register member1; the capture, tshark's keys, and the SID the server logged."""
    configs = gcm_configs(pair, tmp_path)
    common = ("--phase1-doi", "ipsec", "--dialect", "v2")
    keys_file = tmp_path / "keys.txt"
    server = pair.daemon(
        pair.b, groupvpn_argv("server", configs["server"], port=PORT, extra=common),
        tmp_path / "server.log",
    )  # fmt: skip
    server.wait_for_line("key server running", timeout=15)
    pcap = tmp_path / "registration-gcm.pcap"
    with tshark.capture(pair.a, pair.iface_a, pcap, pair=pair):
        member = pair.daemon(
            pair.a,
            groupvpn_argv("member", configs["member1"], port=PORT, debug_keys=keys_file,
                          extra=common),
            tmp_path / "member.log",
        )  # fmt: skip
        found = member.wait_for_line(
            r"registered: vpn=gvpn1 group-id=1 teks=3 kek=yes sender-id=(?P<sid>\d+)",
            timeout=30,
        )
        server.wait_for_line(r"member registered: group=g1 .* sender-id=" + found["sid"], 5)
    for daemon in (server, member):
        assert "Traceback" not in daemon.log_text()
    return pcap, read_debug_keys(keys_file), int(found["sid"])


def frame_text(verbose: str, number: str) -> str:
    """One frame of tshark's verbose output."""
    (text,) = [t for t in re.split(r"(?m)^(?=Frame \d+: )", verbose)
               if t.startswith(f"Frame {number}: ")]  # fmt: skip
    return text


def test_tshark_decodes_the_gap_request_and_the_sid_key_packet(
    netns_pair: NetnsPair, tmp_path: Path
) -> None:
    pcap, keys, sid = register(netns_pair, tmp_path)
    assert tshark.malformed_frames(pcap, ports=(PORT,), keys=keys) == [], tshark.decode_verbose(
        pcap, ports=(PORT,), keys=keys
    )
    rows = tshark.decode(pcap, ports=(PORT,), keys=keys, fields=FIELDS, display_filter="isakmp")
    pull = [r for r in rows if r.get("isakmp.exchangetype") == ["32"]]
    assert [r["isakmp.typepayload"][:3] for r in pull] == [
        ["8", "10", "5"], ["8", "10", "1"], ["8", "22"], ["8", "18", "17"],
    ]  # fmt: skip
    # PULL 3: HASH(3) then the GAP, whose one attribute is SENDER_ID_REQUEST (3) = 1.
    verbose = tshark.decode_verbose(pcap, ports=(PORT,), keys=keys)
    pull3 = frame_text(verbose, pull[2]["frame.number"][0])
    assert re.search(
        r"Payload: Hash \(8\)\s+Next payload: Group Associated Policy \(22\).*"
        r"Payload: Group Associated Policy \(22\)\s+Next payload: NONE.*"
        r"Payload length: 8\s+Data Payload: 80030001",
        pull3,
        re.DOTALL,
    ), pull3
    # PULL 4: the KD's key packets: the KEK (2), three GCM TEKs (1), then the SID (4)
    # with SPI size 0 and attributes NUMBER_OF_SID_BITS (1, basic: no length) and one
    # SID_VALUE (2) of 4 octets.
    pull4 = pull[3]
    assert pull4["isakmp.kd.payload.type"] == ["2", "1", "1", "1", "4"]
    assert pull4["isakmp.kd.payload.spi_size"] == ["16", "4", "4", "4", "0"]
    # Attributes of all five packets in order: the KEK's two, one per GCM TEK (key |
    # salt, 20 octets; no TEK_INTEGRITY_KEY), then NUMBER_OF_SID_BITS (TV, so no
    # length) and SID_VALUE.
    assert pull4["isakmp.key_download.attr.type"] == ["1", "2", "1", "1", "1", "1", "2"]
    assert pull4["isakmp.key_download.attr.length"][2:] == ["20", "20", "20", "4"]
    values = pull4["isakmp.key_download.attr.value"]
    assert values[-2:] == ["0018", sid.to_bytes(4, "big").hex()], values
    pull4_text = frame_text(verbose, pull4["frame.number"][0])
    assert "Type: SID (4)" in pull4_text and "SPI Size: 0" in pull4_text
