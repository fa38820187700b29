"""ESP encapsulation and decapsulation per packet, against the crypto-only floor.

Method: one :class:`EspSa` encapsulates ``--count`` inner IPv4 packets of 64 and 1400
octets (anti-replay on, so every packet carries the group-time header), and another
decapsulates them, for aes-128-cbc/hmac-sha1-96 and aes-128-gcm.  The floor is the
cryptography alone on the same sizes and the same long-lived objects: for CBC, one
``update`` of the padded plaintext on a kept encryptor plus one copied HMAC (encap),
or the HMAC check plus one ``update`` on a kept decryptor (decap); for GCM one
``AESGCM.encrypt`` or ``decrypt``.  Everything else (headers, padding, the time
stamp, checks, counters) is the codec's overhead.  Both are measured in the same
round, interleaved, and the ratio codec / floor is reported as the median over
``--rounds``, so a noisy shared machine matters less.  No sockets, no TUN: this is
the per-packet CPU cost of the codec only (``benchmarks/dataplane.py`` measures the
whole member's engine; docs/dataplane.md, "Performance", has the results).

    .venv/bin/python -m benchmarks.dataplane_crypto [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import hmac as stdlib_hmac
import os
import statistics
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from groupvpn.dataplane.antireplay import TimeWindow
from groupvpn.dataplane.esp import EspSa, ipv4_checksum
from groupvpn.dataplane.suites import EspSuite, esp_suite
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId

SUITES = [("aes-128-cbc", "hmac-sha1-96"), ("aes-128-gcm", None)]
SIZES = [64, 1400]
GROUP_TIME = 1_790_000_000.0
SPI = b"\x00\x00\x10\x01"


def inner_packet(size: int) -> bytes:
    header = bytearray(bytes.fromhex("4500000000004000401100000a0101010a020202"))
    header[2:4] = size.to_bytes(2, "big")
    header[10:12] = ipv4_checksum(bytes(header))
    return bytes(header) + os.urandom(size - 20)


def make_sa(suite: EspSuite, key: bytes, auth: bytes) -> EspSa:
    return EspSa(
        suite, SPI, key, auth, window=TimeWindow.seconds(100), sender_id=SenderId(1, SID_BITS)
    )


def per_packet(run: Callable[[], object], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        run()
    return (time.perf_counter() - start) / count


def codec_seconds(suite: EspSuite, size: int, count: int) -> tuple[float, float]:
    key, auth = os.urandom(suite.keying_material_length), os.urandom(suite.integrity_key_length)
    sender, receiver = make_sa(suite, key, auth), make_sa(suite, key, auth)
    inner = inner_packet(size)
    encapsulate = sender.encapsulate
    # Timed without keeping what it makes, as a member sends each packet and drops it:
    # keeping count packets would time the allocation of fresh memory as well.
    start = time.perf_counter()
    for _ in range(count):
        encapsulate(inner, GROUP_TIME)
    encap = (time.perf_counter() - start) / count
    sealed = [
        packet for _ in range(count) if isinstance(packet := encapsulate(inner, GROUP_TIME), bytes)
    ]
    if len(sealed) != count:
        raise SystemExit(f"{suite.name}: encapsulation refused a packet")
    decapsulate = receiver.decapsulate
    start = time.perf_counter()
    for packet in sealed:
        decapsulate(packet, GROUP_TIME)
    decap = (time.perf_counter() - start) / count
    if decapsulate(sealed[-1], GROUP_TIME) != inner or receiver.counters.total_dropped:
        raise SystemExit(f"{suite.name}: decapsulation did not give the inner packet back")
    return encap, decap


def floor_seconds(suite: EspSuite, size: int, count: int) -> tuple[float, float]:
    """The cipher and MAC calls alone, on objects kept across packets like the codec's."""
    payload_length = 8 + size + 2  # time header, inner packet, pad length, next header
    padded = os.urandom(payload_length + (-payload_length % suite.alignment))
    key, auth = os.urandom(suite.keying_material_length), os.urandom(suite.integrity_key_length)
    if suite.is_aead:
        aead = AESGCM(key[:16])
        nonce, aad = os.urandom(12), os.urandom(8)
        sealed = aead.encrypt(nonce, padded, aad)
        return (
            per_packet(lambda: aead.encrypt(nonce, padded, aad), count),
            per_packet(lambda: aead.decrypt(nonce, sealed, aad), count),
        )
    algorithm = suite.cipher_algorithm(key)
    encryptor = Cipher(algorithm, modes.CBC(bytes(16))).encryptor()
    decryptor = Cipher(algorithm, modes.CBC(bytes(16))).decryptor()
    template = hmac.HMAC(auth, suite.hash_algorithm)
    block = os.urandom(16) + padded  # the IV block and the plaintext
    signed = os.urandom(8) + block

    def encrypt() -> bytes:
        mac = template.copy()
        mac.update(signed)
        encryptor.update(block)
        return mac.finalize()

    icv = template.copy()
    icv.update(signed)
    expected = icv.finalize()[:12]

    def decrypt() -> bytes:
        mac = template.copy()
        mac.update(signed)
        stdlib_hmac.compare_digest(mac.finalize()[:12], expected)
        return decryptor.update(block)

    return per_packet(encrypt, count), per_packet(decrypt, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="packets per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; medians are reported")
    args = parser.parse_args()
    print(
        f"{'suite':<26} {'size':>5} {'encap µs':>9} {'floor µs':>9} {'ratio':>6} "
        f"{'decap µs':>9} {'floor µs':>9} {'ratio':>6} {'encap pkt/s':>12}"
    )
    for cipher, integrity in SUITES:
        suite = esp_suite(cipher, integrity)
        for size in SIZES:
            rows: list[tuple[float, float, float, float]] = []
            for _ in range(args.rounds):
                encap, decap = codec_seconds(suite, size, args.count)
                floor_encap, floor_decap = floor_seconds(suite, size, args.count)
                rows.append((encap, floor_encap, decap, floor_decap))
            encap = statistics.median(r[0] for r in rows)
            floor_encap = statistics.median(r[1] for r in rows)
            decap = statistics.median(r[2] for r in rows)
            floor_decap = statistics.median(r[3] for r in rows)
            encap_ratio = statistics.median(r[0] / r[1] for r in rows)
            decap_ratio = statistics.median(r[2] / r[3] for r in rows)
            print(
                f"{suite.name:<26} {size:>5} {encap * 1e6:>9.2f} {floor_encap * 1e6:>9.2f} "
                f"{encap_ratio:>6.2f} {decap * 1e6:>9.2f} {floor_decap * 1e6:>9.2f} "
                f"{decap_ratio:>6.2f} {1 / encap:>12,.0f}"
            )


if __name__ == "__main__":
    main()
