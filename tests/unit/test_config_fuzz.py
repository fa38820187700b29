"""Property tests: no input makes the loader raise anything but ConfigError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.config import ConfigError, check_config, load_config

KEYWORDS = [
    "set", "security", "group-vpn", "co-location", "server", "member", "ike", "proposal",
    "policy", "gateway", "authentication-method", "pre-shared-keys", "rsa-signatures",
    "authentication-algorithm", "sha1", "md5", "dh-group", "group2", "group14",
    "encryption-algorithm", "3des-cbc", "lifetime-seconds", "180", "90", "description",
    "mode", "main", "aggressive", "proposals", "proposal-set", "basic", "pre-shared-key",
    "ascii-text", "hexadecimal", "0xab", "ike-policy", "address", "local-address",
    "local-identity", "remote-identity", "inet", "hostname", "user-at-hostname", "key-id",
    "20.0.0.1", "10.1.0.1", "1.2.3", "p1", "pol1", "gw1", "[", "]", '"', '"q"', "\\", "#",
]  # fmt: skip


def _check(text: str) -> None:
    try:
        load_config(text, "fuzz.conf")
    except ConfigError as exc:
        assert exc.diagnostics
        str(exc)
    diagnostics = check_config(text, "fuzz.conf")
    for d in diagnostics:
        d.format()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=80), max_size=8))
def test_random_printable_lines(lines: list[str]) -> None:
    _check("\n".join(lines))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(KEYWORDS), min_size=0, max_size=12).map(" ".join),
        max_size=25,
    )
)
def test_random_statements_from_keywords(lines: list[str]) -> None:
    _check("\n".join(lines))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(KEYWORDS), max_size=10), st.text(max_size=20))
def test_prefixed_lines(words: list[str], tail: str) -> None:
    _check("set security group-vpn member ike " + " ".join(words) + " " + tail)
