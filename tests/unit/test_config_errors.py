"""Rejected lines and commit checks: exact Junos-style messages and line numbers."""

from __future__ import annotations

import pytest

from groupvpn.config import ConfigError, Diagnostic, Phase, check_config, load_config

M = "set security group-vpn member ike"
S = "set security group-vpn server ike"


def proposal(prefix: str, name: str = "p1", dh: str = "group2") -> list[str]:
    return [
        f"{prefix} proposal {name} authentication-method pre-shared-keys",
        f"{prefix} proposal {name} authentication-algorithm sha1",
        f"{prefix} proposal {name} dh-group {dh}",
        f"{prefix} proposal {name} encryption-algorithm 3des-cbc",
    ]


def valid(prefix: str = M) -> list[str]:
    """Lines 1-8 of a valid configuration."""
    return [
        *proposal(prefix),
        f"{prefix} policy pol1 proposals p1",
        f'{prefix} policy pol1 pre-shared-key ascii-text "s3cr3t-key"',
        f"{prefix} gateway gw1 ike-policy pol1",
        f"{prefix} gateway gw1 address 20.0.0.1",
    ]


def diags(*lines: str) -> list[Diagnostic]:
    return check_config("\n".join(lines) + "\n", "member.conf")


def only(*lines: str) -> Diagnostic:
    found = diags(*lines)
    assert len(found) == 1, [d.format() for d in found]
    return found[0]


def test_valid_base_has_no_problems() -> None:
    assert diags(*valid()) == []
    assert diags(*valid(S)) == []


# -- load (syntax and value) errors -----------------------------------------------------------


def test_unknown_statement_layout() -> None:
    d = only(*valid(), f"{M} proposal p1 bogus")
    assert d.format() == (
        "member.conf:9: syntax error: bogus\n"
        "  [edit security group-vpn member ike proposal p1]\n"
        "    'bogus'\n"
        "      syntax error."
    )
    assert d.phase is Phase.LOAD and d.line == 9


def test_out_of_range_layout() -> None:
    d = only(*valid(S), f"{S} proposal p1 lifetime-seconds 90")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn server ike proposal p1]\n"
        "  'lifetime-seconds 90'\n"
        "    Value 90 is not within range (180..86400)"
    )


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("set bogus", ""),
        ("set security bogus", "security"),
        ("set security group-vpn bogus", "security group-vpn"),
        ("set security group-vpn member bogus", "security group-vpn member"),
        (f"{M} bogus", "security group-vpn member ike"),
        (f"{S} bogus", "security group-vpn server ike"),
        (f"{M} proposal p1 bogus", "security group-vpn member ike proposal p1"),
        (f"{M} policy pol1 bogus", "security group-vpn member ike policy pol1"),
        (f"{M} gateway gw1 bogus", "security group-vpn member ike gateway gw1"),
        (f"{S} gateway gw1 bogus", "security group-vpn server ike gateway gw1"),
    ],
)
def test_unknown_statement_at_every_level(line: str, path: str) -> None:
    d = only(*valid(S if " server " in line else M), line)
    assert d.line == 9
    assert d.headline == "syntax error: bogus"
    assert d.path == tuple(path.split())
    assert d.statement == "bogus" and d.message == "syntax error."
    assert d.format().splitlines()[1] == f"  [edit{' ' if path else ''}{path}]"


@pytest.mark.parametrize(
    "line",
    [
        "set security group-vpn co-location extra",
        f"{M} proposal p1 dh-group group2 extra",
        f"{M} policy pol1 proposals p1 extra",
        f"{M} policy pol1 proposals [ p1 ] extra",
        f"{M} gateway gw1 local-identity inet 1.2.3.4 extra",
    ],
)
def test_extra_word_is_a_syntax_error(line: str) -> None:
    d = only(*valid(), line)
    assert (d.headline, d.statement, d.message) == ("syntax error: extra", "extra", "syntax error.")


def test_misplaced_statement() -> None:
    # A gateway statement under a proposal, and a top-level one under ike.
    found = diags(*valid(), f"{M} proposal p1 ike-policy pol1", f"{M} co-location")
    assert [(d.line, d.statement, d.path[-1] if d.path else None) for d in found] == [
        (9, "ike-policy", "p1"),
        (10, "co-location", "ike"),
    ]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("dh-group group3", "syntax error, expecting one of: group1 group2 group5 group14"),
        (
            "encryption-algorithm aes-128-gcm",
            "syntax error, expecting one of: des-cbc 3des-cbc aes-128-cbc aes-192-cbc aes-256-cbc",
        ),
        (
            "authentication-algorithm sha-512",
            "syntax error, expecting one of: md5 sha1 sha-256 sha-384",
        ),
        (
            "authentication-method dsa-signatures",
            "syntax error, expecting one of: pre-shared-keys rsa-signatures",
        ),
    ],
)
def test_bad_enum_in_proposal(statement: str, message: str) -> None:
    d = only(*valid(), f"{M} proposal p1 {statement}")
    word = statement.split()[1]
    assert d.format() == (
        f"member.conf:9: syntax error: {word}\n"
        "  [edit security group-vpn member ike proposal p1]\n"
        f"    '{statement}'\n"
        f"      {message}"
    )


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("mode quick", "syntax error, expecting one of: main aggressive"),
        ("proposal-set strong", "syntax error, expecting one of: basic compatible standard"),
    ],
)
def test_bad_enum_in_policy(statement: str, message: str) -> None:
    d = only(*valid(), f"{M} policy pol1 {statement}")
    assert (d.line, d.statement, d.message) == (9, statement, message)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("179", "Value 179 is not within range (180..86400)"),
        ("86401", "Value 86401 is not within range (180..86400)"),
        ("0", "Value 0 is not within range (180..86400)"),
        ("-5", "Invalid numeric value: '-5'"),
        ("1e3", "Invalid numeric value: '1e3'"),
        ("٣٠٠", "Invalid numeric value: '٣٠٠'"),
    ],
)
def test_lifetime_range(value: str, message: str) -> None:
    d = only(*valid(), f"{M} proposal p1 lifetime-seconds {value}")
    assert (d.line, d.statement, d.message) == (9, f"lifetime-seconds {value}", message)


@pytest.mark.parametrize("bad", ["1.2.3", "1.2.3.256", "20.0.0.1/32", "ks.example.net", "::1"])
@pytest.mark.parametrize("statement", ["address", "local-address", "local-identity inet"])
def test_malformed_address(statement: str, bad: str) -> None:
    d = only(*valid(), f"{M} gateway gw1 {statement} {bad}")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn member ike gateway gw1]\n"
        f"  '{statement} {bad}'\n"
        f"    Invalid IPv4 address: '{bad}'"
    )


def test_malformed_address_in_list_rejects_whole_line() -> None:
    found = diags(*valid(), f"{M} gateway gw1 address [ 20.0.0.9 bad ]")
    assert [(d.line, d.message) for d in found] == [(9, "Invalid IPv4 address: 'bad'")]


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("hostname -bad-.example", "Invalid hostname: '-bad-.example'"),
        ("user-at-hostname nobody", "Invalid e-mail address: 'nobody'"),
        ("remote-identity-typo x", None),
    ],
)
def test_bad_identity(statement: str, message: str | None) -> None:
    if message is None:
        d = only(*valid(), f"{M} gateway gw1 {statement}")
        assert d.headline == "syntax error: remote-identity-typo"
        return
    d = only(*valid(), f"{M} gateway gw1 remote-identity {statement}")
    assert (d.statement, d.message) == (f"remote-identity {statement}", message)


def test_identity_needs_a_kind_and_value() -> None:
    found = diags(
        *valid(),
        f"{M} gateway gw1 local-identity distinguished-name",
        f"{M} gateway gw1 local-identity inet",
        f"{M} gateway gw1 local-identity",
    )
    assert [(d.line, d.statement, d.message) for d in found] == [
        (9, "distinguished-name", "syntax error."),
        (10, "local-identity inet", "missing argument."),
        (11, "local-identity", "missing argument."),
    ]


def test_missing_arguments() -> None:
    found = diags(
        *valid(),
        "set",
        f"{M} proposal",
        f"{M} proposal p1 dh-group",
        f"{M} policy pol1 proposals [ ]",
        f"{M} policy pol1 proposals [ p1",
    )
    assert [(d.line, d.statement, d.message) for d in found] == [
        (9, "set", "missing argument."),
        (10, "proposal", "missing argument."),
        (11, "dh-group", "missing argument."),
        (12, "[ ]", "missing argument."),
        (13, None, "missing ']'."),
    ]


def test_bracket_list_on_single_value_statement() -> None:
    d = only(*valid(), f"{M} gateway gw1 local-address [ 1.1.1.1 ]")
    assert d.headline == "syntax error: ["


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            f"{M} proposal {'x' * 33} dh-group group2",
            "Must be a string of 32 characters or less",
        ),
        (
            f"{M} proposal -p dh-group group2",
            "Must be a string beginning with a number or letter and consisting of letters, "
            "numbers, dashes and underscores.",
        ),
        (f"{M} gateway {'g' * 33} address 1.1.1.1", "Must be a string of 32 characters or less"),
        (f"{M} policy pol1 description {'d' * 81}", "Must be a string of 80 characters or less"),
    ],
)
def test_names_and_text_limits(line: str, message: str) -> None:
    d = only(*valid(), line)
    assert (d.line, d.message) == (9, message)


@pytest.mark.parametrize("word", ["delete", "activate", "edit", "Set"])
def test_only_set_statements(word: str) -> None:
    d = only(*valid(), f"{word} security group-vpn member ike proposal p1 dh-group group2")
    assert d.format() == (
        f"member.conf:9: syntax error: {word}\n"
        "  [edit]\n"
        f"    '{word}'\n"
        "      only 'set' and 'deactivate' statements are supported."
    )


def test_deactivate_takes_a_statement_out_of_the_committed_configuration() -> None:
    # dh-group is mandatory: without it (inactive) the proposal does not commit.
    d = only(*valid(), f"deactivate {M[4:]} proposal p1 dh-group")
    assert (d.line, d.message) == (1, "Missing mandatory statement: 'dh-group'")
    # A whole gateway, then a leaf of a named object: the rest commits.
    assert diags(*valid(), f"{M} gateway gw2 ike-policy pol1", f"{M} gateway gw2 address 1.1.1.1",
                 f"deactivate {M[4:]} gateway gw2", f"deactivate {M[4:]} policy pol1 proposals",
                 f"{M} policy pol1 proposal-set basic") == []  # fmt: skip


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f"deactivate {M[4:]} proposal p9",
            "member.conf:9: warning\n  [edit security group-vpn member ike]\n"
            "    'proposal p9'\n      statement not found",
        ),
        (
            f"deactivate {M[4:]} proposal p1 lifetime-seconds",
            "member.conf:9: warning\n  [edit security group-vpn member ike proposal p1]\n"
            "    'lifetime-seconds'\n      statement not found",
        ),
        (
            f"deactivate {M[4:]} proposal p1 dh-group group2",
            "member.conf:9: syntax error: group2\n"
            "  [edit security group-vpn member ike proposal p1]\n"
            "    'group2'\n      syntax error.",
        ),
        (
            "deactivate",
            "member.conf:9: [edit]\n  'deactivate'\n    missing argument.",
        ),
    ],
)
def test_deactivate_names_a_statement_that_is_set(line: str, expected: str) -> None:
    assert only(*valid(), line).format() == expected


def test_unterminated_quote() -> None:
    d = only(*valid(), f'{M} policy pol1 description "no end')
    assert d.format() == "member.conf:9: syntax error: unterminated quoted string"


def test_odd_name_shown_quoted() -> None:
    d = only(*valid(), f"{M} gateway gw#1 bogus")
    assert d.format().splitlines()[1] == '  [edit security group-vpn member ike gateway "gw#1"]'


def test_quoted_keywords_and_values() -> None:
    lines = valid()
    lines[2] = '"set" security "group-vpn" member ike proposal "p1" dh-group "group2"'
    assert diags(*lines) == []


def test_rejected_line_creates_nothing() -> None:
    # The proposal would exist (and miss its mandatory statements) if the rejected line
    # had created it.
    assert diags(*valid(), f"{M} proposal p9 bogus")[0].line == 9
    assert len(diags(*valid(), f"{M} proposal p9 bogus")) == 1


def test_rejected_value_is_not_also_missing() -> None:
    lines = valid()
    lines[2] = f"{M} proposal p1 dh-group group99"
    d = only(*lines)
    assert d.line == 3 and d.statement == "dh-group group99"


# -- commit checks ---------------------------------------------------------------------------


def test_member_gateway_one_remote_address() -> None:
    d = only(*valid(), f"{M} gateway gw1 address 20.0.0.2")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn member ike gateway gw1]\n"
        "  'address'\n"
        "    Only one remote address is allowed to be configured per IKE gateway configuration"
    )
    assert d.phase is Phase.COMMIT


def test_member_gateway_one_remote_address_bracket_form() -> None:
    lines = valid()
    lines[7] = f"{M} gateway gw1 address [ 20.0.0.1 20.0.0.2 ]"
    d = only(*lines)
    assert d.line == 8
    assert d.message == (
        "Only one remote address is allowed to be configured per IKE gateway configuration"
    )


def test_same_address_twice_is_one_address() -> None:
    assert diags(*valid(), f"{M} gateway gw1 address 20.0.0.1") == []


@pytest.mark.parametrize(("prefix", "role"), [(M, "member"), (S, "server")])
def test_referenced_policy_missing(prefix: str, role: str) -> None:
    lines = valid(prefix)
    lines[6] = f"{prefix} gateway gw1 ike-policy nope"
    d = only(*lines)
    assert d.format() == (
        f"member.conf:7: [edit security group-vpn {role} ike gateway gw1]\n"
        "  'ike-policy nope'\n"
        f"    Referenced IKE policy must be defined under [edit security group-vpn {role} ike "
        "policy]"
    )


def test_policy_without_proposals() -> None:
    lines = valid()
    del lines[4]
    d = only(*lines)
    assert d.format() == (
        "member.conf:5: [edit security group-vpn member ike]\n"
        "  'policy pol1'\n"
        "    IKE policy must have either proposals or proposal-set configured"
    )


def test_policy_without_key() -> None:
    lines = valid()
    del lines[5]
    d = only(*lines)
    assert d.format() == (
        "member.conf:5: [edit security group-vpn member ike]\n"
        "  'policy pol1'\n"
        "    IKE policy must have either local certificate or pre-shared key configured"
    )


def test_unknown_proposal_in_policy() -> None:
    d = only(*valid(), f"{M} policy pol1 proposals p9")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn member ike policy pol1]\n"
        "  'proposals p9'\n"
        "    Referenced proposal is not defined"
    )


def test_more_than_four_proposals() -> None:
    lines = [*valid()]
    for name in ("p2", "p3", "p4", "p5"):
        lines += proposal(M, name)
    lines += [f"{M} policy pol1 proposals [ p2 p3 ]", f"{M} policy pol1 proposals [ p4 p5 ]"]
    d = only(*lines)
    assert d.format() == (
        "member.conf:26: [edit security group-vpn member ike policy pol1]\n"
        "  'proposals'\n"
        "    Number of elements exceeds limit of 4"
    )


def test_proposals_with_different_dh_groups() -> None:
    lines = [*valid(), *proposal(M, "p2", dh="group14"), f"{M} policy pol1 proposals p2"]
    d = only(*lines)
    assert d.format() == (
        "member.conf:13: [edit security group-vpn member ike policy pol1]\n"
        "  'proposals'\n"
        "    All proposals of an IKE policy must use the same dh-group"
    )


@pytest.mark.parametrize(
    ("index", "keyword"),
    [
        (0, "authentication-method"),
        (1, "authentication-algorithm"),
        (2, "dh-group"),
        (3, "encryption-algorithm"),
    ],
)
def test_proposal_missing_mandatory_statement(index: int, keyword: str) -> None:
    lines = valid()
    del lines[index]
    d = only(*lines)
    assert d.format() == (
        "member.conf:1: [edit security group-vpn member ike]\n"
        "  'proposal p1'\n"
        f"    Missing mandatory statement: '{keyword}'"
    )
    assert d.missing_mandatory


def test_missing_mandatory_closing_line() -> None:
    lines = valid()
    del lines[2]
    with pytest.raises(ConfigError) as info:
        load_config("\n".join(lines), "member.conf")
    assert str(info.value).endswith(
        "error: configuration check-out failed: (missing mandatory statements)"
    )


def test_rsa_signatures_not_supported() -> None:
    d = only(*valid(), f"{M} proposal p1 authentication-method rsa-signatures")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn member ike proposal p1]\n"
        "  'authentication-method rsa-signatures'\n"
        "    Authentication method rsa-signatures is not supported yet; use pre-shared-keys"
    )


@pytest.mark.parametrize(("index", "keyword"), [(6, "ike-policy"), (7, "address")])
def test_gateway_missing_mandatory(index: int, keyword: str) -> None:
    lines = valid()
    del lines[index]
    d = only(*lines)
    assert d.format() == (
        "member.conf:7: [edit security group-vpn member ike]\n"
        "  'gateway gw1'\n"
        f"    Missing mandatory statement: '{keyword}'"
    )


def test_member_local_address_same_as_server() -> None:
    d = only(*valid(), f"{M} gateway gw1 local-address 20.0.0.1")
    assert d.format() == (
        "member.conf:9: [edit security group-vpn member ike gateway gw1]\n"
        "  'local-address 20.0.0.1'\n"
        "    Member can not have the same local address as server"
    )


def test_server_may_use_its_own_address_as_local_address() -> None:
    assert diags(*valid(S), f"{S} gateway gw1 local-address 20.0.0.1") == []


def test_server_and_member_without_colocation() -> None:
    d = only(*valid(S), *valid(M))
    assert d.format() == (
        "member.conf:9: [edit security group-vpn]\n"
        "  'member'\n"
        "    Configuring both group-vpn server and group-vpn member is not supported"
    )


def test_server_and_member_with_colocation() -> None:
    assert diags("set security group-vpn co-location", *valid(S), *valid(M)) == []


def test_colocation_member_must_not_use_server_address() -> None:
    found = diags(
        "set security group-vpn co-location",
        *valid(S),
        f"{S} gateway gw1 local-address 20.0.0.1",
        *valid(M)[:-1],
        f"{M} gateway gw1 address 20.0.0.1",
        f"{M} gateway gw1 local-address 20.0.0.1",
    )
    assert [(d.line, d.message) for d in found] == [
        (19, "Member can not have the same local address as server")
    ]


def test_colocation_one_address_for_the_server_and_one_for_the_member() -> None:
    """The spec: "only one IP address assigned to the server and one IP address assigned
    to the member across groups" in co-location mode."""
    found = diags(
        "set security group-vpn co-location",  # 1
        *valid(S),  # 2-9
        f"{S} gateway gw1 local-address 20.0.0.1",  # 10
        f"{S} gateway gw2 ike-policy pol1",  # 11
        f"{S} gateway gw2 address 10.3.0.1",  # 12
        f"{S} gateway gw2 local-address 20.0.0.2",  # 13
        *valid(M),  # 14-21
        f"{M} gateway gw1 local-address 10.1.0.1",  # 22
        f"{M} gateway gw2 ike-policy pol1",  # 23
        f"{M} gateway gw2 address 20.0.0.1",  # 24
        f"{M} gateway gw2 local-address 10.1.0.2",  # 25
    )
    assert [d.format() for d in found] == [
        "member.conf:13: [edit security group-vpn server ike gateway gw2]\n"
        "  'local-address 20.0.0.2'\n"
        "    In co-location mode the server must use one local-address across all its IKE "
        "gateways (20.0.0.1 is already used)",
        "member.conf:25: [edit security group-vpn member ike gateway gw2]\n"
        "  'local-address 10.1.0.2'\n"
        "    In co-location mode the member must use one local-address across all its IKE "
        "gateways (10.1.0.1 is already used)",
    ]
    # One address each, even shared by several gateways, is fine.
    assert (
        diags(
            "set security group-vpn co-location",
            *valid(S),
            f"{S} gateway gw1 local-address 20.0.0.1",
            f"{S} gateway gw2 ike-policy pol1",
            f"{S} gateway gw2 address 10.3.0.1",
            f"{S} gateway gw2 local-address 20.0.0.1",
            *valid(M),
            f"{M} gateway gw1 local-address 10.1.0.1",
        )
        == []
    )


# -- reporting -------------------------------------------------------------------------------


def test_all_errors_reported_at_once() -> None:
    text = "\n".join(
        [
            f"{M} proposal p1 authentication-method pre-shared-keys",  # 1
            f"{M} proposal p1 authentication-algorithm sha1",  # 2
            f"{M} proposal p1 encryption-algorithm 3des-cbc",  # 3 (no dh-group)
            f"{M} proposal p1 lifetime-seconds 90",  # 4
            f"{M} proposal p1 bogus",  # 5
            f"{M} policy pol1 proposals p1",  # 6
            f'{M} policy pol1 pre-shared-key ascii-text "do-not-print-me"',  # 7
            f"{M} gateway gw1 ike-policy pol2",  # 8
            f"{M} gateway gw1 address [ 20.0.0.1 20.0.0.2 ]",  # 9
            f"{M} gateway gw1 local-address 20.0.0.1",  # 10
            "delete security",  # 11
        ]
    )
    with pytest.raises(ConfigError) as info:
        load_config(text, "member.conf")
    found = info.value.diagnostics
    assert [(d.line, d.phase) for d in found] == [
        (4, Phase.LOAD),
        (5, Phase.LOAD),
        (11, Phase.LOAD),
        (1, Phase.COMMIT),
        (8, Phase.COMMIT),
        (9, Phase.COMMIT),
        (10, Phase.COMMIT),
    ]
    report = str(info.value)
    assert report.startswith("member.conf:4: [edit security group-vpn member ike proposal p1]")
    assert report.endswith("error: configuration check-out failed: (missing mandatory statements)")
    assert "do-not-print-me" not in report


def test_closing_line_without_missing_statements() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("set bogus")
    assert str(info.value).splitlines()[-1] == "error: configuration check-out failed"
    assert str(info.value).startswith("<config>:1: syntax error: bogus")


def test_check_config_empty_when_valid() -> None:
    assert check_config("\n".join(valid())) == []
