"""What each kind of hostile datagram costs a Phase 1 responder, against a real exchange.

Method: one responder :class:`IkeEndpoint` (in memory, fake clock, no sockets)
takes ``--count`` datagrams of each kind and the time per datagram is the
median of ``--rounds`` rounds.  The kinds are: random octets; an MM1 from an
address with no IKE gateway; an MM1 from a configured gateway (answered with
MM2; nothing is kept); an MM3 under a forged responder cookie; and, as
the yardstick, the responder's whole share of a genuine Main Mode exchange
(MM1, MM3, MM5 in; MM2, MM4, MM6 out; only the responder's calls timed) in
DH group 2 and 14.  The report gives
each cost and how many of them fit in the time of one genuine exchange.

    .venv/bin/python -m benchmarks.phase1_flood [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from groupvpn.ike.endpoint import IkeEndpoint
from tests.ikepair import INITIATOR_IP, PORT, RESPONDER_IP, make_pair, peer, proposal

SOURCE = (INITIATOR_IP, PORT)


def _exchange(group: int) -> list[bytes]:
    """The initiator's messages of one complete exchange (MM1, MM3, MM5)."""
    suite = proposal("aes-128-cbc", "sha1", group)
    pair = make_pair(peer(RESPONDER_IP, proposals=(suite,)), peer(INITIATOR_IP, proposals=(suite,)))
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    return [data for sender, data in pair.wire if sender == "i"]


def _responder(group: int = 2) -> IkeEndpoint:
    suite = proposal("aes-128-cbc", "sha1", group)
    return make_pair(
        peer(RESPONDER_IP, proposals=(suite,)), peer(INITIATOR_IP, proposals=(suite,))
    ).responder


def _per_datagram(kind: Callable[[int], list[tuple[bytes, tuple[str, int]]]], count: int) -> float:
    responder = _responder()
    datagrams = kind(count)
    start = time.perf_counter()
    for data, source in datagrams:
        responder.receive_datagram(data, source, 0.0)
        responder.datagrams_to_send()
        while responder.next_event() is not None:
            pass
    return (time.perf_counter() - start) / count


def garbage(count: int) -> list[tuple[bytes, tuple[str, int]]]:
    return [(os.urandom(100), SOURCE) for _ in range(count)]


def stranger_mm1(count: int) -> list[tuple[bytes, tuple[str, int]]]:
    mm1 = _exchange(2)[0]
    return [(os.urandom(8) + mm1[8:], ("203.0.113.9", PORT)) for _ in range(count)]


def gateway_mm1(count: int) -> list[tuple[bytes, tuple[str, int]]]:
    mm1 = _exchange(2)[0]
    return [(os.urandom(8) + mm1[8:], SOURCE) for _ in range(count)]


def forged_mm3(count: int) -> list[tuple[bytes, tuple[str, int]]]:
    mm3 = _exchange(2)[1]
    return [(os.urandom(16) + mm3[16:], SOURCE) for _ in range(count)]


def genuine_seconds(group: int, count: int) -> float:
    """The responder's share of ``count`` live exchanges: only its receive calls are timed."""
    suite = proposal("aes-128-cbc", "sha1", group)
    spent = 0.0
    done = 0
    for _ in range(count):
        pair = make_pair(
            peer(RESPONDER_IP, proposals=(suite,)), peer(INITIATOR_IP, proposals=(suite,))
        )
        pair.initiator.initiate("gw", 0.0)
        while outgoing := pair.initiator.datagrams_to_send():
            for data, _ in outgoing:
                start = time.perf_counter()
                pair.responder.receive_datagram(data, SOURCE, 0.0)
                answers = pair.responder.datagrams_to_send()
                spent += time.perf_counter() - start
                for answer, _ in answers:
                    pair.initiator.receive_datagram(answer, (RESPONDER_IP, PORT), 0.0)
        done += len(pair.responder.established())
    if done != count:
        raise SystemExit(f"only {done} of {count} exchanges completed")
    return spent / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = {
        "random octets": garbage,
        "MM1, no gateway for its address": stranger_mm1,
        "MM1 from a gateway (MM2, nothing kept)": gateway_mm1,
        "MM3 with a forged cookie": forged_mm3,
    }
    costs = {
        name: statistics.median(_per_datagram(kind, args.count) for _ in range(args.rounds))
        for name, kind in kinds.items()
    }
    exchanges = max(10, args.count // 100)
    genuine = {
        group: statistics.median(genuine_seconds(group, exchanges) for _ in range(args.rounds))
        for group in (2, 14)
    }
    print(f"{'datagram':40} {'us each':>8} {'per group-2 exchange':>21} {'per group-14':>13}")
    for name, cost in costs.items():
        print(f"{name:40} {cost * 1e6:8.1f} {genuine[2] / cost:21.0f} {genuine[14] / cost:13.0f}")
    for group, seconds in genuine.items():
        print(f"{f'genuine exchange, responder side, group {group}':40} {seconds * 1e6:8.1f}")


if __name__ == "__main__":
    main()
