"""The member daemon's own pieces: settings from the configuration, log lines, multicast sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from groupvpn.config import load_config
from groupvpn.member.core import GroupVpn, Reregistering
from groupvpn.member.keyring import ChangeKind, KeyChange, PolicySelectors
from groupvpn.member.push_inbox import PushDropped
from groupvpn.member.rekeys import HeartbeatReceived, RekeyApplied
from groupvpn.runtime.member_daemon import (
    MulticastListeners,
    describe_member_event,
    member_settings,
)

SPEC_MEMBER1 = Path(__file__).resolve().parent.parent / "configs" / "spec" / "member1.conf"


def test_heartbeat_threshold_and_external_interface_come_from_the_configuration():
    text = SPEC_MEMBER1.read_text() + (
        "set security group-vpn member ipsec vpn gvpn1 heartbeat-threshold 5\n"
    )
    config = load_config(text)
    vpns, addresses = member_settings(config, [GroupVpn("gvpn1", "gw1", 1)])
    assert vpns == [GroupVpn("gvpn1", "gw1", 1, heartbeat_threshold=5)]
    # group-vpn-external-interface ge-0/0/1.0 -> its address under [edit interfaces].
    assert addresses == {"gvpn1": IPv4Address("198.51.100.1")}
    default, _ = member_settings(load_config(SPEC_MEMBER1.read_text()), vpns)
    assert default[0].heartbeat_threshold == 3  # the Junos default


SELECTORS = PolicySelectors(IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0)
LINES: list[tuple[object, int, str]] = [
    (RekeyApplied("gvpn1", 3, 2, 1, 0, None, True), logging.INFO,
     "rekey applied: vpn=gvpn1 seq=3 installed=2 rejected=1 deleted=0 kek-rollover=no ack=yes"),
    (RekeyApplied("gvpn1", 4, 0, 0, 1, bytes(range(16)), False), logging.INFO,
     "rekey applied: vpn=gvpn1 seq=4 installed=0 rejected=0 deleted=1 "
     "kek-rollover=000102030405060708090a0b0c0d0e0f ack=no"),
    (HeartbeatReceived("gvpn1", 5), logging.DEBUG, "heartbeat: vpn=gvpn1 seq=5"),
    (HeartbeatReceived("gvpn1", 6, (b"\x8a\x5f\x6a\x56",)), logging.WARNING,
     "heartbeat lists keys this member lacks: vpn=gvpn1 seq=6 missing=8a5f6a56"),
    (PushDropped(("127.0.0.20", 848), "replayed-seq", "SEQ 3, last accepted 3", "gvpn1", 7, 2),
     logging.WARNING,
     "push dropped: peer=127.0.0.20:848 reason=replayed-seq vpn=gvpn1 count=7 "
     "(+2 not logged) detail=SEQ 3, last accepted 3"),
    (PushDropped(("127.0.0.20", 848), "unknown-kek", "KEK SPI 00", None, 1, 0), logging.WARNING,
     "push dropped: peer=127.0.0.20:848 reason=unknown-kek vpn=- count=1 detail=KEK SPI 00"),
    (Reregistering("gvpn1", "3 heartbeats missed (heartbeat-threshold 3)", 4.25),
     logging.WARNING,
     "registering again: vpn=gvpn1 reason=3 heartbeats missed (heartbeat-threshold 3) in=4.2s"),
    (KeyChange(ChangeKind.ACTIVATED, 1.0, "gvpn1", b"\x01\x02\x03\x04", SELECTORS, "why"),
     logging.INFO,
     "group SA activated: vpn=gvpn1 spi=01020304 policy=10.1.0.0/16:0 -> 10.2.0.0/16:0 "
     "protocol 0 reason=why"),
]  # fmt: skip


@pytest.mark.parametrize(("event", "level", "line"), LINES)
def test_member_events_have_their_log_lines(event: object, level: int, line: str):
    assert describe_member_event(event) == (level, line)


def test_other_events_are_left_to_the_shared_log_lines():
    assert describe_member_event(object()) is None


class _FakeCore:
    def __init__(self, spi: bytes) -> None:
        self.spi = spi
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def holds_kek(self, spi: bytes) -> bool:
        return spi == self.spi

    def receive_multicast(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        self.received.append((data, addr))


class _FakeProtocol:
    pumped = 0

    def pump(self) -> None:
        self.pumped += 1


def test_a_multicast_group_is_joined_fed_to_the_core_holding_the_kek_and_left():
    async def scenario() -> tuple[list[Any], list[Any], int]:
        loop = asyncio.get_running_loop()
        group, port = "239.255.77.1", _free_port()
        mine, other = _FakeCore(b"k" * 16), _FakeCore(b"x" * 16)
        protocol = _FakeProtocol()
        cores: Any = [(other, _FakeProtocol()), (mine, protocol)]
        listeners = MulticastListeners(loop)
        listeners.sync({(group, port): {"127.0.0.1"}}, cores)
        await asyncio.sleep(0.05)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                              socket.inet_aton("127.0.0.1"))  # fmt: skip
            sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            sender.sendto(b"k" * 16 + b"push", (group, port))
            for _ in range(100):
                await asyncio.sleep(0.01)
                if mine.received:
                    break
            listeners.sync({}, cores)  # the KEK no longer names the group
            await asyncio.sleep(0.05)
            sender.sendto(b"k" * 16 + b"late", (group, port))
            await asyncio.sleep(0.1)
        listeners.close()
        return mine.received, other.received, protocol.pumped

    mine, other, pumped = asyncio.run(scenario())
    if not mine and not os.environ.get("CI"):
        pytest.skip("no multicast on this host's loopback")  # in CI it must work: no skip
    assert [data for data, _ in mine] == [b"k" * 16 + b"push"] and other == []
    assert pumped == 1  # the answer leaves from the core's own socket


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
