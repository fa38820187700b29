"""Harness pieces that need neither root nor the third-party tools."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.interop import tshark
from tests.interop.daemon import read_debug_keys
from tests.interop.strongswan import _LIST_SA, IkeKeys, parse_charon_keys


def _dump(sa: str, label: str, data: bytes) -> list[str]:
    lines = [f"18:53:01 08[IKE] <{sa}> {label} => {len(data)} bytes @ 0x7fd348006160"]
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexed = " ".join(f"{b:02X}" for b in chunk)
        lines.append(f"18:53:01 08[IKE] <{sa}> {off:4}: {hexed:<48}  {'.' * len(chunk)}")
    return lines


def test_parse_charon_keys_groups_by_unique_id() -> None:
    cookies = bytes.fromhex("a91381d0a81999274bf9fcdfa4cf61d9")
    ka = bytes(range(16))
    log = [
        "18:53:01 03[NET] <1> received packet: from 198.51.100.1[500] to 198.51.100.2[500]",
        # a responder does not know the connection name yet
        *_dump("1", "natd_chunk", cookies + bytes.fromhex("c6336402 01f4")),
        *_dump("1", "SKEYID", bytes(20)),
        *_dump("1", "SKEYID_e", ka + b"\x01\x02\x03\x04"),
        *_dump("1", "encryption key Ka", ka),
        "18:53:01 08[ENC] <1> generating ID_PROT response 0 [ KE No NAT-D NAT-D ]",
        "18:53:01 09[CFG] <mm|1> selected peer config 'mm'",
        # an unrelated SA without Ka is left out
        *_dump("am|2", "natd_chunk", bytes(22)),
    ]
    keys = parse_charon_keys("\n".join(log) + "\n")
    assert keys == [
        IkeKeys(
            conn="mm",
            uid=1,
            icookie="a91381d0a8199927",
            rcookie="4bf9fcdfa4cf61d9",
            ka=ka.hex(),
            skeyid="00" * 20,
            skeyid_e=ka.hex() + "01020304",
        )
    ]
    assert keys[0].uat == ("a91381d0a8199927", ka.hex())


def test_list_sas_pattern() -> None:
    out = (
        "mm: #1, ESTABLISHED, IKEv1, a45e1539c5e3e8d2_i* 13bc6b363e8f3e6f_r\n"
        "  local  '198.51.100.1' @ 198.51.100.1[500]\n"
        "am: #2, CONNECTING, IKEv1, ad000a17c1aef03d_i 0000000000000000_r*\n"
    )
    rows = [(m["conn"], m["state"], m["icookie"], m["rcookie"]) for m in _LIST_SA.finditer(out)]
    assert rows == [
        ("mm", "ESTABLISHED", "a45e1539c5e3e8d2", "13bc6b363e8f3e6f"),
        ("am", "CONNECTING", "ad000a17c1aef03d", "0000000000000000"),
    ]


def test_pcap_frame_count(tmp_path: Path) -> None:
    f = tmp_path / "x.pcap"
    assert tshark.pcap_frame_count(f) == 0
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 0, 0, 3, 3) + b"abc"
    f.write_bytes(header)
    assert tshark.pcap_frame_count(f) == 0
    f.write_bytes(header + record * 2 + record[:10])  # last one still being written
    assert tshark.pcap_frame_count(f) == 2
    f.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    with pytest.raises(ValueError, match="not a classic pcap"):
        tshark.pcap_frame_count(f)


def test_decode_args() -> None:
    args = tshark._decode_args((500, 848), [("0123456789ABCDEF", "00FF")], marker=False)
    assert args == [
        "-d",
        "udp.port==848,isakmp",
        "-o",
        "uat:ikev1_decryption_table:0123456789abcdef,00ff",
    ]
    assert tshark._decode_args((500,), [], marker=True) == ["-d", "udp.port==500,udpencap"]
    with pytest.raises(ValueError, match="bad decryption key"):
        tshark._decode_args((500,), [("0123", "00")], marker=False)


def test_read_debug_keys_requires_private_file(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("0123456789abcdef,00112233\n")
    f.chmod(0o644)
    with pytest.raises(AssertionError, match="0644"):
        read_debug_keys(f)
    assert read_debug_keys(f, require_private=False) == [("0123456789abcdef", "00112233")]
    f.chmod(0o600)
    assert read_debug_keys(f) == [("0123456789abcdef", "00112233")]
