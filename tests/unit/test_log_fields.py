"""Daemon log lines: ``event=`` first, ``group=``/``peer=`` fields, and never a secret."""

from __future__ import annotations

import random

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.member.core import GroupVpn, MemberCore
from groupvpn.runtime.logfmt import describe_event, event_name, tagged
from groupvpn.runtime.member_daemon import describe_member_event
from groupvpn.server import rekey_events
from groupvpn.server.core import KeyServerCore, MemberRegistered, RegistrationRefused
from groupvpn.server.groups import GroupKeyServer, MemberRecord
from groupvpn.server.rekey_events import MemberInactive, RekeySent
from groupvpn.wire.dialect import V1
from tests.ikepair import peer
from tests.unit.test_registration import GROUPS, MEMBER_IP, SERVER_IP, Net

PSK = b"Sup3r-Secret-PSK!"


def test_event_names_are_the_kind_of_event_in_kebab_case():
    record = MemberRecord("g1", 1, "10.0.0.1", "gw1", 0.0)
    assert event_name(MemberRegistered(record)) == "member-registered"
    assert event_name(RegistrationRefused(("10.0.0.1", 848), "gw1", "x", None)) == (
        "registration-refused"
    )
    sent = RekeySent("g1", 1, 4, ("operator-request",), 2, None, (), False)
    assert event_name(sent) == "rekey-sent"
    # "inactive" is why; what happened is a removal.
    assert event_name(MemberInactive("g1", 1, "10.0.0.1", 4, 3)) == "member-removed"


def test_a_tagged_line_starts_with_the_event_then_the_group_and_peer_fields():
    record = MemberRecord("g1", 1, "10.0.0.1", "gw1", 0.0)
    event = MemberRegistered(record)
    line = tagged(event, describe_event(event)[1])
    assert line == (
        "event=member-registered member registered: group=g1 group-id=1 peer=10.0.0.1 gateway=gw1"
    )
    removed = MemberInactive("g1", 1, "10.0.0.1", 4, 3)
    described = rekey_events.describe(removed)
    assert described is not None
    assert tagged(removed, described[1]).startswith(
        "event=member-removed member removed (inactive): group=g1 group-id=1 peer=10.0.0.1 "
    )


def test_no_log_line_of_a_registration_carries_the_psk_or_any_key():
    server_ike = IkeEndpoint(SERVER_IP, [peer(MEMBER_IP, gateway="gw-member1", psk=PSK)])
    member_ike = IkeEndpoint(MEMBER_IP, [peer(SERVER_IP, gateway="gw1", psk=PSK)])
    server = KeyServerCore(server_ike, GroupKeyServer(GROUPS, V1))
    member = MemberCore(
        member_ike, [GroupVpn("vpn1", "gw1", 1), GroupVpn("vpn9", "gw1", 99)], V1,
        jitter=random.Random(7),
    )  # fmt: skip
    net = Net(server, member)
    member.handle_timer(0.0)
    net.run(until=5.0)
    lines = [
        tagged(e, (rekey_events.describe(e) or describe_event(e))[1]) for e in net.server_events
    ]
    lines += [
        tagged(e, (describe_member_event(e) or describe_event(e))[1]) for e in net.member_events
    ]
    assert any(line.startswith("event=member-registered ") for line in lines)
    assert any(line.startswith("event=registration-refused ") for line in lines)
    secrets = [PSK]
    for tek in server.groups.current_teks(1, net.now):
        secrets += [tek.encryption_key, tek.integrity_key]
    for sa in server_ike.established():
        key = server_ike.decryption_key(sa.initiator_cookie, sa.responder_cookie)
        assert key is not None
        secrets.append(key)
    assert len(secrets) == 6
    text = "\n".join(lines)
    for secret in secrets:
        for form in (secret.hex(), secret.hex().upper(), secret.decode("latin-1"), repr(secret)):
            assert form not in text
