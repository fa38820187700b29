"""Loading valid configurations into the typed model."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from groupvpn.config import (
    PROPOSAL_SETS,
    Config,
    Identity,
    IkeProposal,
    Secret,
    load_config,
    load_config_file,
)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PSK = b"$ecret-Key 1"

MEMBER_PREFIX = "set security group-vpn member ike"


def member(*lines: str) -> str:
    return "\n".join(f"{MEMBER_PREFIX} {line}" for line in lines) + "\n"


def minimal_member(*extra: str) -> str:
    """A complete member config; ``extra`` lines are added at the end."""
    return member(
        "proposal p1 authentication-method pre-shared-keys",
        "proposal p1 authentication-algorithm sha1",
        "proposal p1 dh-group group2",
        "proposal p1 encryption-algorithm 3des-cbc",
        "policy pol1 proposals p1",
        'policy pol1 pre-shared-key ascii-text "k"',
        "gateway gw1 ike-policy pol1",
        "gateway gw1 address 20.0.0.1",
        *extra,
    )


SPEC_PROPOSAL = dict(
    authentication_method="pre-shared-keys",
    authentication_algorithm="sha1",
    dh_group=2,
    encryption_algorithm="3des-cbc",
    lifetime_seconds=28800,
    description=None,
)


def test_spec_server_example() -> None:
    config = load_config_file(CONFIGS / "server.conf")
    assert config.member is None and not config.co_location
    assert config.server is not None
    ike = config.server.ike
    assert ike.proposals["srv-prop"] == IkeProposal("srv-prop", **SPEC_PROPOSAL)  # type: ignore[arg-type]
    policy = ike.policies["srv-pol"]
    assert policy.mode == "main"
    assert policy.proposals == (ike.proposals["srv-prop"],)
    assert policy.pre_shared_key.reveal() == PSK
    assert list(ike.gateways) == ["gw-member1", "gw-member2"]
    gw1, gw2 = ike.gateways.values()
    assert gw1.policy is policy and gw2.policy is policy
    assert gw1.addresses == (IPv4Address("10.1.0.1"),)
    assert gw2.addresses == (IPv4Address("10.2.0.1"),)
    assert gw1.local_address == gw2.local_address == IPv4Address("20.0.0.1")
    assert gw1.local_identity is None and gw1.remote_identity is None


@pytest.mark.parametrize(("name", "local"), [("member1", "10.1.0.1"), ("member2", "10.2.0.1")])
def test_spec_member_examples(name: str, local: str) -> None:
    config = load_config_file(CONFIGS / f"{name}.conf")
    assert config.server is None and config.member is not None
    ike = config.member.ike
    assert ike.proposals["prop1"] == IkeProposal("prop1", **SPEC_PROPOSAL)  # type: ignore[arg-type]
    (gateway,) = ike.gateways.values()
    assert gateway.name == "gw1"
    assert gateway.addresses == (IPv4Address("20.0.0.1"),)
    assert gateway.local_address == IPv4Address(local)
    assert gateway.policy.mode == "main"
    assert gateway.policy.pre_shared_key.reveal() == PSK


def test_server_and_member_phase1_match() -> None:
    server = load_config_file(CONFIGS / "server.conf").server
    member1 = load_config_file(CONFIGS / "member1.conf").member
    assert server is not None and member1 is not None
    server_props = server.ike.policies["srv-pol"].proposals
    member_props = member1.ike.policies["pol1"].proposals
    strip = [dataclasses.replace(p, name="") for p in server_props]
    assert strip == [dataclasses.replace(p, name="") for p in member_props]


def test_colocation_example() -> None:
    config = load_config_file(CONFIGS / "colocation.conf")
    assert config.co_location
    assert config.server is not None and config.member is not None
    assert config.member.ike.gateways["gw1"].local_address == IPv4Address("10.1.0.1")


def test_defaults_applied() -> None:
    config = load_config(minimal_member())
    assert config.member is not None
    proposal = config.member.ike.proposals["p1"]
    assert proposal.lifetime_seconds == 28800
    assert proposal.description is None
    policy = config.member.ike.policies["pol1"]
    assert policy.mode == "main"
    assert policy.description is None
    assert policy.proposal_set is None


def test_all_statements() -> None:
    config = load_config(
        minimal_member(
            "proposal p1 lifetime-seconds 180",
            'proposal p1 description "Phase 1 to the key server"',
            "proposal p2 authentication-method pre-shared-keys",
            "proposal p2 authentication-algorithm sha-256",
            "proposal p2 dh-group group2",
            "proposal p2 encryption-algorithm aes-256-cbc",
            "proposal p2 lifetime-seconds 86400",
            "policy pol1 mode aggressive",
            "policy pol1 description to-ks",
            "gateway gw1 local-address 10.1.0.1",
            "gateway gw1 local-identity inet 10.1.0.1",
            "gateway gw1 remote-identity hostname ks.example.net",
        )
    )
    assert config.member is not None
    ike = config.member.ike
    assert ike.proposals["p1"].lifetime_seconds == 180
    assert ike.proposals["p1"].description == "Phase 1 to the key server"
    assert ike.proposals["p2"].lifetime_seconds == 86400
    assert ike.proposals["p2"].authentication_algorithm == "sha-256"
    assert ike.proposals["p2"].encryption_algorithm == "aes-256-cbc"
    policy = ike.policies["pol1"]
    assert policy.mode == "aggressive" and policy.description == "to-ks"
    gateway = ike.gateways["gw1"]
    assert gateway.local_identity == Identity("inet", IPv4Address("10.1.0.1"))
    assert gateway.remote_identity == Identity("hostname", "ks.example.net")


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("user-at-hostname gm1@example.net", Identity("user-at-hostname", "gm1@example.net")),
        ("key-id gm-1", Identity("key-id", "gm-1")),
        ('key-id "with space"', Identity("key-id", "with space")),
        ("hostname gm1.example.net.", Identity("hostname", "gm1.example.net.")),
    ],
)
def test_identities(statement: str, expected: Identity) -> None:
    config = load_config(minimal_member(f"gateway gw1 local-identity {statement}"))
    assert config.member is not None
    assert config.member.ike.gateways["gw1"].local_identity == expected


@pytest.mark.parametrize(
    ("dh", "enc", "auth"),
    [
        ("group1", "des-cbc", "md5"),
        ("group5", "aes-128-cbc", "sha-384"),
        ("group14", "aes-192-cbc", "sha1"),
    ],
)
def test_enum_values(dh: str, enc: str, auth: str) -> None:
    text = member(
        "proposal p authentication-method pre-shared-keys",
        f"proposal p authentication-algorithm {auth}",
        f"proposal p dh-group {dh}",
        f"proposal p encryption-algorithm {enc}",
    )
    config = load_config(text)
    assert config.member is not None
    proposal = config.member.ike.proposals["p"]
    assert proposal.dh_group == int(dh.removeprefix("group"))
    assert proposal.encryption_algorithm == enc
    assert proposal.authentication_algorithm == auth


@pytest.mark.parametrize("name", ["basic", "compatible", "standard"])
def test_proposal_set_expansion(name: str) -> None:
    text = member(
        f"policy pol proposal-set {name}",
        "policy pol pre-shared-key ascii-text k",
        "gateway gw ike-policy pol",
        "gateway gw address 20.0.0.1",
    )
    config = load_config(text)
    assert config.member is not None
    policy = config.member.ike.policies["pol"]
    assert policy.proposal_set == name
    assert policy.proposals == PROPOSAL_SETS[name]
    assert config.member.ike.proposals == {}


def test_proposal_sets_are_junos_predefined() -> None:
    def names(set_name: str) -> list[str]:
        return [p.name for p in PROPOSAL_SETS[set_name]]  # type: ignore[index]

    assert names("basic") == ["pre-g1-des-sha", "pre-g1-des-md5"]
    assert names("compatible") == [
        "pre-g2-3des-sha",
        "pre-g2-3des-md5",
        "pre-g2-des-sha",
        "pre-g2-des-md5",
    ]
    assert names("standard") == ["pre-g2-aes128-sha", "pre-g2-3des-sha"]
    standard = PROPOSAL_SETS["standard"][0]
    assert standard == IkeProposal(
        "pre-g2-aes128-sha", "pre-shared-keys", "sha1", 2, "aes-128-cbc", 28800
    )
    for proposals in PROPOSAL_SETS.values():
        for proposal in proposals:
            assert proposal.lifetime_seconds == 28800
            assert proposal.authentication_method == "pre-shared-keys"


def _props(n: int) -> list[str]:
    lines = []
    for i in range(1, n + 1):
        lines += [
            f"proposal p{i} authentication-method pre-shared-keys",
            f"proposal p{i} authentication-algorithm sha1",
            f"proposal p{i} dh-group group2",
            f"proposal p{i} encryption-algorithm 3des-cbc",
        ]
    return lines


def _policy_names(text: str) -> list[str]:
    config = load_config(text)
    assert config.member is not None
    return [p.name for p in config.member.ike.policies["pol"].proposals]


def test_proposals_keep_their_order() -> None:
    base = [*_props(4), "policy pol pre-shared-key ascii-text k"]
    assert _policy_names(member(*base, "policy pol proposals [ p3 p1 p4 p2 ]")) == [
        "p3",
        "p1",
        "p4",
        "p2",
    ]


def test_repeated_proposals_lines_append_without_duplicates() -> None:
    base = [*_props(3), "policy pol pre-shared-key ascii-text k"]
    text = member(
        *base,
        "policy pol proposals p2",
        "policy pol proposals [ p3 p2 ]",
        "policy pol proposals p1",
    )
    assert _policy_names(text) == ["p2", "p3", "p1"]


def test_proposals_and_proposal_set_last_one_wins() -> None:
    # They are a Junos choice: setting one removes the other.
    base = [*_props(1), "policy pol pre-shared-key ascii-text k"]
    config = load_config(member(*base, "policy pol proposals p1", "policy pol proposal-set basic"))
    assert config.member is not None
    assert config.member.ike.policies["pol"].proposal_set == "basic"
    config = load_config(member(*base, "policy pol proposal-set basic", "policy pol proposals p1"))
    assert config.member is not None
    assert config.member.ike.policies["pol"].proposal_set is None
    assert [p.name for p in config.member.ike.policies["pol"].proposals] == ["p1"]


def test_later_leaf_replaces_earlier() -> None:
    config = load_config(
        minimal_member("proposal p1 lifetime-seconds 3600", "proposal p1 lifetime-seconds 7200")
    )
    assert config.member is not None
    assert config.member.ike.proposals["p1"].lifetime_seconds == 7200


def test_server_gateway_may_have_several_addresses() -> None:
    text = minimal_member().replace("member ike", "server ike") + (
        "set security group-vpn server ike gateway gw1 address 20.0.0.2\n"
    )
    config = load_config(text)
    assert config.server is not None
    assert config.server.ike.gateways["gw1"].addresses == (
        IPv4Address("20.0.0.1"),
        IPv4Address("20.0.0.2"),
    )


def test_hexadecimal_key() -> None:
    text = minimal_member("policy pol1 pre-shared-key hexadecimal 0x00ff10")
    config = load_config(text)
    assert config.member is not None
    assert config.member.ike.policies["pol1"].pre_shared_key.reveal() == b"\x00\xff\x10"


def test_quoted_key_with_escapes() -> None:
    text = minimal_member(
        r'policy pol1 pre-shared-key ascii-text "a \"quoted\" \\ key # not a comment"'
    )
    config = load_config(text)
    assert config.member is not None
    key = config.member.ike.policies["pol1"].pre_shared_key
    assert key.reveal() == b'a "quoted" \\ key # not a comment'


def test_comments_blank_lines_and_crlf() -> None:
    text = (
        "# leading comment\r\n\r\n   \n"
        + minimal_member("gateway gw1 local-address 10.1.0.1   # trailing remark").replace(
            "\n", "\r\n"
        )
        + "    # indented comment\n"
    )
    config = load_config(text)
    assert config.member is not None
    assert config.member.ike.gateways["gw1"].local_address == IPv4Address("10.1.0.1")


def test_empty_configuration() -> None:
    assert load_config("") == Config(server=None, member=None, co_location=False)
    assert load_config("# nothing\n\n") == Config(server=None, member=None, co_location=False)


def test_empty_server_container() -> None:
    config = load_config("set security group-vpn server\n")
    assert config.server is not None
    assert dict(config.server.ike.gateways) == {}


def test_model_is_frozen() -> None:
    config = load_config(minimal_member())
    assert config.member is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.member.ike.proposals["p1"].dh_group = 5  # type: ignore[misc]


def test_secret_never_printed() -> None:
    secret = Secret(b"hunter2")
    assert repr(secret) == str(secret) == f"{secret}" == "<secret>"
    assert secret.reveal() == b"hunter2"
    assert secret == Secret(b"hunter2") and secret != Secret(b"other")
    config = load_config(minimal_member('policy pol1 pre-shared-key ascii-text "hunter2"'))
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config)
    assert "hunter2" not in repr(dataclasses.asdict(config))
