"""Commit checks of server groups and member VPNs: exact messages, paths and lines."""

from __future__ import annotations

import pytest

from groupvpn.config import ConfigError, load_config
from groupvpn.config.model_groups import IpsecEncryptionAlgorithm
from tests.unit.test_config_groups import KEY, G, M, S, diags, member, only, server, text

EDIT_G1 = ("security", "group-vpn", "server", "group", "g1")
EDIT_SA1 = (*EDIT_G1, "ipsec-sa", "sa1")


def test_identical_group_policies_in_one_sa() -> None:
    d = only(
        server(
            f"{G} ipsec-sa sa1 match-policy p2 source 10.1.0.0/16",
            f"{G} ipsec-sa sa1 match-policy p2 destination 10.2.0.0/16",
        )
    )
    assert d.format() == (
        "gvpn.conf:16: [edit security group-vpn server group g1 ipsec-sa sa1]\n"
        "  'match-policy p2'\n"
        "    Identical group policies are not allowed in a group: same source, destination, "
        "ports and protocol as match-policy p1 (ipsec-sa sa1)"
    )


def test_identical_group_policies_across_sas_with_explicit_defaults() -> None:
    d = only(
        server(
            f"{G} ipsec-sa sa2 proposal ip1",
            f"{G} ipsec-sa sa2 match-policy x source 10.1.0.0/16",
            f"{G} ipsec-sa sa2 match-policy x destination 10.2.0.0/16",
            f"{G} ipsec-sa sa2 match-policy x protocol 0",
        )
    )
    assert (d.line, d.path, d.statement) == (17, (*EDIT_G1, "ipsec-sa", "sa2"), "match-policy x")
    assert d.message.endswith("as match-policy p1 (ipsec-sa sa1)")


def test_policies_differing_in_one_field_are_not_identical() -> None:
    for field in ("source-port 1", "destination-port 1", "protocol 17"):
        assert (
            diags(
                server(
                    f"{G} ipsec-sa sa1 match-policy p2 source 10.1.0.0/16",
                    f"{G} ipsec-sa sa1 match-policy p2 destination 10.2.0.0/16",
                    f"{G} ipsec-sa sa1 match-policy p2 {field}",
                )
            )
            == []
        )


def test_same_policy_in_two_groups_is_fine() -> None:
    assert (
        diags(
            server(
                f"{S} group g2 group-id 2",
                f"{S} group g2 ipsec-sa sa1 proposal ip1",
                f"{S} group g2 ipsec-sa sa1 match-policy p1 source 10.1.0.0/16",
                f"{S} group g2 ipsec-sa sa1 match-policy p1 destination 10.2.0.0/16",
            )
        )
        == []
    )


def test_duplicate_group_id() -> None:
    d = only(server(f"{S} group g2 group-id 1"))
    assert d.format() == (
        "gvpn.conf:16: [edit security group-vpn server group g2]\n"
        "  'group-id 1'\n"
        "    Group id must be unique among groups"
    )


def test_duplicate_member_vpn_group() -> None:
    d = only(member(f"{M} ipsec vpn v2 ike-gateway gw1", f"{M} ipsec vpn v2 group 1"))
    assert d.format() == (
        "gvpn.conf:13: [edit security group-vpn member ipsec vpn v2]\n"
        "  'group 1'\n"
        "    Group id must be unique among group vpns"
    )


def test_undefined_ipsec_proposal() -> None:
    d = only(server(f"{G} ipsec-sa sa1 proposal nope"))
    assert (d.line, d.path, d.statement, d.message) == (
        16,
        EDIT_SA1,
        "proposal nope",
        "Referenced proposal is not defined",
    )


def test_undefined_server_gateway() -> None:
    d = only(server(f"{G} ike-gateway gw9"))
    assert d.format() == (
        "gvpn.conf:16: [edit security group-vpn server group g1]\n"
        "  'ike-gateway gw9'\n"
        "    Referenced IKE gateway must be defined under "
        "[edit security group-vpn server ike gateway]"
    )


def test_undefined_member_gateway() -> None:
    d = only(member(f"{M} ipsec vpn v1 ike-gateway gw9"))
    assert (d.line, d.statement, d.message) == (
        12,
        "ike-gateway gw9",
        "Referenced IKE gateway must be defined under [edit security group-vpn member ike gateway]",
    )


def test_member_gateway_is_not_a_server_gateway() -> None:
    # A member VPN cannot use a server gateway (co-location keeps them apart).
    lines = [
        "set security group-vpn co-location",
        *server(),
        f"{M} ipsec vpn v1 ike-gateway gw1",
        f"{M} ipsec vpn v1 group 1",
    ]
    found = diags(lines)
    assert [d.message for d in found] == [
        "Referenced IKE gateway must be defined under [edit security group-vpn member ike gateway]"
    ]


def test_ipsec_lifetime_below_ten_activation_delays() -> None:
    d = only(server(f"{G} activation-time-delay 400"))
    assert d.format() == (
        "gvpn.conf:13: [edit security group-vpn server group g1 ipsec-sa sa1]\n"
        "  'proposal ip1'\n"
        "    IPsec proposal ip1 lifetime (3600 seconds) must be at least 10 times "
        "activation-time-delay (400 seconds)"
    )
    # exactly 10 x is fine
    assert diags(server(f"{G} activation-time-delay 360")) == []


def test_kek_lifetime_below_ten_activation_delays() -> None:
    found = diags(
        server(
            f"{G} activation-time-delay 30",
            f"{G} server-member-communication encryption-algorithm aes-128-cbc",
            f"{G} server-member-communication sig-hash-algorithm md5",
            f"{G} server-member-communication lifetime-seconds 240",
        )
    )
    assert [(d.line, d.statement, d.message) for d in found] == [
        (
            19,
            "lifetime-seconds",
            "Server-member communication lifetime (240 seconds) must be at least 10 times "
            "activation-time-delay (30 seconds)",
        )
    ]
    assert found[0].path == (*EDIT_G1, "server-member-communication")


@pytest.mark.parametrize(
    ("lines", "line", "path", "statement", "keyword"),
    [
        (
            [f"{S} group g2 description x"],
            16,
            ("security", "group-vpn", "server"),
            "group g2",
            "group-id",
        ),
        (
            [
                f"{G} ipsec-sa sa2 match-policy q source 10.0.0.0/8",
                f"{G} ipsec-sa sa2 match-policy q destination 10.0.0.0/8",
            ],
            16,
            EDIT_G1,
            "ipsec-sa sa2",
            "proposal",
        ),
        (
            [f"{G} ipsec-sa sa1 match-policy q source 10.9.0.0/16"],
            16,
            EDIT_SA1,
            "match-policy q",
            "destination",
        ),
        (
            [f"{G} ipsec-sa sa1 match-policy q destination 10.9.0.0/16"],
            16,
            EDIT_SA1,
            "match-policy q",
            "source",
        ),
        (
            [f"{G} server-member-communication sig-hash-algorithm md5"],
            16,
            EDIT_G1,
            "server-member-communication",
            "encryption-algorithm",
        ),
        (
            [f"{G} server-member-communication encryption-algorithm des-cbc"],
            16,
            EDIT_G1,
            "server-member-communication",
            "sig-hash-algorithm",
        ),
        (
            [f"{S} ipsec proposal ip2 encryption-algorithm des-cbc"],
            16,
            ("security", "group-vpn", "server", "ipsec"),
            "proposal ip2",
            "authentication-algorithm",
        ),
    ],
)
def test_missing_mandatory_server(
    lines: list[str], line: int, path: tuple[str, ...], statement: str, keyword: str
) -> None:
    d = only(server(*lines))
    assert (d.line, d.path, d.statement, d.message) == (
        line,
        path,
        statement,
        f"Missing mandatory statement: '{keyword}'",
    )
    assert d.missing_mandatory


@pytest.mark.parametrize("keyword", ["ike-gateway", "group"])
def test_missing_mandatory_member_vpn(keyword: str) -> None:
    lines = [line for line in member() if f"vpn v1 {keyword} " not in line]
    d = only(lines)
    assert (d.statement, d.message) == ("vpn v1", f"Missing mandatory statement: '{keyword}'")
    assert d.path == ("security", "group-vpn", "member", "ipsec")


def test_multicast_needs_group_and_interface() -> None:
    found = diags(
        server(
            f"{G} server-member-communication communication-type multicast",
            f"{G} server-member-communication encryption-algorithm aes-128-cbc",
            f"{G} server-member-communication sig-hash-algorithm md5",
        )
    )
    assert [(d.line, d.statement, d.message) for d in found] == [
        (
            16,
            "communication-type multicast",
            "Multicast group must be defined for communication-type multicast",
        ),
        (
            16,
            "communication-type multicast",
            "Multicast outgoing interface must be defined for communication-type multicast",
        ),
    ]


def test_unicast_needs_neither() -> None:
    assert (
        diags(
            server(
                f"{G} server-member-communication communication-type unicast",
                f"{G} server-member-communication encryption-algorithm aes-128-cbc",
                f"{G} server-member-communication sig-hash-algorithm md5",
            )
        )
        == []
    )


@pytest.mark.parametrize("interface", ["ge-0/0/2.0", "ge-0/0/1.5"])
def test_external_interface_must_be_configured(interface: str) -> None:
    d = only(member(f"{M} ipsec vpn v1 group-vpn-external-interface {interface}"))
    assert (d.line, d.statement, d.message) == (
        12,
        f"group-vpn-external-interface {interface}",
        "Referenced interface must be configured under [edit interfaces] hierarchy",
    )


def test_multicast_outgoing_interface_must_be_configured() -> None:
    found = diags(
        server(
            f"{G} server-member-communication communication-type multicast",
            f"{G} server-member-communication multicast-group 226.1.1.1",
            f"{G} server-member-communication multicast-outgoing-interface ge-0/0/3.0",
            f"{G} server-member-communication encryption-algorithm aes-128-cbc",
            f"{G} server-member-communication sig-hash-algorithm md5",
        )
    )
    assert [(d.line, d.message) for d in found] == [
        (18, "Referenced interface must be configured under [edit interfaces] hierarchy")
    ]


@pytest.mark.parametrize(
    ("line", "statement", "message"),
    [
        (f"{G} group-id 0", "group-id 0", "Value 0 is not within range (1..65535)"),
        (
            f"{G} activation-time-delay 5",
            "activation-time-delay 5",
            "Value 5 is not within range (10..900)",
        ),
        (
            f"{G} anti-replay-time-window 400",
            "anti-replay-time-window 400",
            "Value 400 is not within range (60..360)",
        ),
        (
            f"{G} ipsec-sa sa1 match-policy p1 protocol 255",
            "protocol 255",
            "Value 255 is not within range (0..254)",
        ),
        (
            f"{G} ipsec-sa sa1 match-policy p1 source-port 65536",
            "source-port 65536",
            "Value 65536 is not within range (0..65535)",
        ),
        (
            f"{G} ipsec-sa sa1 match-policy p1 source 10.1.0.0/33",
            "source 10.1.0.0/33",
            "Invalid IPv4 prefix: '10.1.0.0/33'",
        ),
        (f"{G} server-address 20.0.0", "server-address 20.0.0", "Invalid IPv4 address: '20.0.0'"),
        (
            f"{G} server-member-communication heartbeat 59",
            "heartbeat 59",
            "Value 59 is not within range (60..3600)",
        ),
        (
            f"{G} server-member-communication number-of-retransmission 61",
            "number-of-retransmission 61",
            "Value 61 is not within range (0..60)",
        ),
        (
            f"{G} server-member-communication retransmission-period 1",
            "retransmission-period 1",
            "Value 1 is not within range (2..60)",
        ),
        (
            f"{G} server-member-communication lifetime-seconds 179",
            "lifetime-seconds 179",
            "Value 179 is not within range (180..86400)",
        ),
        (
            f"{S} ipsec proposal ip1 lifetime-seconds 86401",
            "lifetime-seconds 86401",
            "Value 86401 is not within range (180..86400)",
        ),
    ],
)
def test_server_values_out_of_range(line: str, statement: str, message: str) -> None:
    found = diags(server(line))
    assert (found[0].line, found[0].statement, found[0].message) == (16, statement, message)


def test_bad_keywords_are_syntax_errors() -> None:
    d = only(server(f"{S} ipsec proposal ip1 authentication-algorithm sha1"))
    assert d.headline == "syntax error: sha1"
    assert d.message == (
        "syntax error, expecting one of: hmac-md5-96 hmac-sha1-96 hmac-sha-256-128"
    )
    d = only(server(f"{G} server-member-communication sig-hash-algorithm sha-384"))
    assert d.message == "syntax error, expecting one of: md5 sha1 sha-256"


def test_member_values_out_of_range() -> None:
    d = only(member(f"{M} ipsec vpn v1 heartbeat-threshold 11"))
    assert (d.line, d.message) == (12, "Value 11 is not within range (0..10)")
    found = diags(member(f"{M} ipsec vpn v1 group 70000"))
    assert (found[0].line, found[0].message) == (12, "Value 70000 is not within range (1..65535)")


def test_errors_never_show_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(text(server(f"{G} ike-gateway nope", f"{S} group g2 group-id 1")))
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert "Group id must be unique among groups" in str(info.value)


# -- AES-GCM proposals ----------------------------------------------------------------------

GCM_PROPOSAL = [
    f"{S} ipsec proposal gcm encryption-algorithm aes-256-gcm",
    f"{G} ipsec-sa sa2 proposal gcm",
    f"{G} ipsec-sa sa2 match-policy q source 10.3.0.0/16",
    f"{G} ipsec-sa sa2 match-policy q destination 10.4.0.0/16",
]


@pytest.mark.parametrize("cipher", ["aes-128-gcm", "aes-256-gcm"])
def test_a_gcm_proposal_without_authentication_algorithm_is_accepted(
    cipher: IpsecEncryptionAlgorithm,
) -> None:
    from groupvpn.config.model_groups import IpsecProposal
    from groupvpn.runtime.binding import group_definitions

    lines = [line.replace("aes-256-gcm", cipher) for line in GCM_PROPOSAL]
    assert diags(server(*lines)) == []
    config = load_config(text(server(*lines)))
    assert config.server is not None
    assert config.server.ipsec_proposals["gcm"] == IpsecProposal("gcm", cipher, None)
    (definition,) = group_definitions(config)
    gcm = {policy.name: policy for policy in definition.policies}["q"]
    assert gcm.cipher.name == cipher and gcm.integrity is None
    assert gcm.cipher.counter_mode and gcm.cipher.transform_id == 20


def test_a_gcm_proposal_with_an_authentication_algorithm_is_refused() -> None:
    d = only(server(*GCM_PROPOSAL, f"{S} ipsec proposal gcm authentication-algorithm hmac-sha1-96"))
    assert d.format() == (
        "gvpn.conf:20: [edit security group-vpn server ipsec proposal gcm]\n"
        "  'authentication-algorithm hmac-sha1-96'\n"
        "    Authentication algorithm must not be configured with encryption-algorithm "
        "aes-256-gcm"
    )
    assert not d.missing_mandatory


def test_a_cbc_proposal_still_needs_its_authentication_algorithm() -> None:
    d = only(server(f"{S} ipsec proposal ip2 encryption-algorithm aes-128-cbc"))
    assert d.format() == (
        "gvpn.conf:16: [edit security group-vpn server ipsec]\n"
        "  'proposal ip2'\n"
        "    Missing mandatory statement: 'authentication-algorithm'"
    )
    assert d.missing_mandatory
    with pytest.raises(ConfigError) as failure:
        load_config(text(server(f"{S} ipsec proposal ip2 encryption-algorithm aes-128-cbc")))
    assert str(failure.value).endswith(
        "error: configuration check-out failed: (missing mandatory statements)"
    )


def test_a_proposal_with_neither_is_missing_only_its_encryption_algorithm() -> None:
    d = only(server(f"{S} ipsec proposal ip2 lifetime-seconds 3600"))
    assert d.message == "Missing mandatory statement: 'encryption-algorithm'"


def test_gcm_is_not_a_kek_algorithm() -> None:
    d = only(server(f"{G} server-member-communication encryption-algorithm aes-128-gcm"))
    assert d.headline == "syntax error: aes-128-gcm"
    assert d.message == (
        "syntax error, expecting one of: des-cbc 3des-cbc aes-128-cbc aes-192-cbc aes-256-cbc"
    )
    d = only(server(f"{S} ipsec proposal ip1 encryption-algorithm aes-192-gcm"))
    assert d.message == (
        "syntax error, expecting one of: des-cbc 3des-cbc aes-128-cbc aes-192-cbc aes-256-cbc "
        "aes-128-gcm aes-256-gcm"
    )
