"""The member's `show` views after rekeys: key states, rekey counters, drops; no key bytes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.cli import member_tables
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.runtime import member_views, views
from groupvpn.wire.dialect import V1
from tests.unit.member_rekey_net import RekeyNet, fresh_kek, rekey_net
from tests.unit.test_member_install import MEMBER1
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture
def net(private_key: rsa.RSAPrivateKey) -> RekeyNet:
    scope = ScopePolicyFilter([replace(p, group_vpn="vpn1") for p in MEMBER1])
    net = rekey_net(GROUP, V1, private_key, policy_filter=scope)
    net.run(until=100.0)
    net.deliver(net.rekey(1, net.new_teks(["p1"])))
    net.run(until=110.0)
    net.deliver(net.heartbeat(2))
    net.deliver(net.push(net.rekey_content(3, net.new_teks(["p2"])), kek=fresh_kek(net)))
    net.run(until=115.0)
    return net


def test_member_ipsec_view_shows_each_keys_state(net: RekeyNet):
    view = member_views.ipsec_security_associations(
        net.member.key_status(net.now), views.Clock(net.now, net.now)
    )
    rows = view["security-associations"]
    # p1 has its registration key and the pushed one; p3 was refused (scope policies).
    assert len(rows) == 3
    by_state = sorted((row["state"], row["delivery"]) for row in rows)
    assert by_state == [("active", "pull"), ("active", "pull"), ("pending", "push")]
    [pending] = [row for row in rows if row["state"] == "pending"]
    assert pending["activates-in"] == 100 + 30 - 115
    assert pending["lifetime-remaining"] == 100 + 3600 - 115
    assert pending["removed-in"] == pending["lifetime-remaining"]
    assert pending["received"] == "1970-01-01T00:01:40Z"
    assert all(row["activates-in"] is None for row in rows if row["state"] != "pending")
    assert {"vpn", "group-id", "spi", "encryption", "authentication", "source", "destination",
            "source-port", "destination-port", "protocol"} <= set(pending)  # fmt: skip
    text = member_tables.ipsec_security_associations(view)
    assert text.splitlines()[0] == "  Total group SAs: 3, active: 2"
    assert pending["spi"] in text and "pending" in text


def test_member_kek_view_adds_rekeys_heartbeats_and_drops(net: RekeyNet):
    view = member_views.member_kek_security_associations(
        [net.member], views.Clock(net.now, net.now)
    )
    [row] = view["security-associations"]
    assert row["sequence"] == 2  # the last SEQ accepted (the heartbeat's)
    assert {
        key: row[key]
        for key in ("communication-type", "acks-requested", "rekeys-received",
                    "heartbeats-received", "acks-sent", "heartbeat-interval",
                    "heartbeat-threshold", "heartbeat-detection", "heartbeat-last-heard",
                    "heartbeats-missed")
    } == {
        "communication-type": "unicast", "acks-requested": True, "rekeys-received": 1,
        "heartbeats-received": 1, "acks-sent": 1, "heartbeat-interval": 10,
        "heartbeat-threshold": 3, "heartbeat-detection": True,
        "heartbeat-last-heard": "1970-01-01T00:01:50Z", "heartbeats-missed": 0,
    }  # fmt: skip
    assert isinstance(row["group-time"], int)
    assert view["push-rejections"] == {
        "malformed": 0, "unknown-kek": 1, "bad-signature": 0, "replayed-seq": 0,
    }  # fmt: skip
    text = member_tables.kek_security_associations(view)
    lines = text.splitlines()
    assert lines[0] == "  Total KEK SAs: 1"
    assert lines[4].split() == ["VPN", "Rekeys", "ACKs", "Heartbeats", "Interval", "Threshold",
                                "Detection", "Last", "heard", "Missed"]  # fmt: skip
    assert lines[5].split() == ["vpn1", "1", "1", "1", "10s", "3", "on",
                                "1970-01-01T00:01:50Z", "0"]  # fmt: skip
    assert lines[-1] == (
        "  Pushes dropped: malformed 0, unknown-kek 1, bad-signature 0, replayed-seq 0"
    )
    kek = net.kek()
    everything = json.dumps(view) + text
    assert kek.key.hex() not in everything and kek.iv.hex() not in everything


def test_dynamic_policies_follow_the_key_that_encrypts(net: RekeyNet):
    before = {p["source"]: p["spi"] for p in net.member.dynamic_policies()}
    net.run(until=130.0)  # the pushed p1 key activates
    after = {p["source"]: p["spi"] for p in net.member.dynamic_policies()}
    [pushed] = [key for key in net.held() if key.delivery.value == "push"]
    assert before["10.1.0.0/16"] != after["10.1.0.0/16"] == pushed.spi.hex()
    assert after["10.2.0.0/16"] == before["10.2.0.0/16"]
