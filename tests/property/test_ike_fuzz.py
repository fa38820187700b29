"""Hypothesis against the Phase 1 cores: whatever arrives, only drops or failures come out.

Each example replays a real handshake up to some point, then delivers random or
mutated octets to one side.  The core must not raise, must not report an
internal error, and must still be able to finish a fresh negotiation.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupvpn.ike.events import IkeSaFailed, InternalError, PacketDropped
from tests.ikepair import INITIATOR_IP, RESPONDER_IP, Pair, make_pair, peer

MODES = ("main", "aggressive")


def _handshake(mode: str) -> list[tuple[str, bytes]]:
    pair = make_pair(peer(RESPONDER_IP, mode=mode), peer(INITIATOR_IP, mode=mode))
    pair.initiator.initiate("gw", 0.0)
    pair.transfer()
    return pair.wire


RECORDED = {mode: _handshake(mode) for mode in MODES}


def _replay(mode: str, upto: int) -> Pair:
    """A fresh pair that has exchanged the first ``upto`` messages of a handshake."""
    pair = make_pair(peer(RESPONDER_IP, mode=mode), peer(INITIATOR_IP, mode=mode))
    pair.initiator.initiate("gw", 0.0)
    delivered = 0

    def drop(sender: str, n: int, data: bytes) -> bool:
        nonlocal delivered
        delivered += 1
        return delivered > upto

    pair.transfer(drop=drop)
    return pair


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "set", "header"]))
        if kind == "flip" and data:
            index = draw(st.integers(0, len(data) - 1))
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "insert":
            index = draw(st.integers(0, len(data)))
            data[index:index] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "set" and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "header" and len(data) >= 28:
            # Rewrite a header field (next payload, exchange, flags, message ID).
            index = draw(st.sampled_from([16, 18, 19, 20, 23]))
            data[index] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def attack(draw: st.DrawFn) -> tuple[str, int, str, bytes]:
    mode = draw(st.sampled_from(MODES))
    wire = RECORDED[mode]
    upto = draw(st.integers(0, len(wire)))
    target = draw(st.sampled_from(["i", "r"]))
    if draw(st.booleans()):
        payload = draw(st.binary(max_size=300))
    else:
        _, original = wire[draw(st.integers(0, len(wire) - 1))]
        payload = draw(mutated(original))
    return mode, upto, target, payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(attack())
def test_phase1_cores_only_drop_or_fail(case: tuple[str, int, str, bytes]):
    mode, upto, target, payload = case
    pair = _replay(mode, upto)
    endpoint, source = (
        (pair.responder, (INITIATOR_IP, 848))
        if target == "r"
        else (pair.initiator, (RESPONDER_IP, 848))
    )
    endpoint.receive_datagram(payload, source, 1.0)
    endpoint.handle_timer(1.0)
    pair.collect()
    errors = [e for e in pair.events_i + pair.events_r if isinstance(e, InternalError)]
    assert not errors, errors[0].detail
    # Whatever happened, both cores still run their timers to the end cleanly.
    while pair.advance_to_next_timer() is not None and pair.now < 100_000:
        pair.transfer()
    assert not any(isinstance(e, InternalError) for e in pair.events_i + pair.events_r)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_datagrams_leave_a_responder_without_state(datagrams: list[bytes]):
    pair = make_pair()
    for data in datagrams:
        pair.responder.receive_datagram(data, (INITIATOR_IP, 848), 0.0)
    assert pair.responder.get_timer() is None
    pair.collect()
    assert all(isinstance(e, PacketDropped | IkeSaFailed) for e in pair.events_r)
