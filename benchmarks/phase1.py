"""Phase 1 Main Mode handshakes per second, in one process, against the DH floor.

Method: an initiator and a responder :class:`IkeEndpoint` exchange datagrams in
memory (no sockets, fake clock) for ``--count`` complete Main Mode handshakes
per DH group (3des-cbc/sha1 for groups 1/2, aes-128-cbc/sha1 for 5/14).  The
floor is the modular exponentiation alone: each handshake needs four (each side
computes g^x and g^xy), timed through the same ``DhExchange`` the core uses.  The
Python overhead is handshake time minus that floor; the target is an overhead
below the DH cost for group 14.  Both are measured in the same run, and the
result is reported as a ratio so a noisy, shared machine matters less.

    .venv/bin/python -m benchmarks.phase1 [--count N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time

from groupvpn.crypto.dh import MODP_GROUPS, DhExchange
from tests.ikepair import INITIATOR_IP, RESPONDER_IP, make_pair, peer, proposal

SUITES = {
    1: ("3des-cbc", "sha1"),
    2: ("3des-cbc", "sha1"),
    5: ("aes-128-cbc", "sha1"),
    14: ("aes-128-cbc", "sha1"),
}


def handshake_seconds(group: int, count: int) -> float:
    encryption, hash_name = SUITES[group]
    suite = proposal(encryption, hash_name, group)
    pairs = [
        make_pair(peer(RESPONDER_IP, proposals=(suite,)), peer(INITIATOR_IP, proposals=(suite,)))
        for _ in range(count)
    ]
    start = time.perf_counter()
    for pair in pairs:
        pair.initiator.initiate("gw", 0.0)
        pair.transfer()
    elapsed = time.perf_counter() - start
    done = sum(1 for pair in pairs if pair.initiator.established())
    if done != count:
        raise SystemExit(f"only {done} of {count} handshakes completed for group {group}")
    return elapsed / count


def dh_floor_seconds(group: int, count: int) -> float:
    """The modexps of one handshake alone: each side computes g^x and g^xy."""
    modp = MODP_GROUPS[group]
    peer_value = DhExchange(modp).public_value
    start = time.perf_counter()
    for _ in range(count):
        for _side in range(2):
            DhExchange(modp).shared_secret(peer_value)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=50, help="handshakes per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds; medians are reported")
    args = parser.parse_args()
    print(
        f"{'group':>5} {'handshakes/s':>13} {'ms/handshake':>13} {'DH floor ms':>12} "
        f"{'overhead ms':>12} {'overhead/DH':>12}"
    )
    for group in SUITES:
        totals, floors, ratios = [], [], []
        for _ in range(args.rounds):
            # Interleave the two measurements so both see the same machine load.
            total = handshake_seconds(group, args.count)
            floor = dh_floor_seconds(group, args.count)
            totals.append(total)
            floors.append(floor)
            ratios.append((total - floor) / floor)
        total, floor = statistics.median(totals), statistics.median(floors)
        print(
            f"{group:>5} {1 / total:>13.1f} {total * 1e3:>13.3f} {floor * 1e3:>12.3f} "
            f"{(total - floor) * 1e3:>12.3f} {statistics.median(ratios):>12.2f}"
        )


if __name__ == "__main__":
    main()
