"""The member keyring under random pulls, pushes, deletes, clears and clock jumps.

Whatever the key server sends and whenever the timer fires, the spec's invariants hold
(../shared/seeds/000_c0cdc3497280ad89.txt, "Understanding Group VPNv1 Group Key
Operations", Key Activation): at most the two most recent keys per group SA; one key
encrypts, and it is one that decrypts; a pending key never waits behind no active key;
no key outlives its hard lifetime.  And the timer's granularity changes nothing: advancing
in many small steps gives the very changes, at the very times, of one jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from groupvpn.member.keyring import GroupKeyring, KeyChange, KeyState, PolicySelectors
from groupvpn.member.keys import GroupSa
from groupvpn.server.tek import ESP_CIPHERS, ESP_INTEGRITY

POLICIES = [
    PolicySelectors(IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 0, 0, 0),
    PolicySelectors(IPv4Network("10.2.0.0/16"), IPv4Network("10.1.0.0/16"), 0, 0, 0),
    PolicySelectors(IPv4Network("10.1.1.1/32"), IPv4Network("239.1.1.1/32"), 0, 0, 17),
]


@dataclass(frozen=True)
class Tek:
    policy: int
    spi: int
    lifetime: int


@dataclass(frozen=True)
class Op:
    kind: str  # pull, push, delete, clear, advance
    dt: int  # seconds since the previous operation
    teks: tuple[Tek, ...] = ()
    atd: int = 15


teks = st.builds(Tek, st.integers(0, 2), st.integers(1, 9), st.sampled_from([0, 5, 20, 40, 90]))
ops = st.one_of(
    st.builds(
        Op,
        st.sampled_from(["pull", "push", "delete"]),
        st.integers(0, 60),
        st.lists(teks, max_size=4).map(tuple),
        st.sampled_from([0, 5, 15, 30]),
    ),
    st.builds(Op, st.just("advance"), st.integers(0, 120)),
    st.builds(Op, st.just("clear"), st.integers(0, 60)),
)


def group_sa(tek: Tek, now: float) -> GroupSa:
    policy = POLICIES[tek.policy]
    return GroupSa(
        vpn="vpn1",
        group_id=1,
        spi=tek.spi.to_bytes(4, "big"),
        source=policy.source,
        destination=policy.destination,
        source_port=policy.source_port,
        destination_port=policy.destination_port,
        protocol=policy.protocol,
        cipher=ESP_CIPHERS["aes-128-cbc"],
        integrity=ESP_INTEGRITY["hmac-sha1-96"],
        expires_at=now + tek.lifetime,
        encryption_key=bytes(16),
        integrity_key=bytes(20),
    )


def apply(ring: GroupKeyring, op: Op, now: float) -> list[KeyChange]:
    sas = [group_sa(tek, now) for tek in op.teks]
    if op.kind == "pull":
        return ring.install_pulled(sas, now, op.atd)
    if op.kind == "push":
        return ring.install_pushed(sas, now, op.atd)
    if op.kind == "delete":
        return ring.delete([sa.spi for sa in sas], now)
    if op.kind == "clear":
        return ring.clear(now)
    return ring.advance(now)


def check_invariants(ring: GroupKeyring, now: float) -> None:
    rows = ring.status(now)
    assert len({row.spi for row in rows}) == len(rows)  # one key per SPI
    for policy in ring.policies():
        keys = [row for row in rows if row.selectors == policy]
        assert 1 <= len(keys) <= 2  # "retains the two most recent keys"
        states = [row.state for row in keys]
        assert states.count(KeyState.ACTIVE) <= 1
        encrypting = ring.encrypt_key(policy)
        decrypting = ring.decrypt_keys(policy)
        if encrypting is not None:
            assert encrypting in decrypting
            assert ring.decrypt_key(encrypting.spi) == encrypting
            # "the most recent key is used for encryption": nothing newer is retiring.
            newer = states[states.index(KeyState.ACTIVE) + 1 :]
            assert KeyState.RETIRING not in newer
        if KeyState.PENDING in states:
            assert encrypting is not None  # no pending key behind no active one
        for row in keys:
            assert row.expires_at > now and row.removed_at > now  # nothing expired is kept
            assert row.removed_at <= row.expires_at
            assert (row.activates_at is not None) == (row.state is KeyState.PENDING)
            assert row.activates_at is None or row.activates_at > now
    deadline = ring.next_deadline()
    assert (deadline is None) == (not rows)
    assert deadline is None or deadline > now


@settings(max_examples=400, deadline=None)
@given(st.lists(ops, max_size=25))
def test_random_operations_keep_every_invariant(sequence):
    ring = GroupKeyring()
    now = 0.0
    for op in sequence:
        now += op.dt
        for change in apply(ring, op, now):
            assert change.at <= now
        check_invariants(ring, now)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=20), st.data())
def test_timer_granularity_changes_nothing(sequence, data):
    """Extra advance() calls between operations leave changes and state as they were."""
    coarse, fine = GroupKeyring(), GroupKeyring()
    coarse_changes: list[KeyChange] = []
    fine_changes: list[KeyChange] = []
    now = 0.0
    for op in sequence:
        steps = data.draw(st.lists(st.floats(0, op.dt, allow_nan=False), max_size=4))
        for step in sorted(steps):
            fine_changes += fine.advance(now + step)
        now += op.dt
        coarse_changes += apply(coarse, op, now)
        fine_changes += apply(fine, op, now)
        assert fine_changes == coarse_changes
        assert fine.status(now) == coarse.status(now)
        assert fine.refresh_at() == coarse.refresh_at()


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=25))
def test_changes_replay_to_the_held_keys(sequence):
    """The change log alone (what the data plane follows) rebuilds the keyring's state."""
    ring = GroupKeyring()
    replayed: dict[bytes, str] = {}
    now = 0.0
    for op in sequence:
        now += op.dt
        for change in apply(ring, op, now):
            if change.kind.value == "installed":
                assert change.spi not in replayed
                replayed[change.spi] = "pending"
            elif change.kind.value == "removed":
                del replayed[change.spi]
            else:
                assert change.spi in replayed
                replayed[change.spi] = "active" if change.kind.value == "activated" else "retiring"
        assert replayed == {row.spi: row.state.value for row in ring.status(now)}
