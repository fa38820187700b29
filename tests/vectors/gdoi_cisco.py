"""Cisco GDOI reference implementation traces, as reproduced in gdoi-wire.md §4 and §9.

Source: the Cisco GDOI reference implementation (GitHub ``stv0g/gdoid``), debug
traces ``samples/loopback/sample_output_ks`` (KS 127.0.0.2, GM 127.0.0.1, group
ID_KEY_ID 1234, no KEK, two ESP TEKs) and ``samples/three-clients/sample_output_ks``
(KS 10.0.224.44, KEK to 239.10.1.1:848, KEK SPI "abcdefgh01234567").  The traces
predate RFC 6407, so everything here is the ``v1`` dialect (1-octet SA TEK ID
lengths, POP fields after the SA KEK SPI).  Values were copied from gdoi-wire.md;
the tests never read that file.  The loopback trace's phase 1 messages live in
``cisco_loopback``.
"""

from __future__ import annotations


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# --- loopback trace, PULL message 2 GDOI SA (gdoi-wire.md §4.1) -----------------------
# The whole SA payload, generic header included (Next Payload 0): no KEK, two SA TEKs
# with 1-octet ID lengths.  Ports are as recorded (4 and 2; see gdoi-wire.md §4.1).

PULL2_SA = _hex(
    """
    00000066 00000002 00000000 0010 0000
    1000002b 01 00 01 0004 04 ac13892a 01 0004 04 efc00101 03 1122aabb
             80040001 80050002 80010001 80020e10
    0000002b 01 00 01 0002 04 ac13892a 01 0002 04 efc00102 03 3344ccdd
             80040001 80050002 80010001 80020e10
    """
)

# --- three-clients trace, SA KEK (gdoi-wire.md §4.2) ----------------------------------
# Generic header included; Next Payload 16 because an SA TEK follows it in the SA.

SAK = _hex(
    """
    10 00 0035 11 01 0350 04 0a00e02c 01 0350 04 ef0a0101
    61626364656667683031323334353637 00000000
    80020002 80050002 80060001
    """
)

KEK_SPI = b"abcdefgh01234567"

# --- three-clients trace, member 1 PULL 2 / PULL 4 plaintexts (gdoi-wire.md §9) --------
# Payloads after the ISAKMP header, decrypted, including the zero padding.  The first
# payload of both is HASH (8).

PULL2_PLAINTEXT = _hex(
    """
    0a000018 ab8df0ff 90e2c084 0bb2bd08 e1b1a328 8ec714b1 01000014 29a5c670
    d1ed0e52 e63f4a37 05f04e4f 0000009b 00000002 00000000 000f0000 10000035
    11010350 040a00e0 2c010350 04ef0a01 01616263 64656667 68303132 33343536
    37000000 00800200 02800500 02800600 01100000 2b010001 0000040a 00e02501
    000004ef 01010103 1122aabb 80040002 80050002 80010001 8002003c 0000002b
    01000100 00040a00 e0280100 0004ef01 01020333 44ccdd80 04000280 05000280
    01000180 02003c00
    """
)
PULL2_PADDING = 1

#: Contains the KD of gdoi-wire.md §4.5: one KEK and two TEK key packets.
PULL4_PLAINTEXT = _hex(
    """
    12000018 a97be846 efffb19c 1d48ebc1 f6341084 e6e1ec15 11000008 00000000
    00000161 00030000 020000df 10616263 64656667 68303132 33343536 37000100
    20495649 56495649 56414243 44454647 48494a4b 4c4d4e4f 50515253 54555657
    58000200 a230819f 300d0609 2a864886 f70d0101 01050003 818d0030 81890281
    8100be25 5ebdc6e5 fa2d7c56 e0345ae0 32a256c1 5a47edfc d0e005a2 9a69cdfd
    627bb80c 67f6fa8f 1d54835e 944df0d7 3e0152d0 08a9c238 c9f3cea0 07d98e0d
    08eee41c b54d9a02 ba92c47b d2bf296d 924d3209 23b53a5c 9aa9b1a6 7fdb3705
    7bb08766 500d8a32 ffade1dc e8ba4d05 c909feef e1201421 5bb76d4c e7abea1c
    020f0203 01000101 00003d04 1122aabb 00010018 41424344 45464748 494a4b4c
    4d4e4f50 51525354 55565758 00020014 31323334 35363738 39303132 33343536
    37383930 0100003d 043344cc dd000100 18464544 43424131 314c4b4a 49484732
    32525150 4f4e4d33 33000200 14303132 33343536 37383930 31323334 35363738
    39000000 00000000
    """
)
PULL4_PADDING = 7

KEK_IV = b"IVIVIVIV"
KEK_KEY = b"ABCDEFGHIJKLMNOPQRSTUVWX"
#: First octets of the GCKS RSA-1024 public key (DER SubjectPublicKeyInfo, 162 octets).
KEK_SIG_KEY_PREFIX = _hex("30819f300d06092a864886f70d010101050003818d00308189028181")
TEK1_KEYS = (b"ABCDEFGHIJKLMNOPQRSTUVWX", b"12345678901234567890")
TEK2_KEYS = (b"FEDCBA11LKJIHG22RQPONM33", b"01234567890123456789")

# --- single payloads from the loopback trace (gdoi-wire.md §1.9, §1.10, §3.2) -----------
# Generic header included.

#: MM5 identification (Next Payload 8 = HASH): ID_IPV4_ADDR 127.0.0.1, protocol/port 0.
MM5_ID = _hex("0800000c 01 00 0000 7f000001")
#: MM5 INITIAL-CONTACT notify: DOI 1, protocol 1, SPI = both cookies.
MM5_NOTIFY = _hex("0000001c 00000001 01 10 6002 a91b9d5035d8fc4f 272325e695db688b")
#: PULL1 group identity: ID_KEY_ID 1234.
PULL1_GROUP_ID = _hex("0000000c 0b 000000 000004d2")
