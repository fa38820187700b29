"""A registration turned into the group SAs a member installs."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Network

import pytest

from groupvpn.gdoi.pull import GroupOffer, Registration
from groupvpn.gdoi.push import ANTI_REPLAY_WINDOW_ATTRIBUTE
from groupvpn.member.keys import UnusableTek, group_sas
from groupvpn.server.groups import GroupDefinition, GroupKeyServer
from groupvpn.wire.dialect import V1, V2, Dialect
from groupvpn.wire.gdoi import KeyDownloadPayload
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa


def _registration(dialect: Dialect, group: GroupDefinition = SPEC_GROUP) -> Registration:
    server = GroupKeyServer([group], dialect)
    offer = server.admit(1, _ike_sa("gw-member1"), 50.0)
    assert isinstance(offer, GroupOffer)
    return Registration(1, offer.sa, offer.key_download, offer.sequence)


@pytest.mark.parametrize("dialect", [V1, V2], ids=["v1", "v2"])
def test_every_tek_becomes_a_group_sa_with_its_keys(dialect: Dialect):
    registration = _registration(dialect)
    sas = group_sas("vpn1", registration, received_at=1000.0)
    assert [(str(sa.source), str(sa.destination)) for sa in sas] == [
        ("10.1.0.0/16", "10.2.0.0/16"),
        ("10.2.0.0/16", "10.1.0.0/16"),
        ("10.1.1.1/32", "239.1.1.1/32"),
    ]
    for sa in sas:
        assert sa.suite_name == "aes-128-cbc/hmac-sha1-96"
        assert len(sa.encryption_key) == 16 and len(sa.integrity_key) == 20
        assert sa.expires_at == 1000.0 + 3600  # remaining lifetime counted from receipt
        assert repr(sa.encryption_key) not in repr(sa)  # keys never in repr
        assert repr(sa.integrity_key) not in repr(sa)
    assert sas[0].destination == IPv4Network("10.2.0.0/16")


def test_a_tek_without_its_key_is_unusable():
    registration = _registration(V1)
    missing = Registration(
        1, registration.sa, KeyDownloadPayload(registration.key_download.packets[1:]), None
    )
    with pytest.raises(UnusableTek, match="no key for SPI"):
        group_sas("vpn1", missing, 0.0)


def test_an_absurd_tek_lifetime_is_capped_not_a_crash():

    from groupvpn.wire.attributes import DataAttribute
    from groupvpn.wire.gdoi_numbers import IpsecAttribute

    registration = _registration(V1)
    first = registration.sa.teks[0]
    assert first.ipsec is not None
    attributes = tuple(
        DataAttribute(a.type, b"\x7f" * 100) if a.type == IpsecAttribute.SA_LIFE_DURATION else a
        for a in first.ipsec.attributes
    )
    tek = replace(first, spec=replace(first.ipsec, attributes=attributes))
    sa = replace(registration.sa, teks=(tek, *registration.sa.teks[1:]))
    sas = group_sas("vpn1", replace(registration, sa=sa), 5.0)
    assert sas[0].expires_at == 5.0 + 0xFFFFFFFF


@pytest.mark.parametrize(("window", "held"), [(100, 100), (360, 360), (None, None)])
def test_each_key_carries_its_groups_anti_replay_window(window: int | None, held: int | None):
    """The server's anti-replay-time-window (None: no-anti-replay) reaches every SA TEK."""
    registration = _registration(V2, replace(SPEC_GROUP, anti_replay_time_window=window))
    sas = group_sas("vpn1", registration, received_at=0.0)
    assert [sa.anti_replay_window for sa in sas] == [held] * 3


def test_a_key_without_the_window_attribute_gets_the_junos_default():
    """Another vendor's server sends no ANTI_REPLAY_WINDOW attribute (docs/rekey-wire.md §4)."""
    registration = _registration(V1, replace(SPEC_GROUP, anti_replay_time_window=360))
    teks = []
    for sat in registration.sa.teks:
        assert sat.ipsec is not None
        kept = tuple(a for a in sat.ipsec.attributes if a.type != ANTI_REPLAY_WINDOW_ATTRIBUTE)
        teks.append(replace(sat, spec=replace(sat.ipsec, attributes=kept)))
    stripped = replace(registration, sa=replace(registration.sa, teks=tuple(teks)))
    assert [sa.anti_replay_window for sa in group_sas("vpn1", stripped, 0.0)] == [100] * 3
