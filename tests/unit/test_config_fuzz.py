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

# The group, security, application and interface statements.
GROUP_KEYWORDS = [
    "set", "security", "group-vpn", "server", "member", "ipsec", "proposal", "group",
    "group-id", "1", "2", "0", "65536", "ike-gateway", "gw1", "ipsec-sa", "sa1",
    "match-policy", "source", "destination", "source-port", "destination-port", "protocol",
    "10.0.0.0/8", "10.1.0.0/16", "239.1.1.1/32", "1.2.3.4/33", "activation-time-delay",
    "anti-replay-time-window", "no-anti-replay", "server-address", "20.0.0.1",
    "server-member-communication", "communication-type", "multicast", "unicast",
    "multicast-group", "multicast-outgoing-interface", "sig-hash-algorithm", "md5",
    "encryption-algorithm", "aes-128-cbc", "authentication-algorithm", "hmac-sha1-96",
    "lifetime-seconds", "3600", "vpn", "v1", "group-vpn-external-interface", "ge-0/0/1.0",
    "heartbeat-threshold", "zones", "security-zone", "trust", "untrust", "interfaces",
    "host-inbound-traffic", "system-services", "ike", "address-book", "global", "address",
    "address-set", "attach", "zone", "net10", "any", "policies", "from-zone", "to-zone",
    "policy", "match", "source-address", "destination-address", "application", "then",
    "permit", "deny", "reject", "tunnel", "ipsec-group-vpn", "applications",
    "application-set", "tcp", "80-90", "junos-http", "ge-0/0/1", "lo0", "unit", "family",
    "inet", "10.1.0.1/24", "mtu", "1400", "[", "]", '"', "#",
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


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(GROUP_KEYWORDS), min_size=0, max_size=14).map(" ".join),
        max_size=25,
    )
)
def test_random_group_and_security_statements(lines: list[str]) -> None:
    _check("\n".join(lines))


_PREFIXES = [
    "set security group-vpn server group g1 ",
    "set security group-vpn server group g1 ipsec-sa sa1 match-policy p1 ",
    "set security group-vpn member ipsec vpn v1 ",
    "set security policies from-zone trust to-zone untrust policy p ",
    "set security address-book global ",
    "set security zones security-zone trust ",
    "set applications application a ",
    "set interfaces ge-0/0/1 ",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_PREFIXES),
            st.lists(st.sampled_from(GROUP_KEYWORDS), max_size=6).map(" ".join),
        ).map("".join),
        max_size=20,
    )
)
def test_random_lines_under_new_levels(lines: list[str]) -> None:
    _check("\n".join(lines))
