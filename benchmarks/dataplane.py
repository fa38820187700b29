"""Packets per second and Gbit/s through one member's data-plane engine, against the floor.

Method: two :class:`~groupvpn.dataplane.engine.DataPlane` members hold the same group
key (anti-replay on, so every packet carries the group-time header) under
``--policies`` dynamic policies, the packet matching the last one (the whole linear
scan).  The member under test sends ``--count`` inner UDP packets of 64 and 1400
octets (``outbound``: policy lookup, TTL, ESP) and receives as many ESP packets its
peer sent (``inbound``: SPI lookup, ESP, the inner packet against the key's
selectors), for aes-128-cbc/hmac-sha1-96 and aes-128-gcm.  A packet crossing the
member costs one direction (``out`` or ``in``); ``both`` is a packet each way.

The floor is the cryptography alone per packet, on kept objects
(``benchmarks/dataplane_crypto.py``'s ``floor_seconds``): encrypt for outbound,
decrypt for inbound.  Each round measures the engine and the floor back to back; the
tables show medians over ``--rounds`` and the median per-round ratio engine / floor,
so a noisy shared machine matters less.  The ESP codec alone (``EspSa`` encapsulate
and decapsulate, ``codec_seconds`` of the same module) is measured in each round too:
engine - codec is what the engine itself costs (parsing, lookups, TTL, results).
Gbit/s counts the inner packets' octets.  No sockets, no TUN: the syscalls a real
member adds are measured in ../shared/reference/python-performance.md §2.

    .venv/bin/python -m benchmarks.dataplane [--count N] [--rounds R] [--policies P]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from benchmarks.dataplane_crypto import (
    GROUP_TIME,
    SIZES,
    SUITES,
    codec_seconds,
    floor_seconds,
    inner_packet,
)
from groupvpn.dataplane.engine import DataPlane, ToTun, ToWan
from groupvpn.dataplane.suites import EspSuite, esp_suite
from groupvpn.gdoi.sender_ids import SID_BITS, SenderId
from groupvpn.member.keyring import PolicySelectors
from groupvpn.member.keys import GroupSa
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

MEMBER = IPv4Address("192.0.2.1")
PEER = IPv4Address("192.0.2.2")
#: What benchmarks.dataplane_crypto.inner_packet sends: 10.1.1.1 -> 10.2.2.2, UDP.
POLICY = PolicySelectors(IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0)


def group_sa(suite: EspSuite, policy: PolicySelectors, spi: int) -> GroupSa:
    """A group key for ``policy`` in ``suite``, as the member's keyring would hold it
    (AES-GCM with no integrity algorithm; its sender ID is the member's: see members())."""
    cipher = ESP_CIPHERS[suite.cipher]
    integrity = None if suite.is_aead else ESP_INTEGRITY[suite.integrity or ""]
    return GroupSa(
        "vpn1", 1, spi.to_bytes(4, "big"), policy.source, policy.destination,
        policy.source_port, policy.destination_port, policy.protocol, cipher, integrity,
        float("inf"), os.urandom(suite.keying_material_length),
        os.urandom(suite.integrity_key_length), 100,
    )  # fmt: skip


def members(suite: EspSuite, policies: int) -> tuple[DataPlane, DataPlane]:
    """The member under test and its peer: ``policies - 1`` policies miss, the last matches."""
    misses = [
        PolicySelectors(IPv4Network("10.1.0.0/16"), IPv4Network(f"10.{100 + n}.0.0/16"), 0, 0, 0)
        for n in range(policies - 1)
    ]
    keys = [group_sa(suite, policy, 0x1000 + n) for n, policy in enumerate([*misses, POLICY])]
    planes = DataPlane(MEMBER), DataPlane(PEER)
    for sid, plane in enumerate(planes):
        # Each member encrypts AES-GCM with its own sender ID from the key server.
        own = [replace(key, sender_id=SenderId(sid, SID_BITS)) for key in keys]
        plane.install_keys(
            "vpn1", 1, [*misses, POLICY],
            {POLICY: own[-1], **dict(zip(misses, own, strict=False))},
            own, lambda now: GROUP_TIME + now,
        )  # fmt: skip
    return planes


def engine_seconds(suite: EspSuite, size: int, count: int, policies: int) -> tuple[float, float]:
    """(outbound, inbound) seconds per packet through the member under test."""
    member, peer = members(suite, policies)
    inner = inner_packet(size)
    now = 1.0
    # One packet more than measured, for the check below: a copy would be a replay.
    arriving = [out.packet for _ in range(count + 1) for out in peer.outbound(inner, now)]
    last = arriving.pop()
    outbound, inbound = member.outbound, member.inbound
    start = time.perf_counter()
    for _ in range(count):
        outbound(inner, now)
    sent = (time.perf_counter() - start) / count
    start = time.perf_counter()
    for packet in arriving:
        inbound(packet, now)
    received = (time.perf_counter() - start) / count
    out, back = member.outbound(inner, now), member.inbound(last, now)
    if (
        len(arriving) != count
        or not isinstance(out[0], ToWan)
        or not isinstance(back[0], ToTun)
        or member.counters.packets_in != count + 1
        or member.counters.drops.total_dropped + member.counters.drops.total_refused
    ):
        raise SystemExit(f"{suite.name}: the engine did not pass every packet")
    return sent, received


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="packets per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; medians are reported")
    parser.add_argument("--policies", type=int, default=2, help="dynamic policies to scan")
    args = parser.parse_args()
    print(
        f"{'suite':<26} {'size':>5} {'dir':>4} {'µs/pkt':>7} {'codec µs':>9} {'floor µs':>9} "
        f"{'ratio':>6} {'pkt/s':>10} {'Gbit/s':>7}"
    )
    for cipher, integrity in SUITES:
        suite = esp_suite(cipher, integrity)
        for size in SIZES:
            # Per round: (engine, codec, floor) outbound, then the same inbound.
            rows: list[tuple[float, float, float, float, float, float]] = []
            for _ in range(args.rounds):
                out, back = engine_seconds(suite, size, args.count, args.policies)
                codec_out, codec_back = codec_seconds(suite, size, args.count)
                floor_out, floor_back = floor_seconds(suite, size, args.count)
                rows.append((out, codec_out, floor_out, back, codec_back, floor_back))
            directions = (
                ("out", lambda r: r[:3]),
                ("in", lambda r: r[3:]),
                ("both", lambda r: (r[0] + r[3], r[1] + r[4], r[2] + r[5])),
            )
            for direction, pick in directions:
                picked = [pick(r) for r in rows]
                seconds = statistics.median(p[0] for p in picked)
                codec = statistics.median(p[1] for p in picked)
                floor = statistics.median(p[2] for p in picked)
                ratio = statistics.median(p[0] / p[2] for p in picked)
                print(
                    f"{suite.name:<26} {size:>5} {direction:>4} {seconds * 1e6:>7.2f} "
                    f"{codec * 1e6:>9.2f} {floor * 1e6:>9.2f} {ratio:>6.2f} "
                    f"{1 / seconds:>10,.0f} {size * 8 / seconds / 1e9:>7.3f}"
                )


if __name__ == "__main__":
    main()
