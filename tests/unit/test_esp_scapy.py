"""Our ESP against an independent implementation: scapy's ``SecurityAssociation``.

scapy builds and parses ESP on its own code path (its own padding, trailer, ICV and
tunnel handling; it shares only the primitive ciphers with us), so agreement in both
directions means both sides read RFC 4303, 4106 and 5374 the same way.  scapy is a
test-only dependency.

Tunnel mode: scapy's tunnel header is given the inner addresses, which is what
address preservation puts on the wire.  With anti-replay off the packets are plain
RFC 4303 (next header 4) and interoperate both ways.  With anti-replay on, scapy
decrypts our packets to exactly our group-time header followed by the inner packet.
"""

from __future__ import annotations

import os

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.packet import Raw

from groupvpn.dataplane.antireplay import TimeWindow
from groupvpn.dataplane.drops import Dropped, DropReason
from groupvpn.dataplane.esp import EspSa
from groupvpn.dataplane.suites import EspSuite, esp_suite
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId

SPI = 0x00C0FFEE
SENDER = SenderId(0xC00201, SID_BITS)

#: Our suite names -> scapy's algorithm names.
SCAPY_CIPHERS = {
    "des-cbc": "DES",
    "3des-cbc": "3DES",
    "aes-128-cbc": "AES-CBC",
    "aes-192-cbc": "AES-CBC",
    "aes-256-cbc": "AES-CBC",
    "aes-128-gcm": "AES-GCM",
    "aes-256-gcm": "AES-GCM",
}
SCAPY_INTEGRITY = {
    "hmac-md5-96": "HMAC-MD5-96",
    "hmac-sha1-96": "HMAC-SHA1-96",
    "hmac-sha-256-128": "SHA2-256-128",
}
SUITES = [
    ("aes-128-cbc", "hmac-sha1-96"),
    ("aes-128-gcm", None),
    ("aes-256-gcm", None),
    ("aes-256-cbc", "hmac-sha-256-128"),
    ("aes-192-cbc", "hmac-md5-96"),
    ("3des-cbc", "hmac-sha1-96"),
    ("des-cbc", "hmac-md5-96"),
]


def inner_packets() -> list[bytes]:
    return [
        bytes(IP(src="10.1.1.1", dst="10.2.2.2", ttl=33, tos=0x28, flags="DF") / ICMP()),
        bytes(IP(src="10.1.0.7", dst="239.1.1.1", ttl=8) / UDP(sport=5000, dport=6000) / b"x"),
        bytes(
            IP(src="10.2.9.9", dst="10.1.1.1", id=4242)
            / UDP(sport=53, dport=33000)
            / Raw(os.urandom(1400))
        ),
    ]


def pair(suite: EspSuite, window: TimeWindow, inner: bytes) -> tuple[EspSa, SecurityAssociation]:
    """Our SA and scapy's for the same keys; scapy's tunnel header preserves addresses."""
    key = os.urandom(suite.keying_material_length)
    auth_key = os.urandom(suite.integrity_key_length)
    ours = EspSa(suite, SPI.to_bytes(4, "big"), key, auth_key, window=window, sender_id=SENDER)
    parsed = IP(inner)
    theirs = SecurityAssociation(  # type: ignore[no-untyped-call]
        ESP,
        spi=SPI,
        crypt_algo=SCAPY_CIPHERS[suite.cipher],
        crypt_key=key,  # for AES-GCM scapy, like RFC 4106, takes the salt at the end
        auth_algo=None if suite.integrity is None else SCAPY_INTEGRITY[suite.integrity],
        auth_key=auth_key or None,
        tunnel_header=IP(src=parsed.src, dst=parsed.dst),
    )
    return ours, theirs


# scapy's methods carry no annotations: these three and the constructor above are the
# only calls into them.


def scapy_encrypt(sa: SecurityAssociation, inner: bytes) -> bytes:
    return bytes(sa.encrypt(IP(inner)))  # type: ignore[no-untyped-call]


def scapy_decrypt(sa: SecurityAssociation, packet: bytes) -> bytes:
    return bytes(sa.decrypt(IP(packet)))  # type: ignore[no-untyped-call]


def scapy_trailer(sa: SecurityAssociation, packet: bytes) -> tuple[int, bytes]:
    """The next header and padding scapy finds in our ``packet``."""
    opened = sa.crypt_algo.decrypt(  # type: ignore[no-untyped-call]
        sa, IP(packet)[ESP], sa.crypt_key, sa.crypt_algo.icv_size or sa.auth_algo.icv_size
    )
    return int(opened.nh), bytes(opened.padding)


@pytest.mark.parametrize(("cipher", "integrity"), SUITES)
def test_we_encrypt_scapy_decrypts(cipher: str, integrity: str | None) -> None:
    suite = esp_suite(cipher, integrity)
    for inner in inner_packets():
        ours, theirs = pair(suite, TimeWindow.disabled(), inner)
        for _ in range(3):
            packet = ours.encapsulate(inner, None)
            assert isinstance(packet, bytes)
            esp = IP(packet)
            assert esp.proto == 50 and esp.src == IP(inner).src and esp.dst == IP(inner).dst
            assert scapy_decrypt(theirs, packet) == inner


@pytest.mark.parametrize(("cipher", "integrity"), SUITES)
def test_scapy_encrypts_we_decrypt(cipher: str, integrity: str | None) -> None:
    suite = esp_suite(cipher, integrity)
    for inner in inner_packets():
        ours, theirs = pair(suite, TimeWindow.disabled(), inner)
        for _ in range(3):
            packet = scapy_encrypt(theirs, inner)
            assert ours.decapsulate(packet, None) == inner
        # One of scapy's packets with its last ICV bit flipped is dropped.
        tampered = bytearray(scapy_encrypt(theirs, inner))
        tampered[-1] ^= 1
        assert ours.decapsulate(bytes(tampered), None) == Dropped(DropReason.BAD_ICV)


@pytest.mark.parametrize(("cipher", "integrity"), SUITES[:3])
def test_scapy_sees_the_time_header_then_the_inner_packet(
    cipher: str, integrity: str | None
) -> None:
    suite = esp_suite(cipher, integrity)
    group_time = 1_790_000_000.125  # seconds on the group clock
    for inner in inner_packets():
        ours, theirs = pair(suite, TimeWindow.seconds(100), inner)
        packet = ours.encapsulate(inner, group_time)
        assert isinstance(packet, bytes)
        assert scapy_decrypt(theirs, packet) == (1_790_000_000_125).to_bytes(8, "big") + inner
        # scapy finds our next header, 253, and RFC 4303 padding 1, 2, 3, ...
        next_header, padding = scapy_trailer(theirs, packet)
        assert next_header == 253
        assert padding == bytes(range(1, len(padding) + 1))
