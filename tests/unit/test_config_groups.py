"""Server IPsec proposals and groups, member VPNs: model, defaults and commit checks."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from groupvpn.config import (
    Diagnostic,
    IpsecProposal,
    MatchPolicy,
    ServerMemberCommunication,
    check_config,
    load_config,
    load_config_file,
)

SPEC = Path(__file__).resolve().parent.parent / "configs" / "spec"
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "spec"
KEY = "Zq7-group-KEY"
S = "set security group-vpn server"
M = "set security group-vpn member"
G = f"{S} group g1"


def server_ike() -> list[str]:
    """Lines 1-8: a valid server IKE part with gateways gw1 and gw2."""
    return [
        f"{S} ike proposal p1 authentication-method pre-shared-keys",
        f"{S} ike proposal p1 authentication-algorithm sha1",
        f"{S} ike proposal p1 dh-group group2",
        f"{S} ike proposal p1 encryption-algorithm 3des-cbc",
        f"{S} ike policy pol1 proposals p1",
        f'{S} ike policy pol1 pre-shared-key ascii-text "{KEY}"',
        f"{S} ike gateway gw1 ike-policy pol1",
        f"{S} ike gateway gw1 address 10.1.0.1",
    ]


def server(*group: str) -> list[str]:
    """Lines 1-15: IKE, an IPsec proposal (lines 9-10) and group g1 (11-15), then ``group``."""
    return [
        *server_ike(),
        f"{S} ipsec proposal ip1 encryption-algorithm aes-128-cbc",
        f"{S} ipsec proposal ip1 authentication-algorithm hmac-sha1-96",
        f"{G} group-id 1",
        f"{G} ike-gateway gw1",
        f"{G} ipsec-sa sa1 proposal ip1",
        f"{G} ipsec-sa sa1 match-policy p1 source 10.1.0.0/16",
        f"{G} ipsec-sa sa1 match-policy p1 destination 10.2.0.0/16",
        *group,
    ]


def member(*extra: str) -> list[str]:
    """Lines 1-11: member IKE, interface ge-0/0/1 unit 0 and vpn v1 (group 1)."""
    return [
        f"{M} ike proposal p1 authentication-method pre-shared-keys",
        f"{M} ike proposal p1 authentication-algorithm sha1",
        f"{M} ike proposal p1 dh-group group2",
        f"{M} ike proposal p1 encryption-algorithm 3des-cbc",
        f"{M} ike policy pol1 proposals p1",
        f'{M} ike policy pol1 pre-shared-key ascii-text "{KEY}"',
        f"{M} ike gateway gw1 ike-policy pol1",
        f"{M} ike gateway gw1 address 20.0.0.1",
        "set interfaces ge-0/0/1 unit 0 family inet address 10.1.0.1/24",
        f"{M} ipsec vpn v1 ike-gateway gw1",
        f"{M} ipsec vpn v1 group 1",
        *extra,
    ]


def text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def diags(lines: list[str]) -> list[Diagnostic]:
    found = check_config(text(lines), "gvpn.conf")
    for d in found:
        assert KEY not in d.format()
    return found


def only(lines: list[str]) -> Diagnostic:
    found = diags(lines)
    assert len(found) == 1, [d.format() for d in found]
    return found[0]


# -- the spec example ----------------------------------------------------------------------


def test_spec_server_group() -> None:
    config = load_config_file(SPEC / "server.conf")
    assert config.server is not None and config.member is None
    proposal = IpsecProposal("group-prop", "3des-cbc", "hmac-sha1-96", 3600)
    assert config.server.ipsec_proposals == {"group-prop": proposal}
    assert list(config.server.groups) == ["g1"]
    group = config.server.groups["g1"]
    assert group.group_id == 1
    assert group.server_address == IPv4Address("20.0.0.1")
    gateways = config.server.ike.gateways
    assert group.ike_gateways == (gateways["gw-member1"], gateways["gw-member2"])
    assert group.ike_gateways[0] is gateways["gw-member1"]
    assert group.activation_time_delay == 15 and group.anti_replay_time_window == 100
    (sa,) = group.ipsec_sas
    assert sa.name == "group-sa" and sa.proposal is config.server.ipsec_proposals["group-prop"]
    net = IPv4Network
    assert sa.match_policies == (
        MatchPolicy("p1", net("10.1.0.0/16"), net("10.2.0.0/16")),
        MatchPolicy("p2", net("10.2.0.0/16"), net("10.1.0.0/16")),
        MatchPolicy("p3", net("10.1.1.1/32"), net("239.1.1.1/32")),
    )
    assert [p.name for _, p in group.match_policies] == ["p1", "p2", "p3"]
    assert group.server_member_communication == ServerMemberCommunication(
        "aes-128-cbc", "md5", "unicast", 3600, 300, 2, 10
    )
    lo0 = config.interfaces["lo0"].units[0]
    assert [str(a) for a in lo0.addresses] == ["20.0.0.1/32"]


@pytest.mark.parametrize(("name", "wan"), [("member1", "198.51.100.1"), ("member2", "203.0.113.1")])
def test_spec_member_vpns(name: str, wan: str) -> None:
    config = load_config_file(SPEC / f"{name}.conf")
    assert config.member is not None and config.server is None
    (vpn,) = config.member.vpns.values()
    assert vpn.name == "gvpn1" and vpn.group_id == 1
    assert vpn.ike_gateway is config.member.ike.gateways["gw1"]
    assert vpn.ike_gateway.local_address == IPv4Address(wan)
    assert vpn.external_interface == "ge-0/0/1.0"
    assert vpn.heartbeat_threshold == 3
    assert config.interfaces["ge-0/0/1"].mtu == 1400


def test_spec_group_id_matches_members() -> None:
    server = load_config_file(SPEC / "server.conf").server
    assert server is not None
    for name in ("member1", "member2"):
        member = load_config_file(SPEC / f"{name}.conf").member
        assert member is not None
        assert member.vpns["gvpn1"].group_id == server.groups["g1"].group_id


@pytest.mark.parametrize("name", ["server.conf", "member1.conf", "member2.conf"])
def test_examples_mirror_the_fixtures(name: str) -> None:
    assert (EXAMPLES / name).read_text() == (SPEC / name).read_text()


# -- defaults and statements ------------------------------------------------------------------


def test_group_defaults() -> None:
    config = load_config(text(server()))
    assert config.server is not None
    group = config.server.groups["g1"]
    assert group.activation_time_delay == 15
    assert group.anti_replay_time_window == 100
    assert group.server_address is None and group.description is None
    assert group.server_member_communication is None
    policy = group.ipsec_sas[0].match_policies[0]
    assert (policy.source_port, policy.destination_port, policy.protocol) == (0, 0, 0)
    assert config.server.ipsec_proposals["ip1"].lifetime_seconds == 3600


def test_server_member_communication_defaults() -> None:
    config = load_config(
        text(
            server(
                f"{G} server-member-communication encryption-algorithm aes-256-cbc",
                f"{G} server-member-communication sig-hash-algorithm sha-256",
            )
        )
    )
    assert config.server is not None
    smc = config.server.groups["g1"].server_member_communication
    assert smc == ServerMemberCommunication("aes-256-cbc", "sha-256")
    assert (smc.communication_type, smc.lifetime_seconds, smc.heartbeat) == ("unicast", 3600, 300)
    assert (smc.number_of_retransmission, smc.retransmission_period) == (2, 10)


def test_all_group_statements() -> None:
    config = load_config(
        text(
            server(
                f'{G} description "branch offices"',
                f"{G} server-address 20.0.0.1",
                f"{G} activation-time-delay 20",
                f"{G} anti-replay-time-window 60",
                f"{G} ipsec-sa sa1 match-policy p1 source-port 1024",
                f"{G} ipsec-sa sa1 match-policy p1 destination-port 80",
                f"{G} ipsec-sa sa1 match-policy p1 protocol 6",
                f"{S} ipsec proposal ip1 lifetime-seconds 7200",
                f"{S} ipsec proposal ip1 description strong",
                f"{G} server-member-communication communication-type multicast",
                f"{G} server-member-communication multicast-group 226.1.1.1",
                f"{G} server-member-communication multicast-outgoing-interface ge-0/0/1.0",
                f"{G} server-member-communication encryption-algorithm aes-128-cbc",
                f"{G} server-member-communication sig-hash-algorithm sha1",
                f"{G} server-member-communication lifetime-seconds 600",
                f"{G} server-member-communication heartbeat 60",
                f"{G} server-member-communication number-of-retransmission 0",
                f"{G} server-member-communication retransmission-period 60",
                f"{G} server-member-communication certificate srv-cert",
                "set interfaces ge-0/0/1 unit 0 family inet address 192.0.2.1/24",
            )
        )
    )
    assert config.server is not None
    group = config.server.groups["g1"]
    assert group.description == "branch offices"
    assert (group.activation_time_delay, group.anti_replay_time_window) == (20, 60)
    policy = group.ipsec_sas[0].match_policies[0]
    assert (policy.source_port, policy.destination_port, policy.protocol) == (1024, 80, 6)
    assert group.ipsec_sas[0].proposal == IpsecProposal(
        "ip1", "aes-128-cbc", "hmac-sha1-96", 7200, "strong"
    )
    assert group.server_member_communication == ServerMemberCommunication(
        "aes-128-cbc",
        "sha1",
        "multicast",
        600,
        60,
        0,
        60,
        IPv4Address("226.1.1.1"),
        "ge-0/0/1.0",
        "srv-cert",
    )


def test_no_anti_replay_and_last_one_wins() -> None:
    config = load_config(text(server(f"{G} no-anti-replay")))
    assert config.server is not None
    assert config.server.groups["g1"].anti_replay_time_window is None
    config = load_config(text(server(f"{G} no-anti-replay", f"{G} anti-replay-time-window 200")))
    assert config.server is not None
    assert config.server.groups["g1"].anti_replay_time_window == 200
    config = load_config(text(server(f"{G} anti-replay-time-window 200", f"{G} no-anti-replay")))
    assert config.server is not None
    assert config.server.groups["g1"].anti_replay_time_window is None


def test_several_groups_gateways_and_sas_keep_order() -> None:
    config = load_config(
        text(
            server(
                f"{S} ike gateway gw2 ike-policy pol1",
                f"{S} ike gateway gw2 address 10.2.0.1",
                f"{G} ike-gateway gw2",
                f"{G} ike-gateway gw1",
                f"{G} ipsec-sa sa0 proposal ip1",
                f"{G} ipsec-sa sa0 match-policy q source 10.3.0.0/16",
                f"{G} ipsec-sa sa0 match-policy q destination 10.4.0.0/16",
                f"{S} group g0 group-id 2",
                f"{S} group g0 ike-gateway [ gw2 gw1 ]",
            )
        )
    )
    assert config.server is not None
    g1, g0 = config.server.groups["g1"], config.server.groups["g0"]
    assert list(config.server.groups) == ["g1", "g0"]
    assert [g.name for g in g1.ike_gateways] == ["gw1", "gw2"]
    assert [g.name for g in g0.ike_gateways] == ["gw2", "gw1"]
    assert [sa.name for sa in g1.ipsec_sas] == ["sa1", "sa0"]
    assert g0.ipsec_sas == ()


def test_match_policy_prefix_forms() -> None:
    config = load_config(
        text(
            server(
                f"{G} ipsec-sa sa1 match-policy p2 source 10.1.2.3/16",
                f"{G} ipsec-sa sa1 match-policy p2 destination 10.9.9.9",
                f"{G} ipsec-sa sa1 match-policy p3 source 0.0.0.0/0",
                f"{G} ipsec-sa sa1 match-policy p3 destination 0.0.0.0/0",
            )
        )
    )
    assert config.server is not None
    _, p2, p3 = config.server.groups["g1"].ipsec_sas[0].match_policies
    assert (p2.source, p2.destination) == (IPv4Network("10.1.0.0/16"), IPv4Network("10.9.9.9/32"))
    assert p3.source == p3.destination == IPv4Network("0.0.0.0/0")


def test_member_vpn_statements() -> None:
    config = load_config(
        text(
            member(
                f"{M} ipsec vpn v1 group-vpn-external-interface ge-0/0/1.0",
                f"{M} ipsec vpn v1 heartbeat-threshold 0",
                f"{M} ipsec vpn v2 ike-gateway gw1",
                f"{M} ipsec vpn v2 group 2",
            )
        )
    )
    assert config.member is not None
    v1, v2 = config.member.vpns.values()
    assert (v1.group_id, v1.external_interface, v1.heartbeat_threshold) == (1, "ge-0/0/1.0", 0)
    assert (v2.group_id, v2.external_interface, v2.heartbeat_threshold) == (2, None, 3)
    assert v1.ike_gateway is v2.ike_gateway is config.member.ike.gateways["gw1"]


def test_base_configurations_are_valid() -> None:
    assert diags(server()) == []
    assert diags(member()) == []
