"""A flood against a real key server while real members register and rekey.

On loopback: the spec's key server (127.0.0.20), then a flood from 256 source
addresses, then the spec's two members start and register through it, and two
rekeys reach both.  The flood mixes six kinds of datagram, a sixth each:

* well-formed MM1s from 160 addresses the server has IKE gateways for (nobody
  runs there: spoofed gateways), each with a fresh initiator cookie: every one is
  answered with an MM2, and nothing is kept for it;
* well-formed MM1s from 96 addresses nobody configured;
* MM3s (KE and nonce of a real exchange) under random cookies: forged cookies;
* random octets;
* MM1s from 32 of the gateway addresses where the flooder does listen: it
  answers each MM2 with an MM3, so the server spends DH work and holds a
  half-open SA until the per-address limit (8) stops it, before any DH;
* from the real members' own addresses (other ports): copies of the MM1,
  forged MM3s and garbage.

The loop is bounded in datagrams and in time.  Every real member must register
and apply both rekeys, the server must log no traceback, its RSS must stay
within a bound of where it started, and its IKE view must show the drops counted
and the half-open records within their limit.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from groupvpn.ike.guard import HALF_OPEN_PER_ADDRESS, HALF_OPEN_TOTAL
from tests.ikepair import make_pair, peer, proposal
from tests.interop.daemon import DaemonProcess, groupvpn_argv
from tests.system.spec_network import (
    add_lines,
    free_port,
    loopback_config,
    rekey,
    show_json,
)

SERVER = "127.0.0.20"
GHOSTS = [f"127.0.1.{n}" for n in range(1, 161)]  # configured on the server, nobody there
STRANGERS = [f"127.0.2.{n}" for n in range(1, 97)]  # configured nowhere
RESPONSIVE = GHOSTS[:32]  # gateway addresses where the flooder answers MM2 with MM3
MEMBERS = ["127.0.0.11", "127.0.0.12"]  # the real members' addresses, spoofed too
#: Bounds of the flood loop: it stops at whichever comes first.
MAX_DATAGRAMS = 400_000
MAX_SECONDS = 60.0
MIN_DATAGRAMS = 40_000
#: Target rate; the achieved rate is printed (pytest -s) and asserted to be high.
RATE = 10_000
#: How far the server's resident set may grow over its size before the flood.
RSS_GROWTH_LIMIT_KB = 40_000


def _ghost_lines() -> list[str]:
    base = "set security group-vpn server ike gateway"
    lines = []
    for n, address in enumerate(GHOSTS, 1):
        lines += [
            f"{base} ghost{n} ike-policy srv-pol",
            f"{base} ghost{n} address {address}",
            f"{base} ghost{n} local-address {SERVER}",
        ]
    return lines


def _samples() -> tuple[bytes, bytes]:
    """A real MM1 for the server's proposal (3DES/SHA1/group 2) and a real MM3."""
    spec = proposal("3des-cbc", "sha1", 2)
    pair = make_pair(
        peer("198.51.100.2", proposals=(spec,)), peer("198.51.100.1", proposals=(spec,))
    )
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    return pair.wire[0][1], pair.wire[2][1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@dataclass
class Flood:
    sent: int = 0
    seconds: float = 0.0
    stop: bool = False


def _flood(flood: Flood, port: int, mm1: bytes, mm3: bytes) -> None:
    rng = random.Random(848)
    sockets: dict[str, socket.socket] = {}
    for address in GHOSTS + STRANGERS + MEMBERS:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.setblocking(False)
        sockets[address] = sock
    target = (SERVER, port)
    started = time.monotonic()
    try:
        while not flood.stop and flood.sent < MAX_DATAGRAMS:
            elapsed = time.monotonic() - started
            if elapsed > MAX_SECONDS:
                break
            if flood.sent > elapsed * RATE:
                time.sleep(0.002)
                continue
            _answer_mm2s(sockets, target, mm3, flood)
            for _ in range(50):
                kind = flood.sent % 6
                if kind == 5:
                    # The real members' own addresses, other ports: MM1 copies,
                    # forged MM3s and garbage must not disturb their registrations.
                    source = rng.choice(MEMBERS)
                    data = rng.choice(
                        [os.urandom(8) + mm1[8:], os.urandom(16) + mm3[16:], os.urandom(64)]
                    )
                elif kind == 4:
                    source, data = rng.choice(RESPONSIVE), os.urandom(8) + mm1[8:]
                elif kind == 0:
                    source, data = rng.choice(GHOSTS), os.urandom(8) + mm1[8:]
                elif kind == 1:
                    source, data = rng.choice(STRANGERS), os.urandom(8) + mm1[8:]
                elif kind == 2:
                    source, data = rng.choice(GHOSTS), os.urandom(16) + mm3[16:]
                else:
                    source = rng.choice(STRANGERS)
                    data = os.urandom(rng.randrange(0, 300))
                with contextlib.suppress(BlockingIOError):  # a full buffer is a lost datagram
                    sockets[source].sendto(data, target)
                flood.sent += 1
    finally:
        flood.seconds = time.monotonic() - started
        for sock in sockets.values():
            sock.close()


def _answer_mm2s(
    sockets: dict[str, socket.socket], target: tuple[str, int], mm3: bytes, flood: Flood
) -> None:
    """The routable attacker: every MM2 that reached it gets an MM3 under its cookies."""
    for address in RESPONSIVE:
        while True:
            try:
                data = sockets[address].recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 28 and data[18] == 2:  # Main Mode, from the responder
                with contextlib.suppress(BlockingIOError):
                    sockets[address].sendto(data[:16] + mm3[16:], target)
                flood.sent += 1


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[dict[str, DaemonProcess]]:
    running: dict[str, DaemonProcess] = {}
    try:
        yield running
    finally:
        for daemon in running.values():
            daemon.stop()


def _start(name: str, tmp_path: Path, port: int, lines: list[str] = []) -> DaemonProcess:  # noqa: B006
    conf = loopback_config(f"{name}.conf", tmp_path / f"{name}.conf")
    add_lines(conf, lines)
    role = "server" if name == "server" else "member"
    daemon = DaemonProcess(
        groupvpn_argv(role, conf, port=port), tmp_path / f"{name}.log", name=name
    )
    return daemon.start()


def test_members_register_and_rekey_through_a_flood_and_memory_stays_bounded(
    tmp_path: Path, daemons: dict[str, DaemonProcess]
):
    port = free_port(SERVER)
    server = daemons["server"] = _start("server", tmp_path, port, _ghost_lines())
    server.wait_for_line("key server running", timeout=20)
    control = tmp_path / "server.sock"
    time.sleep(0.5)
    baseline = _rss_kb(server.pid)
    mm1, mm3 = _samples()
    flood = Flood()
    flooder = threading.Thread(target=_flood, args=(flood, port, mm1, mm3), daemon=True)
    flooder.start()
    peak = baseline
    try:
        time.sleep(2.0)  # the flood is in full swing before any member starts
        for name in ("member1", "member2"):
            daemons[name] = _start(name, tmp_path, port)
        for name in ("member1", "member2"):
            daemons[name].wait_for_line(r"group SAs installed: vpn=gvpn1", timeout=40)
            peak = max(peak, _rss_kb(server.pid))
        for _ in range(2):
            offsets = {name: daemons[name].log_offset() for name in ("member1", "member2")}
            rekey(control)
            for name in ("member1", "member2"):
                daemons[name].wait_for_line("rekey applied", timeout=20, since=offsets[name])
            peak = max(peak, _rss_kb(server.pid))
        # However fast the members were, the server has taken a real flood.
        while flood.sent < MIN_DATAGRAMS and flooder.is_alive():
            time.sleep(0.1)
        view = show_json(control, "security", "group-vpn", "server", "ike", "security-associations")
        peak = max(peak, _rss_kb(server.pid))
    finally:
        flood.stop = True
        flooder.join(timeout=10)
    rate = flood.sent / flood.seconds
    print(f"\nflood: {flood.sent} datagrams in {flood.seconds:.1f} s ({rate:.0f}/s); server RSS "
          f"{baseline} kB before, peak {peak} kB; drops {view['phase1-drops']}; "
          f"half-open {view['half-open']}")  # fmt: skip
    assert flood.sent >= MIN_DATAGRAMS and rate >= RATE / 2, (flood.sent, flood.seconds)
    assert peak - baseline < RSS_GROWTH_LIMIT_KB, (baseline, peak)
    # Both real members hold an IKE SA with the server, whatever the flood did.
    remotes = {sa["remote-address"] for sa in view["security-associations"]}
    assert {"127.0.0.11", "127.0.0.12"} <= remotes
    drops = view["phase1-drops"]
    assert drops["unknown gateway"] > 1000 and drops["malformed"] > 1000
    assert drops["responder cookie not issued to this address"] > 1000
    assert drops["half-open limit: per address"] > 100
    # The routable attacker holds at most 8 per address; the real members' come and go.
    assert HALF_OPEN_PER_ADDRESS * len(RESPONSIVE) // 2 <= view["half-open"]
    assert view["half-open"] <= HALF_OPEN_PER_ADDRESS * (len(RESPONSIVE) + 2) < HALF_OPEN_TOTAL
    for daemon in daemons.values():
        assert daemon.is_alive(), daemon.name
        assert "Traceback" not in daemon.log_text(), daemon.name
