"""Member and key server cores registering in memory, on a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.member.core import GroupVpn, MemberCore, Registered, RegistrationFailed
from groupvpn.server.core import KeyServerCore, MemberRegistered, RegistrationRefused
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY, GroupPolicySpec
from groupvpn.wire.dialect import V1, V2, Dialect
from tests.ikepair import peer

SERVER_IP = "198.51.100.20"
MEMBER_IP = "198.51.100.11"


def _policy(name: str, source: str, destination: str) -> GroupPolicySpec:
    return GroupPolicySpec(
        name, IPv4Network(source), IPv4Network(destination), 0, 0, 0,
        ESP_CIPHERS["3des-cbc"], ESP_INTEGRITY["hmac-sha1-96"], 3600,
    )  # fmt: skip


GROUPS = [
    GroupDefinition(
        "g1",
        1,
        frozenset({"gw-member1"}),
        (_policy("p1", "10.1.0.0/16", "10.2.0.0/16"), _policy("p2", "10.2.0.0/16", "10.1.0.0/16")),
    ),
    GroupDefinition(
        "g2", 2, frozenset({"gw-member1"}), (_policy("q1", "10.9.0.0/16", "10.8.0.0/16"),)
    ),
    GroupDefinition(
        "g3", 3, frozenset({"gw-someone-else"}), (_policy("r1", "10.7.0.0/16", "10.6.0.0/16"),)
    ),
]


@dataclass
class Net:
    server: KeyServerCore
    member: MemberCore
    now: float = 0.0
    server_events: list[object] = field(default_factory=list)
    member_events: list[object] = field(default_factory=list)
    drop: Callable[[str, bytes], bool] = lambda sender, data: False

    def run(self, until: float = 600.0) -> None:
        """Deliver datagrams and fire timers until quiet or ``until``."""
        while True:
            for _ in range(100):
                moved = False
                for data, _ in self.member.datagrams_to_send():
                    moved = True
                    if not self.drop("m", data):
                        self.server.receive_datagram(data, (MEMBER_IP, 848), self.now)
                for data, _ in self.server.datagrams_to_send():
                    moved = True
                    if not self.drop("s", data):
                        self.member.receive_datagram(data, (SERVER_IP, 848), self.now)
                self._collect()
                if not moved:
                    break
            timers = [
                t for t in (self.server.get_timer(), self.member.get_timer()) if t is not None
            ]
            if not timers or min(timers) > until:
                return
            self.now = max(self.now, min(timers))
            self.server.handle_timer(self.now)
            self.member.handle_timer(self.now)

    def _collect(self) -> None:
        while (event := self.server.next_event()) is not None:
            self.server_events.append(event)
        while (member_event := self.member.next_event()) is not None:
            self.member_events.append(member_event)


def _net(vpns: list[GroupVpn], dialect: Dialect = V1, member_psk: bytes = b"psk") -> Net:
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=b"psk")])
    member_ike = IkeEndpoint(MEMBER_IP, [peer(SERVER_IP, gateway="gw1", psk=member_psk)])
    server = KeyServerCore(server_ike, GroupKeyServer(GROUPS, dialect))
    member = MemberCore(member_ike, vpns, dialect, jitter=random.Random(7))
    net = Net(server, member)
    member.handle_timer(0.0)  # starts every VPN
    return net


def test_a_member_registers_to_two_groups_over_one_ike_sa():
    net = _net([GroupVpn("vpn1", "gw1", 1), GroupVpn("vpn2", "gw1", 2)])
    net.run(until=5.0)
    registered = {e.vpn: e.registration for e in net.member_events if isinstance(e, Registered)}
    assert sorted(registered) == ["vpn1", "vpn2"]
    assert [len(r.sa.teks) for r in (registered["vpn1"], registered["vpn2"])] == [2, 1]
    members = [e.member for e in net.server_events if isinstance(e, MemberRegistered)]
    assert sorted((m.group, m.address, m.gateway) for m in members) == [
        ("g1", MEMBER_IP, "gw-member1"), ("g2", MEMBER_IP, "gw-member1"),
    ]  # fmt: skip
    assert len(net.member.ike.established()) == 1  # both pulls rode one phase 1 SA
    # The keys the member holds are the server's current keys.
    server_spis = {t.spi for t in net.server.groups.current_teks(1, net.now)}
    assert {p.spi for p in registered["vpn1"].key_download.packets} == server_spis


def test_registration_in_the_v2_dialect():
    net = _net([GroupVpn("vpn1", "gw1", 1)], V2)
    net.run(until=5.0)
    [event] = [e for e in net.member_events if isinstance(e, Registered)]
    assert event.registration.sa.gap is not None


def test_refusals_leave_no_member_record_and_the_member_backs_off():
    net = _net([GroupVpn("vpn-unknown", "gw1", 99), GroupVpn("vpn-not-listed", "gw1", 3)])
    net.run(until=1.0)
    refused = sorted(e.reason for e in net.server_events if isinstance(e, RegistrationRefused))
    assert refused == [
        "IKE gateway gw-member1 is not an ike-gateway of group g3",
        "group-id 99 is not configured",
    ]
    assert net.server.groups.members() == []
    failures = [e for e in net.member_events if isinstance(e, RegistrationFailed)]
    assert {e.reason for e in failures} == {"key server refused: INVALID-ID-INFORMATION"}
    assert all(1.0 <= e.retry_in <= 3.0 for e in failures)  # 2 s base, jitter 0.5..1.5
    status = {s.vpn: s for s in net.member.status(net.now)}
    assert status["vpn-unknown"].state == "waiting to retry"
    assert status["vpn-unknown"].last_error == "key server refused: INVALID-ID-INFORMATION"


def test_backoff_grows_and_the_member_never_spins_without_a_server():
    net = _net([GroupVpn("vpn1", "gw1", 1)])
    net.drop = lambda sender, data: sender == "m"  # the key server is unreachable
    net.run(until=2000.0)
    delays = [e.retry_in for e in net.member_events if isinstance(e, RegistrationFailed)]
    assert len(delays) >= 4
    # Each wait roughly doubles (jitter 0.5..1.5) up to the 120 s cap.
    bases = [min(120.0, 2.0 * 2**n) for n in range(len(delays))]
    assert all(0.5 * b <= d <= 1.5 * b for d, b in zip(delays, bases, strict=True))
    [status] = net.member.status(net.now)
    assert status.failures == len(delays) and "IKE phase 1 failed" in status.last_error


def test_a_lost_pull_message_is_retransmitted():
    net = _net([GroupVpn("vpn1", "gw1", 1)])
    lost: list[bytes] = []

    def lose_first_pull(sender: str, data: bytes) -> bool:
        if sender == "m" and data[18] == 32 and not lost:  # exchange type 32
            lost.append(data)
            return True
        return False

    net.drop = lose_first_pull
    net.run(until=10.0)
    assert len(lost) == 1
    assert any(isinstance(e, Registered) for e in net.member_events)


def test_clear_drops_keys_and_registers_again():
    net = _net([GroupVpn("vpn1", "gw1", 1)])
    net.run(until=5.0)
    net.member.clear(net.now)
    assert net.member.registrations() == {}
    net.run(until=10.0)
    assert len([e for e in net.member_events if isinstance(e, Registered)]) == 2
    assert "vpn1" in net.member.registrations()


def test_wrong_psk_fails_phase1_and_registers_nothing():
    net = _net([GroupVpn("vpn1", "gw1", 1)], member_psk=b"wrong")
    net.run(until=30.0)
    assert net.server.groups.members() == []
    assert net.member.registrations() == {}
    assert any("IKE phase 1 failed" in e.reason for e in net.member_events
               if isinstance(e, RegistrationFailed))  # fmt: skip


def test_a_refusal_fails_only_the_registration_it_names():
    # Both pulls ride one IKE SA; the refusal Notify carries the refused pull's message ID.
    net = _net([GroupVpn("vpn1", "gw1", 1), GroupVpn("vpn-unknown", "gw1", 99)])
    net.run(until=1.0)
    assert [e.vpn for e in net.member_events if isinstance(e, Registered)] == ["vpn1"]
    assert [e.vpn for e in net.member_events if isinstance(e, RegistrationFailed)] == [
        "vpn-unknown"
    ]
