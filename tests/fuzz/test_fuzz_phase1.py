"""Fuzzing IkeEndpoint.receive_datagram in both roles, both modes, at every exchange state.

Each example replays a real handshake up to some message, then hands one side
a mutated corpus message: as it was (other cookies), with the live SA's cookies
adopted (so it reaches the SA's state machine), or as mutated *plaintext*
encrypted under the live SA's keys (so it reaches the payload decoders and the
authentication checks behind decryption).  Whatever arrives: no exception, no
InternalError, half-open state within its bounds, and afterwards the two
endpoints still negotiate a fresh SA.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groupvpn.ike.endpoint import IkeEndpoint
from groupvpn.ike.events import IkeSaEstablished, InternalError
from groupvpn.ike.guard import HALF_OPEN_PER_ADDRESS
from groupvpn.ike.sa import IkeSa
from tests.fuzz.corpus import adopt, encrypt_under, examples, mutated, seeds
from tests.ikepair import INITIATOR_IP, PORT, RESPONDER_IP, Pair, make_pair, peer

MODES = ("main", "aggressive")


def _pair(mode: str) -> Pair:
    return make_pair(peer(RESPONDER_IP, mode=mode), peer(INITIATOR_IP, mode=mode))


def _replay(mode: str, upto: int) -> Pair:
    """A fresh pair that has exchanged the first ``upto`` messages of a handshake."""
    pair = _pair(mode)
    pair.initiator.initiate("gw", 0.0)
    delivered = 0

    def lose_after(sender: str, n: int, data: bytes) -> bool:
        nonlocal delivered
        delivered += 1
        return delivered > upto

    pair.transfer(drop=lose_after)
    return pair


def _live_sa(endpoint: IkeEndpoint) -> IkeSa | None:
    return next(iter(endpoint._table), None)


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, int, str, str, bytes]:
    mode = draw(st.sampled_from(MODES))
    upto = draw(st.integers(0, 6 if mode == "main" else 3))
    side = draw(st.sampled_from(["responder", "initiator"]))
    how = draw(st.sampled_from(["as-is", "adopt", "encrypt", "random"]))
    if how == "random":
        return mode, upto, side, how, draw(st.binary(max_size=400))
    pool = f"phase1-{mode}-plain" if how == "encrypt" else f"phase1-{mode}"
    extra = ("informational",) if how != "encrypt" else ()
    return mode, upto, side, how, draw(mutated(seeds(pool, *extra)))


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_phase1_endpoints_survive_any_datagram_at_any_state(
    case: tuple[str, int, str, str, bytes],
) -> None:
    mode, upto, side, how, data = case
    pair = _replay(mode, upto)
    endpoint = pair.responder if side == "responder" else pair.initiator
    source = (INITIATOR_IP, PORT) if side == "responder" else (RESPONDER_IP, PORT)
    sa = _live_sa(endpoint)
    if how in ("adopt", "encrypt") and sa is not None:
        data = adopt(data, sa.initiator_cookie + sa.responder_cookie, message_id=0)
        if how == "encrypt":
            data = encrypt_under(sa, data)
    endpoint.receive_datagram(data, source, 1.0)
    endpoint.handle_timer(1.0)
    pair.collect()
    errors = [e for e in pair.events_i + pair.events_r if isinstance(e, InternalError)]
    assert not errors, errors[0].detail
    assert pair.responder.half_open_count(INITIATOR_IP) <= HALF_OPEN_PER_ADDRESS
    # The cores still run their timers to the end, and still negotiate afresh.
    while pair.advance_to_next_timer() is not None and pair.now < 100_000:
        pair.transfer()
    before = [
        len([e for e in ev if isinstance(e, IkeSaEstablished)])
        for ev in (pair.events_i, pair.events_r)
    ]
    pair.now += 1.0
    pair.initiator.initiate("gw", pair.now)
    pair.transfer()
    after = [
        len([e for e in ev if isinstance(e, IkeSaEstablished)])
        for ev in (pair.events_i, pair.events_r)
    ]
    assert after == [before[0] + 1, before[1] + 1]
    assert not any(isinstance(e, InternalError) for e in pair.events_i + pair.events_r)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(mutated(seeds("phase1-main", "phase1-aggressive", "informational")), max_size=30))
def test_a_stream_of_mutated_messages_leaves_a_responder_no_sa_and_bounded_half_open(
    datagrams: list[bytes],
) -> None:
    pair = _pair("main")
    for data in datagrams:
        pair.responder.receive_datagram(data, (INITIATOR_IP, PORT), 0.0)
    pair.collect()
    assert not any(isinstance(e, InternalError) for e in pair.events_r)
    # Nothing a corpus mutation sends can complete MM3 for us: no SA, no timer.
    assert not list(pair.responder._table) and pair.responder.get_timer() is None
    assert pair.responder.half_open_count() <= HALF_OPEN_PER_ADDRESS
