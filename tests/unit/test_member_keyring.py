"""The member's key lifecycle on a fake clock: every timing rule at its exact second.

The rules are the spec's, ../shared/seeds/000_c0cdc3497280ad89.txt, "Understanding
Group VPNv1 Group Key Operations" (cited per test as "Key Activation" and "Member
Registration"), and issue 4 point 6.  Times are seconds on the member's clock; a
key installed at `t` with lifetime `L` has its hard lifetime at `t + L`.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from groupvpn.member.keyring import (
    ChangeKind,
    Delivery,
    GroupKeyring,
    KeyChange,
    KeyState,
    PolicySelectors,
)
from groupvpn.member.keys import GroupSa
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

P1 = PolicySelectors(IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0)
P2 = PolicySelectors(IPv4Network("10.2.0.0/16"), IPv4Network("10.1.0.0/16"), 0, 0, 0)
P3 = PolicySelectors(IPv4Network("10.1.1.1/32"), IPv4Network("239.1.1.1/32"), 0, 5000, 17)


def tek(spi: int, received_at: float, lifetime: float = 3600, policy: PolicySelectors = P1):
    return GroupSa(
        vpn="vpn1",
        group_id=1,
        spi=spi.to_bytes(4, "big"),
        source=policy.source,
        destination=policy.destination,
        source_port=policy.source_port,
        destination_port=policy.destination_port,
        protocol=policy.protocol,
        cipher=ESP_CIPHERS["aes-128-cbc"],
        integrity=ESP_INTEGRITY["hmac-sha1-96"],
        expires_at=received_at + lifetime,
        encryption_key=bytes(16),
        integrity_key=bytes(20),
    )


def spi(n: int) -> bytes:
    return n.to_bytes(4, "big")


def brief(changes: list[KeyChange]) -> list[tuple[str, int, float]]:
    return [(c.kind.value, int.from_bytes(c.spi, "big"), c.at) for c in changes]


def encrypting(ring: GroupKeyring, policy: PolicySelectors = P1) -> int | None:
    sa = ring.encrypt_key(policy)
    return None if sa is None else int.from_bytes(sa.spi, "big")


def held(ring: GroupKeyring, policy: PolicySelectors = P1) -> list[int]:
    return [int.from_bytes(sa.spi, "big") for sa in ring.decrypt_keys(policy)]


def states(ring: GroupKeyring) -> dict[int, str]:
    return {int.from_bytes(s.spi, "big"): s.state.value for s in ring.status(0)}


def registered(atd: float = 15, lifetime: float = 3600) -> GroupKeyring:
    ring = GroupKeyring()
    assert brief(ring.install_pulled([tek(1, 0, lifetime)], 0, atd)) == [
        ("installed", 1, 0),
        ("activated", 1, 0),
    ]
    return ring


# -- first registration --------------------------------------------------------------


def test_the_first_key_of_a_policy_encrypts_at_once():
    """Our decision (module docstring): with no previous key, waiting only drops traffic."""
    ring = registered()
    assert encrypting(ring) == 1
    assert held(ring) == [1]
    assert ring.next_deadline() == 3600
    change = ring.install_pulled([tek(1, 0)], 0)  # same key again: nothing changes
    assert change == []


# -- rekey by push: 2 x ATD ------------------------------------------------------------

SCHEDULES = [  # (ATD, lifetime): defaults first, then non-default values
    (15, 3600),
    (30, 600),
    (5, 3600),
    (10, 100),
]


@pytest.mark.parametrize(("atd", "lifetime"), SCHEDULES)
def test_a_pushed_key_encrypts_after_two_atd_and_the_old_one_lives_to_its_hard_lifetime(
    atd, lifetime
):
    """Key Activation: "received through a rekey message ... waits 2*(activation-time-delay)";
    "If ... it receives a TEK through a groupkey-push message ... the existing TEK is not
    deleted until the hard lifetime expires. The lifetime is not shortened"."""
    ring = registered(atd, lifetime)
    assert ring.refresh_at() == lifetime - 3 * atd  # 3555 with the defaults
    rekey = lifetime - 4 * atd  # the server's rekey time, 3540 with the defaults
    changes = ring.install_pushed([tek(2, rekey, lifetime)], rekey, atd)
    assert brief(changes) == [("installed", 2, rekey)]
    assert states(ring) == {1: "active", 2: "pending"}
    assert held(ring) == [1, 2]  # the pending key already decrypts
    assert ring.next_deadline() == rekey + 2 * atd
    assert ring.refresh_at() == rekey + lifetime - 3 * atd  # the new key's, 7095 by default

    assert ring.advance(rekey + 2 * atd - 0.001) == []
    assert encrypting(ring) == 1
    assert brief(ring.advance(rekey + 2 * atd)) == [  # 3570 with the defaults
        ("activated", 2, rekey + 2 * atd),
        ("retired", 1, rekey + 2 * atd),
    ]
    assert encrypting(ring) == 2
    assert held(ring) == [1, 2]  # the retiring key still decrypts
    assert ring.next_deadline() == lifetime

    assert ring.advance(lifetime - 0.001) == []
    removed = ring.advance(lifetime)  # 3600: its hard lifetime, not ATD after activation
    assert brief(removed) == [("removed", 1, lifetime)]
    assert removed[0].reason == "hard lifetime"
    assert held(ring) == [2]
    assert ring.next_deadline() == rekey + lifetime


def test_default_push_times_in_full():
    """The defaults spelled out: rekey 3540, new key encrypts 3570, old key gone 3600."""
    ring = registered()
    ring.install_pushed([tek(2, 3540)], 3540)
    assert brief(ring.advance(10_000)) == [
        ("activated", 2, 3570),
        ("retired", 1, 3570),
        ("removed", 1, 3600),
        ("removed", 2, 7140),
    ]
    assert ring.refresh_at() == 7140  # lapsed: no key left, pull now


# -- re-registration with one TEK: 1 x ATD -------------------------------------------


@pytest.mark.parametrize(("atd", "lifetime"), SCHEDULES)
def test_a_pulled_key_encrypts_after_one_atd_and_the_old_one_lives_to_its_hard_lifetime(
    atd, lifetime
):
    """Member Registration: pull at lifetime - 3*ATD; Key Activation: "received through
    member reregistration, the member waits the number of seconds specified by the
    activation-time-delay value"; "receives only one TEK ... not deleted until the hard
    lifetime expires"."""
    ring = registered(atd, lifetime)
    pull = lifetime - 3 * atd  # 3555 with the defaults
    assert ring.refresh_at() == pull
    changes = ring.install_pulled([tek(2, pull, lifetime)], pull, atd)
    assert brief(changes) == [("installed", 2, pull)]
    assert ring.next_deadline() == pull + atd
    assert ring.advance(pull + atd - 0.001) == []
    assert brief(ring.advance(pull + atd)) == [  # 3570 with the defaults
        ("activated", 2, pull + atd),
        ("retired", 1, pull + atd),
    ]
    assert ring.advance(lifetime - 0.001) == []
    assert held(ring) == [1, 2]
    assert brief(ring.advance(lifetime)) == [("removed", 1, lifetime)]
    assert ring.refresh_at() == pull + lifetime - 3 * atd


# -- re-registration with several TEKs -----------------------------------------------


@pytest.mark.parametrize(("atd", "lifetime"), SCHEDULES)
def test_a_pull_with_the_current_and_the_next_key_after_a_lost_push(atd, lifetime):
    """Key Activation: "receives two or more TEKs, it holds the most recent two ... the
    older TEK is activated immediately, and the newer TEK is activated after the
    activation-time-delay"; "The previous key is removed ... activation-time-delay ...
    after the new key is activated"."""
    ring = registered(atd, lifetime)
    rekey = lifetime - 4 * atd  # the push of the key made then was lost
    pull = lifetime - 3 * atd
    changes = ring.install_pulled([tek(1, 0, lifetime), tek(2, rekey, lifetime)], pull, atd)
    assert brief(changes) == [("installed", 2, pull)]  # key 1 is the older: already active
    assert brief(ring.advance(pull + atd)) == [
        ("activated", 2, pull + atd),
        ("retired", 1, pull + atd),
    ]
    removed = ring.advance(lifetime)
    # ATD after the newer key activated: 3585 with the defaults, before its hard lifetime.
    assert brief(removed) == [("removed", 1, pull + 2 * atd)]
    assert removed[0].reason == "activation-time-delay after a newer key activated"
    assert pull + 2 * atd < lifetime


def test_a_pull_with_two_new_keys_deletes_the_existing_one():
    """Key Activation: "holds the most recent two TEKs and deletes the existing TEK"."""
    ring = registered()
    changes = ring.install_pulled([tek(12, 3540), tek(11, 3000)], 3555)
    assert brief(changes) == [
        ("removed", 1, 3555),
        ("installed", 11, 3555),
        ("installed", 12, 3555),
        ("activated", 11, 3555),  # the older (earlier hard lifetime) at once
    ]
    assert changes[0].reason == "a pull brought two newer keys"
    assert held(ring) == [11, 12]
    assert brief(ring.advance(7000)) == [
        ("activated", 12, 3570),
        ("retired", 11, 3570),
        ("removed", 11, 3585),
    ]


def test_a_pull_with_three_keys_keeps_the_newest_two():
    """Key Activation: "holds the most recent two TEKs" (ATD 30)."""
    ring = GroupKeyring()
    sas = [tek(3, 100, 600), tek(1, 0, 600), tek(2, 50, 600)]
    assert brief(ring.install_pulled(sas, 200, 30)) == [
        ("installed", 2, 200),
        ("installed", 3, 200),
        ("activated", 2, 200),
    ]
    assert brief(ring.advance(1000)) == [
        ("activated", 3, 230),
        ("retired", 2, 230),
        ("removed", 2, 260),
        ("removed", 3, 700),
    ]


def test_the_older_key_of_a_pull_goes_at_its_hard_lifetime_when_that_comes_first():
    """Every key is removed at its hard lifetime, even before ATD after the newer activated."""
    ring = registered()
    ring.install_pulled([tek(1, 0), tek(2, 3540)], 3580)
    assert brief(ring.advance(3600)) == [
        ("activated", 2, 3595),
        ("retired", 1, 3595),
        ("removed", 1, 3600),  # 3595 + 15 = 3610 would be past its hard lifetime
    ]


# -- short lifetimes, hard lifetimes, two keys -------------------------------------------


def test_a_key_shorter_than_two_atd_is_still_installed():
    """Key Activation: "still installs a received TEK even if the TEK lifetime is less
    than two times the activation-time-delay value"."""
    ring = registered()
    assert brief(ring.install_pushed([tek(2, 100, 20)], 100)) == [("installed", 2, 100)]
    assert held(ring) == [1, 2]
    assert ring.decrypt_key(spi(2)) is not None
    # It would encrypt at 130 but its hard lifetime is 120: it only ever decrypts.
    assert brief(ring.advance(200)) == [("removed", 2, 120)]
    assert encrypting(ring) == 1


def test_a_short_key_with_nothing_else_encrypts_until_its_hard_lifetime():
    ring = GroupKeyring()
    assert brief(ring.install_pulled([tek(1, 0, 20)], 0, 15)) == [
        ("installed", 1, 0),
        ("activated", 1, 0),
    ]
    # Lifetime - 3 x ATD is already past: a pull now would bring the same key back.
    assert ring.refresh_at() == 20
    assert brief(ring.advance(20)) == [("removed", 1, 20)]
    assert ring.refresh_at() == 20  # lapsed: pull now


def test_an_active_key_goes_at_its_hard_lifetime_and_the_pending_one_takes_over():
    """The push came too late for 2 x ATD: the pending key encrypts when the old one goes."""
    ring = registered()
    ring.install_pushed([tek(2, 3590)], 3590)
    assert brief(ring.advance(3600)) == [("removed", 1, 3600), ("activated", 2, 3600)]
    assert ring.advance(3620) == []  # nothing more at 3620, when 2 x ATD would have ended


def test_a_key_with_no_successor_goes_at_its_hard_lifetime_and_the_member_must_pull():
    """Member Registration: "does not receive a new SA key ... before the current key
    expires, the member must reregister"."""
    ring = registered(30, 600)
    assert ring.refresh_at() == 510
    assert brief(ring.advance(600)) == [("removed", 1, 600)]
    assert encrypting(ring) is None and held(ring) == []
    assert ring.next_deadline() is None
    assert ring.refresh_at() == 600  # in the past from now on: pull at once
    ring.install_pulled([tek(2, 601, 600)], 601, 30)
    assert encrypting(ring) == 2
    assert ring.refresh_at() == 601 + 600 - 90


def test_the_same_key_pulled_again_moves_the_refresh_to_its_hard_lifetime():
    """A server without rekeys gives the same TEK at 3555: no pull loop until 3600."""
    ring = registered()
    assert ring.install_pulled([tek(1, 0)], 3555) == []
    assert ring.refresh_at() == 3600
    assert encrypting(ring) == 1


def test_only_the_two_newest_keys_are_kept():
    """Key Activation: "retains the two most recent keys"; an operator rekey right after a
    rekey pushes out the oldest, and the older of the two left encrypts at once."""
    ring = registered()
    ring.install_pushed([tek(2, 100)], 100)
    changes = ring.install_pushed([tek(3, 110)], 110)
    assert brief(changes) == [
        ("installed", 3, 110),
        ("removed", 1, 110),
        ("activated", 2, 110),
    ]
    assert changes[1].reason == "two newer keys arrived"
    assert brief(ring.advance(140)) == [("activated", 3, 140), ("retired", 2, 140)]
    assert ring.next_deadline() == 3700  # key 2 retires until its hard lifetime


def test_a_third_key_after_the_rollover_removes_the_retiring_one():
    ring = registered()
    ring.install_pushed([tek(2, 3540)], 3540)
    ring.advance(3570)
    assert brief(ring.install_pushed([tek(3, 3580)], 3580)) == [
        ("installed", 3, 3580),
        ("removed", 1, 3580),
    ]
    assert states(ring) == {2: "active", 3: "pending"}
    assert ring.next_deadline() == 3610


def test_a_key_received_twice_keeps_its_state_and_its_earliest_activation():
    """A rekey that also reaches the member through a re-registration (push at 3540, pull
    with the current and the next key at 3550): "activated after the activation-time-delay"
    of the pull, 3565, comes before 2 x ATD of the push, 3570."""
    ring = registered()
    ring.install_pushed([tek(2, 3540)], 3540)
    assert ring.install_pushed([tek(2, 3540)], 3545) == []  # a retransmitted copy
    assert ring.install_pulled([tek(1, 0), tek(2, 3540)], 3550) == []
    assert brief(ring.advance(3600)) == [
        ("activated", 2, 3565),
        ("retired", 1, 3565),
        ("removed", 1, 3580),  # ATD after the newer key of a multi-TEK pull activated
    ]


# -- several policies, withdrawal, delete, clear ---------------------------------------


def test_policies_roll_independently_and_a_policy_left_out_of_a_pull_only_decrypts():
    ring = GroupKeyring()
    ring.install_pulled([tek(1, 0), tek(2, 0, 600, P2), tek(3, 0, 3600, P3)], 0)
    assert ring.policies() == (P1, P2, P3)
    assert ring.refresh_at() == 555  # P2's key is the first to need renewing
    ring.install_pushed([tek(4, 540, 600, P2)], 540)
    assert ring.refresh_at() == 1095
    assert brief(ring.advance(570)) == [("activated", 4, 570), ("retired", 2, 570)]
    # The next registration no longer carries P3 (deleted on the server, or no scope policy).
    changes = ring.install_pulled([tek(1, 0), tek(4, 540, 600, P2)], 580)
    assert brief(changes) == [("retired", 3, 580)]
    assert changes[0].reason == "policy not in the latest pull"
    assert ring.encrypt_key(P3) is None and held(ring, P3) == [3]
    assert ring.refresh_at() == 1095  # P3 needs no renewing; P1's turn comes at 3555
    assert brief(ring.advance(3599)) == [("removed", 2, 600), ("removed", 4, 1140)]
    assert ring.refresh_at() == 1140  # P2 lapsed: its key went with no successor
    assert brief(ring.advance(3600)) == [("removed", 1, 3600), ("removed", 3, 3600)]
    assert ring.refresh_at() == 1140
    ring.install_pulled([tek(5, 3601, 3600, P2)], 3601)
    assert ring.refresh_at() == 3601 + 3555  # P3's key went at 3600 without a lapse


def test_a_withdrawn_policy_that_comes_back_starts_over():
    ring = registered()
    assert brief(ring.install_pulled([tek(2, 10, 3600, P2)], 10)) == [
        ("retired", 1, 10),
        ("installed", 2, 10),
        ("activated", 2, 10),
    ]
    assert ring.refresh_at() == 3565  # only P2 needs renewing
    changes = ring.install_pulled([tek(1, 0), tek(2, 10, 3600, P2)], 20)
    assert brief(changes) == [("removed", 1, 20), ("installed", 1, 20), ("activated", 1, 20)]
    assert changes[0].reason == "received again after it retired"
    assert ring.refresh_at() == 3555


def test_keys_the_server_deletes_go_at_once():
    ring = registered()
    ring.install_pushed([tek(2, 100)], 100)
    changes = ring.delete([spi(1), spi(99)], 105)
    assert brief(changes) == [("removed", 1, 105), ("activated", 2, 105)]
    assert changes[0].reason == "deleted by the key server"


def test_clear_removes_every_key():
    ring = GroupKeyring()
    ring.install_pulled([tek(1, 0), tek(2, 0, 3600, P2)], 0)
    ring.install_pushed([tek(3, 50)], 50)
    changes = ring.clear(60)
    assert sorted(brief(changes)) == [("removed", 1, 60), ("removed", 2, 60), ("removed", 3, 60)]
    assert {c.reason for c in changes} == {"cleared"}
    assert ring.policies() == () and ring.status(60) == []
    assert ring.next_deadline() is None and ring.refresh_at() is None
    assert encrypting(ring) is None and ring.decrypt_key(spi(1)) is None


# -- lookups and status --------------------------------------------------------------


def test_knows_tells_a_heartbeat_whether_a_rekey_was_missed():
    ring = registered()
    ring.install_pushed([tek(2, 3540)], 3540)
    assert ring.knows([spi(1), spi(2)])
    assert ring.knows([])
    assert not ring.knows([spi(2), spi(3)])
    assert ring.unknown([spi(2), spi(3)]) == {spi(3)}


def test_status_shows_state_lifetime_and_algorithms_but_no_key_bytes():
    ring = registered()
    ring.install_pushed([tek(2, 3540)], 3540)
    rows = ring.status(3550)
    assert [(r.spi, r.state, r.delivery) for r in rows] == [
        (spi(1), KeyState.ACTIVE, Delivery.PULL),
        (spi(2), KeyState.PENDING, Delivery.PUSH),
    ]
    first, second = rows
    assert (first.lifetime_remaining, first.activates_at, first.removed_at) == (50, None, 3600)
    assert (second.lifetime_remaining, second.activates_at) == (3590, 3570)
    assert (second.cipher, second.integrity) == ("aes-128-cbc", "hmac-sha1-96")
    assert (second.selectors, second.vpn, second.group_id) == (P1, "vpn1", 1)
    assert (second.received_at, second.expires_at) == (3540, 7140)
    assert not any(hasattr(r, "encryption_key") or hasattr(r, "integrity_key") for r in rows)


def test_changes_name_the_policy_and_vpn_for_the_log():
    ring = GroupKeyring()
    (installed, activated) = ring.install_pulled([tek(7, 0, 3600, P3)], 0)
    assert installed.kind is ChangeKind.INSTALLED and installed.reason == "pulled"
    assert (activated.vpn, activated.selectors, activated.reason) == (
        "vpn1",
        P3,
        "no other key encrypts",
    )
    assert str(P3) == "10.1.1.1/32:0 -> 239.1.1.1/32:5000 protocol 17"


def test_an_spi_that_moves_to_another_policy_leaves_the_old_one():
    ring = registered()
    changes = ring.install_pushed([tek(1, 10, 3600, P2)], 10)
    assert brief(changes) == [("removed", 1, 10), ("installed", 1, 10), ("activated", 1, 10)]
    assert ring.policies() == (P2,)


def test_a_negative_activation_time_delay_is_refused():
    with pytest.raises(ValueError, match="negative"):
        GroupKeyring().install_pushed([tek(1, 0)], 0, -1)
