"""A policy the key server withdraws, as the member's keys see it, in each dialect.

v2 rekeys delete a withdrawn policy's key with a Delete payload (RFC 6407).
RFC 3547 pushes have no Delete, so our v1 rekeys list the group's whole policy
set (docs/rekey-wire.md) and a v1 member drops the keys of a policy that is no
longer listed.  The pushes are built with the key server's own pieces, under
the KEK the member got at registration (tests/unit/member_rekey_net.py).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from groupvpn.member.keyring import WITHDRAWN, ChangeKind, KeyChange
from groupvpn.member.rekeys import RekeyApplied
from groupvpn.wire.dialect import V1, V2
from tests.unit.member_rekey_net import RekeyNet, rekey_net
from tests.unit.test_server_kek import KEK_GROUP

GROUP = replace(KEK_GROUP, server_address=None)


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def _policies(net: RekeyNet) -> dict[str, set[bytes]]:
    """Held SPIs by the destination each policy protects."""
    held: dict[str, set[bytes]] = {}
    for key in net.held():
        held.setdefault(str(key.selectors.destination), set()).add(key.spi)
    return held


def test_a_v1_rekey_that_no_longer_lists_a_policy_withdraws_its_key(private_key):
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=100.0)
    before = _policies(net)
    assert len(before) == 3
    names = [policy.name for policy in net.definition().policies]
    kept, dropped = names[:2], names[2]
    net.deliver(net.rekey(1, net.new_teks(kept)))
    [applied] = net.of(RekeyApplied)
    assert (applied.installed, applied.deleted) == (2, 1)
    removed = [c for c in net.of(KeyChange) if c.kind is ChangeKind.REMOVED]
    assert [(c.at, c.reason) for c in removed] == [(100.0, WITHDRAWN)]
    dropped_policy = next(p for p in net.definition().policies if p.name == dropped)
    assert before[str(dropped_policy.destination)] == {removed[0].spi}
    after = _policies(net)
    assert str(dropped_policy.destination) not in after and len(after) == 2
    # The two listed policies keep their old key (until its hard lifetime) and the new one.
    assert all(len(spis) == 2 for spis in after.values())


def test_a_v1_push_without_sa_teks_withdraws_nothing(private_key):
    """A KEK rollover alone lists no policy at all: it is not a policy set."""
    net = rekey_net(GROUP, V1, private_key)
    net.run(until=100.0)
    net.deliver(net.rekey(1, []))
    assert len(_policies(net)) == 3
    assert not [c for c in net.of(KeyChange) if c.kind is ChangeKind.REMOVED]


def test_a_v2_rekey_leaves_unlisted_policies_to_its_delete_payload(private_key):
    net = rekey_net(GROUP, V2, private_key)
    net.run(until=100.0)
    names = [policy.name for policy in net.definition().policies]
    net.deliver(net.rekey(1, net.new_teks(names[:2])))
    assert len(_policies(net)) == 3  # nothing inferred from what is not listed
    doomed = next(iter(_policies(net)[str(net.definition().policies[2].destination)]))
    net.deliver(net.rekey(2, net.new_teks(names[:2]), deletes=[doomed]))
    assert len(_policies(net)) == 2
