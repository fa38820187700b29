"""One unicast rekey to N registered members, each ACKing: how long until all ACKs are in.

Method.  The real ``groupvpn server`` (pinned to one CPU) serves a group with
unicast ``server-member-communication`` and N IKE gateways, as in
benchmarks/registration.py.  N simulated members (real ``MemberCore``s on their
own UDP sockets, in this process, pinned to the other CPU) register and stay.
Then the rekey request of ``groupvpn request security group-vpn server rekey
group g1`` (sent straight to the control socket) makes the
server build one push (new TEKs, a new SEQ), sign it once and send it to every
member, paced; each member verifies it, installs the keys and ACKs.

* **time to all ACKs**: the key server's own account, from its ``rekey complete``
  log line: from building the push until the last member's ACK was accepted.  The
  line must count every member as ACKed, and the server's ``registered-members
  --json`` must show every member with that SEQ ACKed;
* **server CPU**: user+system CPU the server used over the same window
  (``/proc/PID/stat``), rekey building, fan-out and ACK checking included;
* **bytes sent**: the push datagrams the members received, retransmissions included.

Target (issue 4): 8,000 members fully ACKed in under 2 s, well inside the default
activation-time-delay of 15 s.  Run as root from the repository root:

    .venv/bin/python -m benchmarks.rekey [--members 1000 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.registration import KeyServer, MemberFleet, on_fleet_cpu, running_key_server
from groupvpn.crypto.ciphers import cbc_decrypt
from groupvpn.gdoi.push import KekMaterial
from groupvpn.gdoi.push_ack import build_ack, derive_ack_key
from groupvpn.gdoi.push_sig import sig_hash
from groupvpn.member.core import MemberCore
from groupvpn.runtime import loop as event_loop
from groupvpn.runtime.control import call
from groupvpn.server.rekeying import is_rekey_ack
from groupvpn.wire.constants import HEADER_LENGTH, ExchangeType, PayloadType
from groupvpn.wire.message import pull_header
from groupvpn.wire.payloads import IdPayload

#: DH group for the registrations that set the stage (the rekey itself has no DH).
DH_GROUP = 2


@dataclass
class RekeyResult:
    members: int
    sequence: int
    seconds: float
    server_cpu_seconds: float
    push_bytes: int
    push_datagrams: int
    acked_at_server: int


class QuickAcker:
    """A registered member reduced to what the key server can see: it ACKs each push.

    It decrypts the push with the member's KEK, reads the SEQ and sends the ACK
    the member would send (same key, same identity), skipping what a real member
    does on its own CPU, in parallel with all the others: the signature check and
    installing the keys.  One process cannot do that work for 8,000 members within
    the time being measured (``--full-members`` shows how far it gets).
    """

    def __init__(self, core: MemberCore, watch: RekeyWatch, index: int) -> None:
        [kek] = core.keks()
        sa = core.ike.established_with("ks")
        assert sa is not None and sa.keys is not None
        self._material = KekMaterial.named(kek.spi, kek.cipher.name, kek.key, kek.iv)
        self._identity = IdPayload.ipv4(core.ike.local_address)
        self._ack_key = derive_ack_key(
            sig_hash(kek.sig_hash.algorithm), sa.keys.skeyid_a,
            sa.initiator_cookie + sa.responder_cookie,
        )  # fmt: skip
        self._watch, self._index = watch, index
        self._outbox: list[tuple[bytes, tuple[str, int]]] = []

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        header = pull_header(data)
        if header.exchange_type != ExchangeType.GROUPKEY_PUSH:
            return
        self._watch.push_bytes += len(data)
        self._watch.push_datagrams += 1
        material = self._material
        plaintext = cbc_decrypt(material.cipher, material.key, material.iv, data[HEADER_LENGTH:])
        if header.next_payload != PayloadType.SEQ:
            raise SystemExit("a push that does not start with SEQ")
        sequence = int.from_bytes(plaintext[4:8], "big")
        self._outbox.append((build_ack(material.spi, sequence, self._identity, self._ack_key),
                             addr))  # fmt: skip
        self._watch.note_ack(self._index)

    def datagrams_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        out, self._outbox = self._outbox, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> object | None:
        return None


class RekeyWatch:
    """Counts the pushes the members receive and the ACKs they send once armed."""

    def __init__(self, members: int) -> None:
        self.members = members
        self.armed = False
        self.acked: set[int] = set()
        self.push_bytes = 0
        self.push_datagrams = 0
        self.done = asyncio.Event()

    def watch(self, index: int, core: MemberCore) -> None:
        """Wrap one member core's datagram entry and exit points."""
        receive, send = core.receive_datagram, core.datagrams_to_send

        def counting_receive(data: bytes, addr: tuple[str, int], now: float) -> None:
            if self.armed and pull_header(data).exchange_type == ExchangeType.GROUPKEY_PUSH:
                self.push_bytes += len(data)
                self.push_datagrams += 1
            receive(data, addr, now)

        def noting_acks() -> list[tuple[bytes, tuple[str, int]]]:
            out = send()
            if self.armed and any(is_rekey_ack(data) for data, _ in out):
                self.note_ack(index)
            return out

        core.receive_datagram = counting_receive  # type: ignore[method-assign]
        core.datagrams_to_send = noting_acks  # type: ignore[method-assign]

    def note_ack(self, index: int) -> None:
        self.acked.add(index)
        if len(self.acked) == self.members:
            self.done.set()


async def _rekey_complete(server: KeyServer, sequence: int) -> dict[str, str]:
    """The server's `rekey complete` log line for ``sequence``, as key=value pairs."""
    pattern = re.compile(rf"rekey complete: group=g1 seq={sequence} (.*)$", re.MULTILINE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = pattern.search(Path(server.log.name).read_text())
        if match:
            return dict(pair.split("=", 1) for pair in match.group(1).split())
        await asyncio.sleep(0.05)
    raise SystemExit(f"the server never completed rekey {sequence}; see {server.log.name}")


def run_once(members: int, port: int, window: int, full_members: bool) -> RekeyResult:
    with running_key_server("groupvpn-rekey-", members, DH_GROUP, port) as server, on_fleet_cpu():
        return event_loop.run(_register_then_rekey(server, members, port, window, full_members))


async def _register_then_rekey(
    server: KeyServer, members: int, port: int, window: int, full_members: bool
) -> RekeyResult:
    fleet = MemberFleet(members, DH_GROUP, port, window, keep_open=True)
    await fleet.run()
    if fleet.failures:
        raise SystemExit(f"{fleet.failures} registrations failed: {fleet.failure_reasons[:3]}")
    watch = RekeyWatch(members)
    for index, core in fleet.cores.items():
        if full_members:
            watch.watch(index, core)
        else:
            fleet.protocols[index].endpoint = QuickAcker(core, watch, index)
    cpu_before = server.cpu_seconds()
    watch.armed = True
    # What `groupvpn request security group-vpn server rekey group g1` sends, without
    # the command's own start-up time; in a thread so this loop keeps serving members.
    answer = await asyncio.to_thread(call, server.control, "server-rekey", {"group": "g1"})
    sequence = int(answer["sequence"])
    if len(watch.acked) < members:
        await asyncio.wait_for(watch.done.wait(), timeout=120)
    # The key server's own account: when the last ACK of this SEQ came in.
    complete = await _rekey_complete(server, sequence)
    seconds = float(complete["seconds"])
    cpu = server.cpu_seconds() - cpu_before
    if int(complete["acked"]) != members:
        raise SystemExit(f"the server counted {complete['acked']} ACKs of {members}")
    view = await asyncio.to_thread(server.registered_members_view)
    acked_at_server = sum(
        1 for group in view["groups"] for member in group["members"]
        if member.get("last-acked-sequence") == sequence
    )  # fmt: skip
    fleet.close()
    return RekeyResult(members, sequence, seconds, cpu, watch.push_bytes,
                       watch.push_datagrams, acked_at_server)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1000, 8000])
    parser.add_argument("--window", type=int, default=32, help="registrations in flight")
    parser.add_argument("--port", type=int, default=19848)
    parser.add_argument("--full-members", action="store_true",
                        help="members verify and install each push before ACKing "
                             "(one process does it for all of them)")  # fmt: skip
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = max(args.members) + 256  # one socket per simulated member
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    print("| members | time to all ACKs s | server CPU s | push datagrams | bytes sent "
          "| ACKed at server |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    worst = 0
    for members in args.members:
        r = run_once(members, args.port, args.window, args.full_members)
        row = (members, f"{r.seconds:.3f}", f"{r.server_cpu_seconds:.2f}", r.push_datagrams,
               r.push_bytes, r.acked_at_server)  # fmt: skip
        print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)
        if r.acked_at_server != members:
            worst = 1
    raise SystemExit(worst)


if __name__ == "__main__":
    main()
