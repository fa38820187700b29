"""The Junos-style text of the show commands, from the documented JSON."""

from __future__ import annotations

from groupvpn.cli import server_tables, tables


def test_ike_security_associations_table_reads_like_junos():
    view = {
        "security-associations": [
            {"index": 1, "state": "UP", "initiator-cookie": "46a16f0ee6fe5625",
             "responder-cookie": "a518d4e123076e03", "mode": "main",
             "remote-address": "198.51.100.11"},
        ],
        "registrations": [
            {"vpn": "gvpn1", "gateway": "gw1", "group-id": 1, "state": "waiting to retry",
             "failures": 2, "next-attempt-seconds": 3.5, "last-error": "no answer",
             "registered": None},
        ],
    }  # fmt: skip
    text = tables.ike_security_associations(view)
    assert text.splitlines()[0].split() == [
        "Index", "State", "Initiator", "cookie", "Responder", "cookie", "Mode", "Remote", "Address",
    ]  # fmt: skip
    assert text.splitlines()[1].split() == [
        "1", "UP", "46a16f0ee6fe5625", "a518d4e123076e03", "Main", "198.51.100.11",
    ]  # fmt: skip
    assert "waiting to retry" in text and "3.5s" in text and "no answer" in text


def test_registered_members_lists_each_group_with_a_total():
    view = {
        "groups": [
            {"group": "g1", "group-id": 1, "members": [
                {"address": "127.0.0.11", "gateway": "gw-member1",
                 "registered": "2026-11-27T19:55:02Z"}]},
            {"group": "g2", "group-id": 2, "members": []},
        ]
    }  # fmt: skip
    text = server_tables.registered_members(view)
    assert text.startswith("Group: g1, Group Id: 1\n")
    assert "127.0.0.11" in text and "Total members: 1" in text
    assert "Group: g2, Group Id: 2" in text and "Total members: 0" in text
