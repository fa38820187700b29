"""Full registrations (Phase 1 + GROUPKEY-PULL) per second at a real key server.

Method.  For each DH group and member count N:

* a configuration with N IKE gateways (members at 127.64.0.0/16, one address
  each) and one group is written, and the real ``groupvpn server`` is started on
  127.63.0.1, pinned to one CPU;
* this process, pinned to the other CPU when there is one, runs N simulated
  members: each is a real :class:`MemberCore` on its own :class:`IkeEndpoint`
  and UDP socket (the daemons' own asyncio shell), so every registration is a
  complete Main Mode and GROUPKEY-PULL over loopback UDP, with fresh DH values
  and nonces on both sides.  ``--window`` registrations are in flight at once;
  a member that has registered closes its socket (the server keeps its record);
* the rate is N divided by the time from the first Main Mode message to the last
  registration; a failure is any RegistrationFailed event at a member, and at
  the end the server's own ``registered-members --json`` must list all N;
* memory is the server's peak RSS (VmHWM) minus its RSS before the first
  registration, divided by N: what each registered member costs the server.

The floor for comparison is the server's DH work per registration (g^x and
g^xy), timed in this process in the same run; "Python/DH" is the rest of the
server's time per registration as a multiple of it.  Run as root (the control
socket) from the repository root:

    .venv/bin/python -m benchmarks.registration [--members 100 1000 8000] [--groups 2 14]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from groupvpn.crypto.ciphers import CIPHERS
from groupvpn.crypto.dh import MODEXP_IMPLEMENTATION, MODP_GROUPS, DhExchange
from groupvpn.crypto.hashes import HASHES
from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.policy import Phase1Peer, Phase1Proposal
from groupvpn.member.core import GroupVpn, MemberCore, Registered, RegistrationFailed
from groupvpn.runtime import loop as event_loop
from groupvpn.runtime.udp import EndpointProtocol, open_endpoint
from groupvpn.wire.dialect import V1

SERVER_ADDRESS = "127.63.0.1"
MEMBER_BASE = int(IPv4Address("127.64.0.1"))
PSK = "benchmark-key"
#: The suite per DH group, as in benchmarks/phase1.py.
SUITES = {2: ("3des-cbc", "sha1"), 14: ("aes-128-cbc", "sha1")}
JUNOS_ENCRYPTION = {"3des-cbc": "3des-cbc", "aes-128-cbc": "aes-128-cbc"}


def member_address(index: int) -> str:
    return str(IPv4Address(MEMBER_BASE + index))


def server_config(members: int, group: int) -> str:
    encryption, hash_name = SUITES[group]
    lines = [
        "set security group-vpn server ike proposal p authentication-method pre-shared-keys",
        f"set security group-vpn server ike proposal p dh-group group{group}",
        f"set security group-vpn server ike proposal p authentication-algorithm {hash_name}",
        f"set security group-vpn server ike proposal p encryption-algorithm {encryption}",
        "set security group-vpn server ike policy pol mode main",
        "set security group-vpn server ike policy pol proposals p",
        f'set security group-vpn server ike policy pol pre-shared-key ascii-text "{PSK}"',
        "set security group-vpn server ipsec proposal gp authentication-algorithm hmac-sha1-96",
        "set security group-vpn server ipsec proposal gp encryption-algorithm aes-128-cbc",
        "set security group-vpn server group g1 group-id 1",
        f"set security group-vpn server group g1 server-address {SERVER_ADDRESS}",
        "set security group-vpn server group g1 ipsec-sa sa1 proposal gp",
        # Unicast rekeys, as most deployments: every registration carries the KEK,
        # the server's RSA public key and SEQ.
        "set security group-vpn server group g1 server-member-communication "
        "communication-type unicast",
        "set security group-vpn server group g1 server-member-communication "
        "encryption-algorithm aes-128-cbc",
        "set security group-vpn server group g1 server-member-communication "
        "sig-hash-algorithm sha1",
    ]
    for direction, (source, destination) in {
        "p1": ("10.1.0.0/16", "10.2.0.0/16"),
        "p2": ("10.2.0.0/16", "10.1.0.0/16"),
    }.items():
        prefix = f"set security group-vpn server group g1 ipsec-sa sa1 match-policy {direction}"
        lines += [f"{prefix} source {source}", f"{prefix} destination {destination}"]
        lines += [f"{prefix} {word} 0" for word in ("source-port", "destination-port", "protocol")]
    for index in range(members):
        gateway = f"set security group-vpn server ike gateway m{index}"
        lines += [
            f"{gateway} ike-policy pol",
            f"{gateway} address {member_address(index)}",
            f"{gateway} local-address {SERVER_ADDRESS}",
            f"set security group-vpn server group g1 ike-gateway m{index}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class RunResult:
    group: int
    members: int
    seconds: float
    server_cpu_seconds: float
    failures: int
    registered_at_server: int
    rss_growth_kib: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.members / self.seconds

    @property
    def rate_per_server_cpu_second(self) -> float:
        """What one core would sustain if the server had it to itself."""
        return self.members / self.server_cpu_seconds


class KeyServer:
    """The real daemon in a subprocess, pinned to one CPU."""

    def __init__(self, workdir: Path, members: int, group: int, port: int, cpu: int) -> None:
        self.config = workdir / "server.conf"
        self.config.write_text(server_config(members, group))
        self.control = workdir / "server.sock"
        self.log = (workdir / "server.log").open("w")
        command = [sys.executable, "-m", "groupvpn", "server", "-c", str(self.config),
                   "--port", str(port), "--control", str(self.control),
                   "--state-dir", str(workdir / "state")]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )  # fmt: skip

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.control.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"key server did not start; see {self.log.name}")
            time.sleep(0.05)

    def rss_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise SystemExit(f"no {field} for the key server")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (proc(5): fields 14, 15)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def registered_members_view(self) -> dict[str, Any]:
        """`show security group-vpn server registered-members --json`, parsed."""
        output = subprocess.run(
            [sys.executable, "-m", "groupvpn", "show", "security", "group-vpn", "server",
             "registered-members", "--json", "--control", str(self.control)],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        view: dict[str, Any] = json.loads(output)
        return view

    def registered_members(self) -> int:
        return count_members(self.registered_members_view())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def count_members(view: dict[str, list[dict[str, list[object]]]]) -> int:
    """Members in the registered-members JSON view (docs/operational-commands.md)."""
    return sum(len(group["members"]) for group in view["groups"])


class MemberFleet:
    """N simulated members, ``window`` of them registering at any moment."""

    def __init__(
        self, members: int, group: int, port: int, window: int, keep_open: bool = False
    ) -> None:
        encryption, hash_name = SUITES[group]
        self._proposal = Phase1Proposal(
            CIPHERS[encryption], HASHES[hash_name], MODP_GROUPS[group], 28800
        )
        self._members, self._port, self._window = members, port, window
        #: Keep each member's socket and core after it registered (for rekeys).
        self._keep_open = keep_open
        self.cores: dict[int, MemberCore] = {}
        #: Every member event after registration goes here too (the rekey benchmark).
        self.on_member_event: Callable[[int, object], None] | None = None
        self._next = 0
        self._started: dict[int, float] = {}
        self.latencies: list[float] = []
        self.failures = 0
        self.failure_reasons: list[str] = []
        self._done = asyncio.Event()
        self._protocols: dict[int, EndpointProtocol] = {}
        self._starting: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        for _ in range(min(self._window, self._members)):
            await self._start_next(self._take_index())
        await self._done.wait()

    @property
    def protocols(self) -> dict[int, EndpointProtocol]:
        """The open members' asyncio shells by index (``keep_open`` only)."""
        return self._protocols

    def close(self) -> None:
        for protocol in self._protocols.values():
            protocol.close()
        self._protocols.clear()

    def _take_index(self) -> int:
        # Taken when a start is decided, not when its task runs: several tasks may be
        # pending at once, and each must start a different member, never one too many.
        index, self._next = self._next, self._next + 1
        return index

    async def _start_next(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        server = Phase1Peer(
            gateway="ks", addresses=(IPv4Address(SERVER_ADDRESS),), mode="main",
            proposals=(self._proposal,), pre_shared_key=PSK.encode(),
        )  # fmt: skip
        endpoint = IkeEndpoint(member_address(index), [server], peer_port=self._port)
        core = MemberCore(endpoint, [GroupVpn("bench", "ks", 1)], V1)
        self.cores[index] = core
        self._started[index] = loop.time()
        protocol = await open_endpoint(
            core, member_address(index), 0, lambda event: self._on_event(index, event)
        )
        self._protocols[index] = protocol
        protocol.pump()  # arms the member's first timer: it starts at once

    def _on_event(self, index: int, event: object) -> None:
        if self.on_member_event is not None:
            self.on_member_event(index, event)
        if isinstance(event, RegistrationFailed):
            self.failures += 1
            self.failure_reasons.append(f"member {index}: {event.reason}")
        elif isinstance(event, Registered):
            loop = asyncio.get_running_loop()
            self.latencies.append(loop.time() - self._started.pop(index))
            if not self._keep_open:
                # Closing from inside the protocol's own callback: defer it a turn.
                loop.call_soon(self._protocols.pop(index).close)
            if len(self.latencies) == self._members:
                self._done.set()
            elif self._next < self._members:
                task = loop.create_task(self._start_next(self._take_index()))
                self._starting.add(task)  # keep a reference until it has run
                task.add_done_callback(self._starting.discard)


@contextlib.contextmanager
def running_key_server(prefix: str, members: int, group: int, port: int) -> Iterator[KeyServer]:
    """The key server, ready, on this process's first CPU in a fresh directory; then stopped."""
    server_cpu = min(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = KeyServer(Path(tmp), members, group, port, server_cpu)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def on_fleet_cpu() -> Iterator[None]:
    """This process (the simulated members) on its last CPU, away from the server's."""
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(cpus)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cpus)


def run_once(group: int, members: int, window: int, port: int) -> RunResult:
    with running_key_server("groupvpn-bench-", members, group, port) as server:
        baseline = server.rss_kib("VmRSS")
        cpu_before = server.cpu_seconds()
        fleet = MemberFleet(members, group, port, window)
        with on_fleet_cpu():
            start = time.perf_counter()
            event_loop.run(fleet.run())
            seconds = time.perf_counter() - start
        peak = server.rss_kib("VmHWM")
        server_cpu = server.cpu_seconds() - cpu_before
        registered = server.registered_members()
    for reason in fleet.failure_reasons[:5]:
        print(f"  failure: {reason}", file=sys.stderr)
    return RunResult(
        group, members, seconds, server_cpu, fleet.failures, registered, peak - baseline,
        sorted(fleet.latencies),
    )  # fmt: skip


def server_dh_seconds(group: int, count: int = 200) -> float:
    """What the server's DH costs per registration: g^x and g^xy, once each."""
    modp = MODP_GROUPS[group]
    peer_value = DhExchange(modp).public_value
    start = time.perf_counter()
    for _ in range(count):
        DhExchange(modp).shared_secret(peer_value)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000, 8000])
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 14], choices=sorted(SUITES))
    parser.add_argument("--window", type=int, default=32, help="registrations in flight")
    parser.add_argument("--port", type=int, default=18848)
    args = parser.parse_args()
    print(f"modular exponentiation: {MODEXP_IMPLEMENTATION}; event loop: {event_loop.EVENT_LOOP}; "
          f"CPUs: {os.cpu_count()}")  # fmt: skip
    print("| DH group | members | registrations/s (wall) | per server CPU-second | failures "
          "| registered at server | p50 / p99 latency ms | server RSS per member KiB "
          "| server Python/DH |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    worst = 0
    for group in args.groups:
        for members in args.members:
            result = run_once(group, members, args.window, args.port)
            dh = server_dh_seconds(group)
            overhead = (result.server_cpu_seconds / members - dh) / dh
            p50 = result.latencies[len(result.latencies) // 2] * 1e3
            p99 = result.latencies[int(len(result.latencies) * 0.99)] * 1e3
            print(f"| {group} | {members} | {result.rate:.0f} "
                  f"| {result.rate_per_server_cpu_second:.0f} | {result.failures} "
                  f"| {result.registered_at_server} | {p50:.0f} / {p99:.0f} "
                  f"| {result.rss_growth_kib / members:.1f} | {overhead:.2f} |",
                  flush=True)  # fmt: skip
            if result.failures or result.registered_at_server != members:
                worst = 1
    raise SystemExit(worst)


if __name__ == "__main__":
    main()
