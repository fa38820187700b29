"""Restart to serving: how long a key server with N members of stored state takes to serve.

Method.  For each N, a configuration with N IKE gateways and one group with
unicast rekeys (``benchmarks.registration.server_config``, group 2) is written,
and a state directory holding N registered members is made in this process with
the key server's own code (``GroupKeyServer`` + ``StatePersister``: the same file
the daemon writes, with the group's TEKs, KEK, SEQ and N members with ACK keys).
Then the real ``groupvpn server`` is started on it, pinned to one CPU, and timed
from the spawn to:

* **listening**: its log says ``key server running`` (state read, restored,
  sockets bound, control socket up);
* **first registration**: one more member (a real ``MemberCore`` over loopback
  UDP, started the moment the server listens) completes Main Mode and
  GROUPKEY-PULL; that is when the restarted server serves new members.

After that its ``registered-members`` view must list N + 1 members (the N stored
ones came back).  Three starts per round, medians of ``--rounds`` rounds:

* **restart**: the state and the compiled configuration (``runtime.compiled_config``)
  of the previous start are there, as after a crash or a reboot;
* **empty state**: the same without stored state: the baseline, in the same run,
  so ``ratio`` = restart / empty is what the N stored members themselves cost;
* **after a configuration change**: the state is there but the configuration
  must be parsed and checked again (its 4 x N lines).

Run from the repository root:

    .venv/bin/python -m benchmarks.server_restart [--members 1000 8000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.registration import (
    PSK,
    SERVER_ADDRESS,
    MemberFleet,
    count_members,
    member_address,
    server_config,
)
from groupvpn.crypto.keymat import Phase1Keys
from groupvpn.ike.policy import Phase1Peer
from groupvpn.ike.sa import IkeSa, Mode, Role, SaState
from groupvpn.runtime import loop as event_loop
from groupvpn.runtime.compiled_config import COMPILED_FILE
from groupvpn.runtime.server_persistence import StatePersister
from groupvpn.runtime.server_setup import load_server_setup
from groupvpn.runtime.state import StateDirectory
from groupvpn.server.groups import GroupKeyServer
from groupvpn.wire.dialect import V1
from groupvpn.wire.payloads import IdPayload

GROUP = 2


def make_state(config: Path, state_dir: Path, members: int) -> None:
    """A state directory as a key server leaves it with ``members`` registered."""
    setup = load_server_setup(config)
    directory = StateDirectory(state_dir)
    directory.prepare()
    signing_key, _ = directory.signing_key()
    server = GroupKeyServer(setup.groups, V1, signing_key=signing_key,
                            clock_offset=time.time() - time.monotonic())  # fmt: skip
    now = time.monotonic()
    persister = StatePersister.open(state_dir, server, now)
    keys = Phase1Keys(b"s" * 20, b"d" * 20, b"a" * 20, b"e" * 20, b"k" * 24)
    for index in range(members):
        address = member_address(index + 1)  # member 0 is the one that registers live
        peer = Phase1Peer(f"m{index + 1}", (), "main", (), PSK.encode())
        sa = IkeSa(
            role=Role.RESPONDER, mode=Mode.MAIN, peer=(address, 848), policy=peer,
            initiator_cookie=os.urandom(8), responder_cookie=os.urandom(8),
            state=SaState.ESTABLISHED, local_id=IdPayload.ipv4(SERVER_ADDRESS), created_at=now,
        )  # fmt: skip
        sa = replace(sa, keys=keys)
        server.admit(1, sa, now, SERVER_ADDRESS)
        server.commit(1, sa, now, local_address=SERVER_ADDRESS)
    server.next_sequence(1)
    assert persister.flush()
    persister.store.close()


def start_and_time(workdir: Path, port: int, cpu: int) -> tuple[float, float, int]:
    """(seconds to listening, seconds to the first registration, members listed)."""
    log_path = workdir / "server.log"
    control = workdir / "server.sock"
    control.unlink(missing_ok=True)
    command = [sys.executable, "-m", "groupvpn", "server", "-c", str(workdir / "server.conf"),
               "--port", str(port), "--control", str(control),
               "--state-dir", str(workdir / "state")]  # fmt: skip
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )  # fmt: skip
        try:
            while "key server running" not in log_path.read_text():
                if process.poll() is not None or time.perf_counter() - started > 60:
                    raise SystemExit(f"key server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.002)
            listening = time.perf_counter() - started
            fleet = MemberFleet(1, GROUP, port, window=1)
            event_loop.run(fleet.run())
            registered = time.perf_counter() - started
            if fleet.failures:
                raise SystemExit(f"registration failed: {fleet.failure_reasons}")
            view = subprocess.run(
                [sys.executable, "-m", "groupvpn", "show", "security", "group-vpn", "server",
                 "registered-members", "--json", "--control", str(control)],
                check=True, capture_output=True, text=True, timeout=60,
            ).stdout  # fmt: skip
        finally:
            process.terminate()
            process.wait(10)
    return listening, registered, count_members(json.loads(view))


def run(members: int, rounds: int, port: int) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, fleet_cpu = cpus[0], cpus[-1]
    os.sched_setaffinity(0, {fleet_cpu})
    with tempfile.TemporaryDirectory(prefix="groupvpn-restart-") as tmp:
        workdir = Path(tmp)
        # Gateway m0 is the live member; m1..mN are the stored ones.
        (workdir / "server.conf").write_text(server_config(members + 1, GROUP))
        state = workdir / "state"
        make_state(workdir / "server.conf", state, members)
        pristine = (state / "server-state.db").read_bytes()

        def prepare(stored: bool, compiled: bool) -> None:
            for path in state.glob("server-state.db*"):
                path.unlink()
            if stored:
                (state / "server-state.db").write_bytes(pristine)  # without the live member
                (state / "server-state.db").chmod(0o600)
            if not compiled:
                (state / COMPILED_FILE).unlink(missing_ok=True)

        prepare(stored=True, compiled=False)
        start_and_time(workdir, port, server_cpu)  # warm-up: writes the compiled copy
        cases = {"restart": (True, True), "empty": (False, True), "changed": (True, False)}
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, (stored, compiled) in cases.items():
                prepare(stored, compiled)
                listening, registered, listed = start_and_time(workdir, port, server_cpu)
                expected = members + 1 if stored else 1
                if listed != expected:
                    raise SystemExit(f"{name}: {listed} members listed, expected {expected}")
                results[name].append((listening, registered))
    median = {
        name: [statistics.median(r[i] for r in runs) for i in (0, 1)]
        for name, runs in results.items()
    }
    restart, empty, changed = median["restart"], median["empty"], median["changed"]
    print(f"| {members} | {restart[0]:.3f} | {restart[1]:.3f} | {empty[1]:.3f} "
          f"| {restart[1] / empty[1]:.2f} | {changed[1]:.3f} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18849)
    args = parser.parse_args()
    print("| members stored | restart: listening s | restart: first registration s "
          "| empty state: first registration s | ratio restart / empty "
          "| after a configuration change: first registration s |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for members in args.members:
        run(members, args.rounds, args.port)


if __name__ == "__main__":
    main()
