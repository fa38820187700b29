"""A re-registration storm: N members registering again at once, until all are back.

Method.  The real ``groupvpn server`` (``benchmarks.registration``: N IKE gateways,
one group with unicast rekeys, DH group 2) runs pinned to one CPU.  This process,
on the other CPU, runs N real ``MemberCore`` members, each on its own UDP socket,
as a group does when all of its members learn at the same moment that they must
register again (the key server started afresh, an eviction deleted the KEK):

* each member waits a random part of ``--spread`` seconds first, as the member
  daemon does (``REREGISTRATION_SPREAD``, 10 s; ``--spread 0`` is everybody in the
  same instant), then registers: Main Mode and GROUPKEY-PULL, with the member
  core's own retransmissions and its jittered exponential backoff after a
  failure;
* measured: the time from the storm's start until the last member is registered
  (compared with 2 x activation-time-delay = 30 s, the issue's target), the CPU
  time the server used meanwhile (what it would need on a core of its own: on a
  2-CPU machine the simulated members, which cost more per registration than the
  server, bound the wall time), how many
  attempts failed and were retried by backoff, the members the server lists at the
  end (must be N), and the server's peak RSS (VmHWM) against its RSS before.

Run from the repository root (root is not needed):

    .venv/bin/python -m benchmarks.registration_storm [--members 1000 8000] [--spread 10]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from benchmarks.registration import (
    MemberFleet,
    on_fleet_cpu,
    running_key_server,
)
from groupvpn.runtime import loop as event_loop

GROUP = 2
#: The default activation-time-delay: the target is all members back within twice it.
ACTIVATION_TIME_DELAY = 15.0


class StormFleet(MemberFleet):
    """Every member starts on its own, at a random moment of the spread."""

    def __init__(self, members: int, port: int, spread: float, seed: int) -> None:
        super().__init__(members, GROUP, port, window=members)
        self._spread = spread
        self._rng = random.Random(seed)
        self.done_at: float | None = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        tasks: set[asyncio.Task[None]] = set()

        def start(index: int) -> None:
            task = loop.create_task(self._start_next(index))
            tasks.add(task)  # keep a reference until it has run
            task.add_done_callback(tasks.discard)

        for index in range(self._members):
            loop.call_at(started + self._rng.uniform(0.0, self._spread), start, index)
        self._next = self._members  # nobody is started by a finished one
        await self._done.wait()
        self.done_at = loop.time() - started


def run_once(members: int, spread: float, port: int) -> None:
    with running_key_server("groupvpn-storm-", members, GROUP, port) as server:
        baseline = server.rss_kib("VmRSS")
        cpu_before = server.cpu_seconds()
        fleet = StormFleet(members, port, spread, seed=members)
        with on_fleet_cpu():
            start = time.perf_counter()
            event_loop.run(fleet.run())
            seconds = time.perf_counter() - start
        peak = server.rss_kib("VmHWM")
        server_cpu = server.cpu_seconds() - cpu_before
        registered = server.registered_members()
    target = 2 * ACTIVATION_TIME_DELAY
    print(f"| {members} | {spread:g} | {seconds:.1f} | {'met' if seconds <= target else 'not met'} "
          f"| {server_cpu:.1f} | {fleet.failures} | {registered} "
          f"| {(peak - baseline) / 1024:.1f} |",
          flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--spread", type=float, nargs="+", default=[10.0])
    parser.add_argument("--port", type=int, default=18851)
    args = parser.parse_args()
    print(
        "| members | spread s | all back after s | within 2 x ATD (30 s) | server CPU s "
        "| failed attempts (retried) | registered at server | server peak RSS growth MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for members in args.members:
        for spread in args.spread:
            run_once(members, spread, args.port)


if __name__ == "__main__":
    main()
