"""The Junos-style text of the show commands, from the documented JSON."""

from __future__ import annotations

from groupvpn.cli import server_tables, tables
from groupvpn.cli.reload import format_changes
from groupvpn.cli.request import describe_rekey


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


def test_registered_members_show_how_each_member_follows_the_rekeys():
    view = {
        "groups": [
            {"group": "g1", "group-id": 1, "communication-type": "unicast", "members": [
                {"address": "127.0.0.11", "gateway": "gw-member1",
                 "registered": "2026-11-27T19:55:02Z", "state": "active",
                 "last-acked-sequence": 3, "last-ack": "2026-11-27T20:54:02Z",
                 "pending-sequence": None},
                {"address": "127.0.0.12", "gateway": "gw-member2",
                 "registered": "2026-11-27T19:55:03Z", "state": "retransmitting (1/2)",
                 "last-acked-sequence": None, "last-ack": None, "pending-sequence": 4}]},
        ]
    }  # fmt: skip
    lines = server_tables.registered_members(view).splitlines()
    assert lines[0] == "Group: g1, Group Id: 1, Rekeys: unicast"
    assert lines[1].split() == [
        "Member", "Gateway", "Registered", "State", "Last", "ACKed", "Seq", "Last", "ACK",
    ]  # fmt: skip
    assert lines[2].split() == [
        "127.0.0.11", "gw-member1", "2026-11-27T19:55:02Z", "active", "3", "2026-11-27T20:54:02Z",
    ]  # fmt: skip
    assert lines[3].split() == [
        "127.0.0.12", "gw-member2", "2026-11-27T19:55:03Z", "retransmitting", "(1/2)", "-", "-",
    ]  # fmt: skip


def test_the_kek_table_shows_the_next_rekey_when_the_daemon_says():
    row = {
        "index": 1, "group": "g1", "group-id": 1, "initiator-cookie": "5f0c4a1e9b7d3c2a",
        "responder-cookie": "81e6f4d0a3b5c7e9", "encryption": "aes-128-cbc",
        "signature-algorithm": "rsa", "signature-key-length": 2048, "signature-hash": "md5",
        "lifetime-remaining": 3571, "communication-type": "unicast", "sequence": 2,
        "next-rekey-seconds": 3511, "next-heartbeat-seconds": 200,
    }  # fmt: skip
    lines = server_tables.kek_security_associations({"security-associations": [row]})
    header, values = lines.splitlines()
    assert header.split()[-3:] == ["Seq", "Next", "rekey:sec"]
    assert values.split()[-3:] == ["unicast", "2", "3511"]


REKEY = {
    "group": "g1", "group-id": 1, "sequence": 4, "reasons": ["operator-request"],
    "members": 2, "multicast-destination": None, "new-teks": ["p1", "p2"],
    "kek-rollover": False,
}  # fmt: skip


def test_a_rekey_is_described_with_group_seq_reasons_and_destination():
    assert describe_rekey(REKEY) == (
        "rekey sent: group g1 (group-id 1), SEQ 4, operator-request, to 2 members; new TEKs: p1, p2"
    )
    multicast = {**REKEY, "members": None, "multicast-destination": "239.1.1.1:848",
                 "reasons": ["membership-change"], "kek-rollover": True}  # fmt: skip
    assert describe_rekey(multicast) == (
        "rekey sent: group g1 (group-id 1), SEQ 4, membership-change, to multicast "
        "239.1.1.1:848; new TEKs: p1, p2; new KEK"
    )
    assert "to 1 member;" in describe_rekey({**REKEY, "members": 1})


def test_reload_output_names_the_rekey_each_change_pushed():
    changes = {"changes": [
        {"group": "g1", "group-id": 1, "change": "changed", "details": ["policy p4 added"],
         "rekey-needed": True, "rekey": {**REKEY, "reasons": ["policy-change"],
                                         "new-teks": ["p4"], "sequence": 1}},
        {"group": "g2", "group-id": 2, "change": "added", "details": [],
         "rekey-needed": False, "rekey": None},
    ]}  # fmt: skip
    assert format_changes(changes).splitlines() == [
        "configuration reloaded",
        "  group g1 (group-id 1): changed: policy p4 added",
        "    rekey sent: group g1 (group-id 1), SEQ 1, policy-change, to 2 members; new TEKs: p4",
        "  group g2 (group-id 2): added",
    ]


def test_member_ipsec_statistics_read_like_junos_and_list_only_the_drops_seen():
    from groupvpn.cli import member_tables
    from groupvpn.dataplane.drops import DropReason
    from groupvpn.dataplane.engine import DataPlaneCounters

    counters = DataPlaneCounters()
    counters.packets_out, counters.bytes_out = 10, 1400
    counters.packets_in, counters.bytes_in = 7, 980
    counters.drops.drop(DropReason.REPLAYED)
    counters.drops.drop(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
    counters.drops.drop(DropReason.OUTSIDE_ANTI_REPLAY_WINDOW)
    text = member_tables.ipsec_statistics({"engine": counters.as_dict(), "shell": {}})
    lines = text.splitlines()
    assert lines[0] == "ESP Statistics:"
    assert lines[1].split() == ["Encrypted", "bytes:", "1400"]
    assert lines[3].split() == ["Encrypted", "packets:", "10"]
    assert lines[4].split() == ["Decrypted", "packets:", "7"]
    dropped = lines[lines.index("Dropped on receipt:") + 1 : lines.index("Not sent:")]
    assert dropped == ["  outside-anti-replay-window: 2", "  replayed: 1"]
    assert lines[-1] == "  none"  # nothing refused
    assert member_tables.ipsec_statistics({"dataplane": "none"}).startswith("No data plane")


def test_gcm_group_sas_show_one_algorithm_without_authentication():
    from groupvpn.cli import member_tables

    gcm = {"encryption": "aes-128-gcm", "authentication": None}
    cbc = {"encryption": "aes-128-cbc", "authentication": "hmac-sha1-96"}
    assert tables.esp_algorithm(gcm) == "ESP:aes-128-gcm"
    assert tables.esp_algorithm(cbc) == "ESP:aes-128-cbc/hmac-sha1-96"
    server_view = {"groups": [{"group": "g1", "group-id": 1, "security-associations": [
        {"policy": "p1", "spi": "0000abcd", **gcm, "lifetime-remaining": 3600,
         "source": "10.1.0.0/16", "destination": "10.2.0.0/16"}]}]}  # fmt: skip
    assert "ESP:aes-128-gcm " in server_tables.ipsec_security_associations(server_view)
    member_view = {"security-associations": [
        {"vpn": "v1", "group-id": 1, "spi": "0000abcd", **gcm, "sender-id": 3,
         "state": "active", "lifetime-remaining": 3600, "activates-in": None,
         "source": "10.1.0.0/16", "destination": "10.2.0.0/16"}]}  # fmt: skip
    assert "ESP:aes-128-gcm " in member_tables.ipsec_security_associations(member_view)
