"""tshark, an independent decoder, reads our GROUPKEY-PUSH messages and rekey ACKs.

tshark cannot decrypt a push (the KEK is not a phase 1 SA it can derive, gdoi-wire.md
§7), so it gets each push twice: as sent (header, "Encrypted Data") and as a clear
copy with the E flag off and the padding removed, the debugging form §7 suggests.
In the clear copy every payload must decode, nothing malformed, in the v2 dialect
(tshark reads v1's 1-octet SA TEK ID lengths as malformed, a known tshark bug:
test_kek_tshark.py).  That is what makes the heartbeat's shape (SEQ, SA of SA TEKs,
SIG) and the GROUP_CLOCK attribute safe for captures: tshark shows the clock as an
IPsec attribute of type 32001, "Private use".  The ACK is sent in the clear as it is.

No namespaces, no root: the datagrams are written to a pcap file directly.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from groupvpn.crypto.ciphers import cbc_decrypt
from groupvpn.gdoi.push import (
    GROUP_CLOCK_ATTRIBUTE,
    KekMaterial,
    PushContent,
    build_heartbeat,
    build_push,
)
from groupvpn.gdoi.push_ack import ACK_EXCHANGE_TYPE, build_ack, derive_ack_key
from groupvpn.gdoi.push_deletes import KEK_PROTOCOL_ID, kek_delete, tek_delete
from groupvpn.gdoi.push_sig import RsaPushSigner, sig_hash
from groupvpn.server.kek import KEK_CIPHERS, SIG_HASHES, KekPolicy, new_kek
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec, new_tek
from groupvpn.wire.constants import HEADER_LENGTH, Doi, ExchangeType, PayloadType
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import GdoiId, GdoiSaPayload, KeyDownloadPayload, SaTekPayload
from groupvpn.wire.gdoi_numbers import TekProtocol
from groupvpn.wire.message import decode_payloads, pull_header
from groupvpn.wire.payloads import DecodeContext, DeletePayload, IdPayload
from tests.interop import tshark

pytestmark = pytest.mark.interop

SERVER, MEMBER = "192.0.2.1", "198.51.100.11"
FIELDS = (
    "isakmp.exchangetype",
    "isakmp.flag_e",
    "isakmp.typepayload",
    "isakmp.seq.seq",
    "isakmp.sak.spi",
    "isakmp.sat.spi",
    "isakmp.ipsec.attr.type",
    "isakmp.kd.payload.type",
    "isakmp.kd.payload.spi",
    "isakmp.delete.spi",
    "isakmp.delete.protoid",
    "isakmp.spisize",
    "_ws.malformed",
)


def _ipv4_udp(payload: bytes, src: str, dst: str, port: int = 848) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
        IPv4Address(src).packed, IPv4Address(dst).packed,
    )  # fmt: skip
    words = sum(struct.unpack("!10H", header))
    words = (words & 0xFFFF) + (words >> 16)
    checksum = ~(words + (words >> 16)) & 0xFFFF
    return header[:10] + struct.pack("!H", checksum) + header[12:] + udp


def _write_pcap(path: Path, packets: list[bytes]) -> None:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 228)  # raw IPv4
    for second, packet in enumerate(packets):
        out += struct.pack("<IIII", second, 0, len(packet), len(packet)) + packet
    path.write_bytes(out)


def _clear_copy(datagram: bytes, kek: KekMaterial, dialect: Dialect = V2) -> bytes:
    """The push with E off and its plaintext payloads, padding removed."""
    header = pull_header(datagram)
    plaintext = cbc_decrypt(kek.cipher, kek.key, kek.iv, datagram[HEADER_LENGTH:])
    chain = decode_payloads(
        plaintext, header.next_payload, DecodeContext(ExchangeType.GROUPKEY_PUSH, dialect),
        allow_trailing=True,
    )  # fmt: skip
    body = b"".join(chain.raw)
    clear = bytearray(datagram[:HEADER_LENGTH])
    clear[19] = 0  # flags
    clear[24:28] = (HEADER_LENGTH + len(body)).to_bytes(4, "big")
    return bytes(clear) + body


@pytest.fixture(name="pcap")
def pcap_fixture(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    tshark.require_tshark()
    private = rsa.generate_private_key(65537, 2048)
    public_der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    signer, spec = RsaPushSigner(private), sig_hash(3)
    policy = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha-256"])
    old, new = new_kek(policy, 0.0, set()), new_kek(policy, 0.0, set())
    material = KekMaterial.named(old.spi, "aes-128-cbc", old.key, old.iv)
    group_policy = GroupPolicySpec(
        "p1", IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0,
        ESP_CIPHERS["aes-256-cbc"], ESP_INTEGRITY["hmac-sha-256-128"], 3600,
    )  # fmt: skip
    teks = [new_tek(group_policy, 0.0, set()) for _ in range(2)]
    sats = tuple(
        SaTekPayload(TekProtocol.IPSEC_ESP, t.sa_tek(100.0, address_preservation=True))
        for t in teks
    )
    # A v2 rekey that deletes an old TEK, rolls the KEK over and brings new TEKs.
    # (tshark stops at a GAP, gdoi-wire.md §7, so this SA has none.)
    sak = new.sa_kek(100.0, GdoiId.ipv4(SERVER, 848), GdoiId.ipv4(MEMBER, 848), 2048)
    rekey = PushContent(
        7,
        sa=GdoiSaPayload(Doi.GDOI, 0, kek=sak, teks=sats),
        key_download=KeyDownloadPayload(
            (new.key_packet(public_der), *(t.key_packet() for t in teks))
        ),
        deletes=(DeletePayload(Doi.GDOI, TekProtocol.IPSEC_ESP, 4, (b"\x00\x00\x12\x34",)),),
        group_clock=123_456,
    )
    push = build_push(rekey, material, signer, spec, dialect=V2)
    heartbeat = build_heartbeat(8, sats, 123_789, material, signer, spec, dialect=V2)
    ack_key = derive_ack_key(spec, b"\x01" * 32, bytes(range(16)))
    ack = build_ack(old.spi, 7, IdPayload.ipv4(MEMBER), ack_key)
    sent = {
        "push": push,
        "push-clear": _clear_copy(push, material),
        "heartbeat-clear": _clear_copy(heartbeat, material),
        "ack": ack,
    }
    path = tmp_path / "push.pcap"
    packets = [_ipv4_udp(d, MEMBER if n == "ack" else SERVER, SERVER if n == "ack" else MEMBER)
               for n, d in sent.items()]  # fmt: skip
    _write_pcap(path, packets)
    return path, {"old": old.spi, "new": new.spi, **{f"tek{i}": t.spi for i, t in enumerate(teks)}}


def _rows(path: Path) -> list[tshark.Row]:
    return tshark.decode(path, ports=(848,), fields=FIELDS)


def test_tshark_finds_nothing_malformed(pcap: tuple[Path, dict[str, bytes]]):
    path, _ = pcap
    assert tshark.malformed_frames(path, ports=(848,)) == [], tshark.decode_verbose(
        path, ports=(848,)
    )


def test_the_push_as_sent_is_an_encrypted_exchange_33(pcap: tuple[Path, dict[str, bytes]]):
    path, _ = pcap
    push = _rows(path)[0]
    assert push["isakmp.exchangetype"] == ["33"]
    assert push["isakmp.flag_e"][0] in ("1", "True", "true")
    assert "isakmp.seq.seq" not in push


def test_tshark_reads_the_clear_rekey(pcap: tuple[Path, dict[str, bytes]]):
    path, spis = pcap
    rekey = _rows(path)[1]
    # tshark lists the SA TEKs nested in the SA among the payload types (not the SA KEK).
    assert [int(t) for t in rekey["isakmp.typepayload"]] == [
        PayloadType.SEQ, PayloadType.DELETE, PayloadType.SA, PayloadType.SA_TEK,
        PayloadType.SA_TEK, PayloadType.KD, PayloadType.SIG,
    ]  # fmt: skip
    assert rekey["isakmp.seq.seq"] == ["7"]
    assert rekey["isakmp.delete.spi"] == ["00001234"]
    assert rekey["isakmp.sak.spi"] == [spis["new"].hex()]
    assert rekey["isakmp.sat.spi"] == [spis["tek0"].hex(), spis["tek1"].hex()]
    assert rekey["isakmp.kd.payload.type"] == ["2", "1", "1"]
    assert rekey["isakmp.kd.payload.spi"][0] == spis["new"].hex()
    assert rekey["isakmp.ipsec.attr.type"].count(str(GROUP_CLOCK_ATTRIBUTE)) == 2


def test_tshark_reads_the_clear_heartbeat(pcap: tuple[Path, dict[str, bytes]]):
    path, spis = pcap
    heartbeat = _rows(path)[2]
    assert [int(t) for t in heartbeat["isakmp.typepayload"]] == [
        PayloadType.SEQ, PayloadType.SA, PayloadType.SA_TEK, PayloadType.SA_TEK, PayloadType.SIG,
    ]  # fmt: skip
    assert heartbeat["isakmp.seq.seq"] == ["8"]
    assert heartbeat["isakmp.sat.spi"] == [spis["tek0"].hex(), spis["tek1"].hex()]
    assert heartbeat["isakmp.ipsec.attr.type"].count(str(GROUP_CLOCK_ATTRIBUTE)) == 2
    assert "isakmp.kd.payload.type" not in heartbeat


def test_tshark_reads_the_ack(pcap: tuple[Path, dict[str, bytes]]):
    path, _ = pcap
    ack = _rows(path)[3]
    assert ack["isakmp.exchangetype"] == [str(ACK_EXCHANGE_TYPE)]
    assert [int(t) for t in ack["isakmp.typepayload"]] == [
        PayloadType.HASH, PayloadType.SEQ, PayloadType.ID,
    ]  # fmt: skip
    assert ack["isakmp.seq.seq"] == ["7"]


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_tshark_reads_an_eviction_and_its_tek_deletes(tmp_path: Path, dialect: Dialect):
    """A member removal's two pushes: SEQ, D(KEK), SIG then SEQ, D(TEKs), SIG (RFC 3547 §4.6).

    No SA TEK in them, so the v1 dialect decodes clean as well.
    """
    tshark.require_tshark()
    private = rsa.generate_private_key(65537, 2048)
    signer, spec = RsaPushSigner(private), sig_hash(3)
    policy = KekPolicy(KEK_CIPHERS["aes-128-cbc"], SIG_HASHES["sha-256"])
    old, new = new_kek(policy, 0.0, set()), new_kek(policy, 0.0, set())
    under_old = KekMaterial.named(old.spi, "aes-128-cbc", old.key, old.iv)
    under_new = KekMaterial.named(new.spi, "aes-128-cbc", new.key, new.iv)
    evict = build_push(PushContent(9, deletes=(kek_delete(old.spi),)), under_old, signer, spec,
                       dialect=dialect)  # fmt: skip
    stale = (b"\x00\x00\x12\x34", b"\x00\x00\x56\x78")
    cleanup = build_push(PushContent(10, deletes=(tek_delete(stale),)), under_new, signer, spec,
                         dialect=dialect)  # fmt: skip
    clear = [_clear_copy(evict, under_old, dialect), _clear_copy(cleanup, under_new, dialect)]
    path = tmp_path / "eviction.pcap"
    _write_pcap(path, [_ipv4_udp(d, SERVER, MEMBER) for d in clear])
    assert tshark.malformed_frames(path, ports=(848,)) == [], tshark.decode_verbose(
        path, ports=(848,)
    )
    first, second = _rows(path)
    for row in (first, second):
        assert [int(t) for t in row["isakmp.typepayload"]] == [
            PayloadType.SEQ, PayloadType.DELETE, PayloadType.SIG,
        ]  # fmt: skip
    assert first["isakmp.delete.protoid"] == [str(KEK_PROTOCOL_ID)]
    assert first["isakmp.spisize"] == ["16"]
    assert first["isakmp.delete.spi"] == [old.spi.hex()]
    assert second["isakmp.delete.protoid"] == ["1"] and second["isakmp.spisize"] == ["4"]
    assert second["isakmp.delete.spi"] == ["00001234", "00005678"]
