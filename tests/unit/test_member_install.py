"""Which group SAs the spec's two members install (Example: Configuring Group VPNv1)."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

from groupvpn.gdoi.pull import GroupOffer, Registration
from groupvpn.member.install import ScopePolicyFilter
from groupvpn.member.keys import GroupSa, group_sas
from groupvpn.policy import SecurityPolicy
from groupvpn.server.groups import GroupKeyServer
from groupvpn.wire.dialect import V1
from tests.unit.test_server_groups import SPEC_GROUP, _ike_sa

NET10 = (IPv4Network("10.0.0.0/8"),)
NET10_1 = (IPv4Network("10.1.0.0/16"),)

SCOPE = [
    SecurityPolicy("scope1", "trust", "untrust", NET10, NET10, group_vpn="gvpn"),
    SecurityPolicy("scope1", "untrust", "trust", NET10, NET10, group_vpn="gvpn"),
]
MEMBER1 = SCOPE
MEMBER2 = [
    SecurityPolicy("deny1", "trust", "untrust", sources=NET10_1, action="deny"),
    SecurityPolicy("deny2", "untrust", "trust", destinations=NET10_1, action="deny"),
    *SCOPE,
]


def _spec_sas() -> list[GroupSa]:
    offer = GroupKeyServer([SPEC_GROUP], V1).admit(1, _ike_sa("gw-member1"), 0.0)
    assert isinstance(offer, GroupOffer)
    return group_sas("gvpn", Registration(1, offer.sa, offer.key_download, None), 0.0)


def _installed_view(
    policies: list[SecurityPolicy],
) -> tuple[list[GroupSa], dict[tuple[str, ...], dict[str, Any]]]:
    accepted, view = ScopePolicyFilter(policies)("gvpn", _spec_sas())
    pairs: dict[tuple[str, ...], dict[str, Any]] = {
        (e["source"], e["destination"], e["from-zone"], e["to-zone"]): e for e in view
    }
    return accepted, pairs


def test_member1_installs_p1_and_p2_both_ways_and_discards_the_multicast_key():
    accepted, view = _installed_view(MEMBER1)
    assert sorted(str(sa.destination) for sa in accepted) == ["10.1.0.0/16", "10.2.0.0/16"]
    for context in (("trust", "untrust"), ("untrust", "trust")):
        assert view[("10.1.0.0/16", "10.2.0.0/16", *context)]["installed"]
        assert view[("10.2.0.0/16", "10.1.0.0/16", *context)]["installed"]
        p3 = view[("10.1.1.1/32", "239.1.1.1/32", *context)]
        assert not p3["installed"] and "outside scope policy scope1" in p3["reason"]


def test_member2_does_not_install_p2_where_deny2_shadows_it():
    accepted, view = _installed_view(MEMBER2)
    p2 = view[("10.2.0.0/16", "10.1.0.0/16", "untrust", "trust")]
    assert not p2["installed"] and p2["reason"] == "shadowed by policy deny2"
    p1 = view[("10.1.0.0/16", "10.2.0.0/16", "trust", "untrust")]
    assert not p1["installed"] and p1["reason"] == "shadowed by policy deny1"
    assert all(not e["installed"] for e in view.values() if e["destination"] == "239.1.1.1/32")
    # p1 and p2 still each have one direction, so their keys are kept; p3's is discarded.
    assert sorted(str(sa.source) for sa in accepted) == ["10.1.0.0/16", "10.2.0.0/16"]
