"""`show ... kek security-associations`: the JSON keys, the text table, and no key bytes."""

from __future__ import annotations

import json
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from click.testing import CliRunner

from groupvpn.cli import member_tables, server_tables
from groupvpn.cli.main import cli
from groupvpn.gdoi.pull import GroupOffer, Registration
from groupvpn.member.keys import group_kek
from groupvpn.runtime import member_views, server_views, views
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.server.signing import SigningKey
from groupvpn.wire.dialect import V1
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa
from tests.unit.test_server_kek import KEK_GROUP

SERVER_KEYS = {
    "index", "group", "group-id", "spi", "initiator-cookie", "responder-cookie", "encryption",
    "signature-hash", "signature-algorithm", "signature-key-length", "signing-key-fingerprint",
    "communication-type", "multicast-group", "lifetime-remaining", "sequence",
}  # fmt: skip
MEMBER_KEYS = {
    "index", "vpn", "group-id", "spi", "initiator-cookie", "responder-cookie", "source",
    "destination", "encryption", "signature-hash", "signature-algorithm",
    "signature-key-length", "signing-key-fingerprint", "lifetime-remaining", "sequence",
}  # fmt: skip


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return SigningKey.generate(1024)


def _server(signing_key: SigningKey) -> GroupKeyServer:
    plain = GroupDefinition("g2", 2, SPEC_GROUP.gateways, SPEC_GROUP.policies)
    multicast = replace(
        KEK_GROUP, name="g3", group_id=3,
        kek=replace(KEK_GROUP.kek, multicast_group=IPv4Address("226.1.1.1")),  # type: ignore[type-var]
    )  # fmt: skip
    return GroupKeyServer([KEK_GROUP, plain, multicast], V1, signing_key=signing_key)


def test_server_kek_view_lists_each_kek_group_with_seq_and_no_key_bytes(signing_key):
    server = _server(signing_key)
    view = server_views.kek_security_associations(server, views.Clock(1000.0, 0.0))
    first, multicast = view["security-associations"]
    assert set(first) == SERVER_KEYS
    kek = server.current_kek(1, 1000.0)
    assert kek is not None
    assert first == {
        "index": 1, "group": "g1", "group-id": 1, "spi": kek.spi.hex(),
        "initiator-cookie": kek.spi[:8].hex(), "responder-cookie": kek.spi[8:].hex(),
        "encryption": "aes-128-cbc", "signature-hash": "md5", "signature-algorithm": "rsa",
        "signature-key-length": 1024, "signing-key-fingerprint": signing_key.fingerprint,
        "communication-type": "unicast", "multicast-group": None,
        "lifetime-remaining": 3600, "sequence": 0,
    }  # fmt: skip
    assert (multicast["index"], multicast["group"]) == (2, "g3")
    assert (multicast["communication-type"], multicast["multicast-group"]) == (
        "multicast", "226.1.1.1",
    )  # fmt: skip
    text = json.dumps(view) + server_tables.kek_security_associations(view)
    for group_id in (1, 3):
        secret = server.current_kek(group_id, 1000.0)
        assert secret is not None
        assert secret.key.hex() not in text and secret.iv.hex() not in text
    assert "PRIVATE" not in text


def test_server_kek_table_reads_like_the_other_tables(signing_key):
    server = _server(signing_key)
    view = server_views.kek_security_associations(server, views.Clock(0.0, 0.0))
    lines = server_tables.kek_security_associations(view).splitlines()
    assert lines[0].split() == [
        "Index", "Group", "Group", "Id", "Initiator", "cookie", "Responder", "cookie",
        "Algorithm", "Life:sec", "Rekey", "Seq",
    ]  # fmt: skip
    row = view["security-associations"][0]
    assert lines[1].split() == [
        "1", "g1", "1", row["initiator-cookie"], row["responder-cookie"],
        "aes-128-cbc/rsa-1024/md5", "3600", "unicast", "0",
    ]  # fmt: skip
    assert server_tables.kek_security_associations({"security-associations": []}) == (
        "No KEK: no group has server-member-communication"
    )


def test_member_kek_view_and_table(signing_key):
    server = _server(signing_key)
    offer = server.admit(1, _ike_sa("gw-member1", "198.51.100.11"), 100.0, "192.0.2.1")
    assert isinstance(offer, GroupOffer)
    kek = group_kek("gvpn1", Registration(1, offer.sa, offer.key_download, offer.sequence), 100.0)
    assert kek is not None
    view = member_views.kek_security_associations([kek], views.Clock(160.0, 0.0))
    [row] = view["security-associations"]
    assert set(row) == MEMBER_KEYS
    assert row == {
        "index": 1, "vpn": "gvpn1", "group-id": 1, "spi": kek.spi.hex(),
        "initiator-cookie": kek.spi[:8].hex(), "responder-cookie": kek.spi[8:].hex(),
        "source": "20.0.0.1:848", "destination": "198.51.100.11:848",
        "encryption": "aes-128-cbc", "signature-hash": "md5", "signature-algorithm": "rsa",
        "signature-key-length": 1024, "signing-key-fingerprint": signing_key.fingerprint,
        "lifetime-remaining": 3540, "sequence": 0,
    }  # fmt: skip
    text = member_tables.kek_security_associations(view)
    assert text.splitlines()[0] == "  Total KEK SAs: 1"
    assert text.splitlines()[2].split() == [
        "1", "gvpn1", "1", "20.0.0.1:848", row["initiator-cookie"], row["responder-cookie"],
        "aes-128-cbc/rsa-1024/md5", "3540", "0",
    ]  # fmt: skip
    for secret in (kek.key, kek.iv):
        assert secret.hex() not in json.dumps(view) + text


@pytest.mark.parametrize(
    "words",
    [
        ["show", "security", "group-vpn", "server", "kek", "security-associations"],
        ["show", "security", "group-vpn", "member", "kek", "security-associations"],
        ["clear", "security", "group-vpn", "member", "kek", "security-associations"],
    ],
)
def test_the_kek_commands_exist_in_junos_words(words: list[str]):
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "--control" in result.output and "--json" in result.output
