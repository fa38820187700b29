"""The asyncio shell keeps a core's timer alive whatever the core raises."""

from __future__ import annotations

import asyncio

import pytest

from groupvpn.ike.events import Address
from groupvpn.runtime import udp


class FlakyCore:
    """Asks for a timer at ``deadline``; its first handle_timer and receive raise."""

    def __init__(self, deadline: float) -> None:
        self.deadline: float | None = deadline
        self.timer_calls: list[float] = []
        self.received = 0

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        self.received += 1
        if self.received == 1:
            raise RuntimeError("bug while receiving")

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return []

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.timer_calls.append(now)
        if len(self.timer_calls) == 1:
            raise RuntimeError("bug in a timer")  # the deadline stays where it was
        self.deadline = None

    def next_event(self) -> object | None:
        return None


def test_a_failing_timer_is_retried_after_a_pause_not_in_a_busy_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> tuple[FlakyCore, udp.EndpointProtocol]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        core = FlakyCore(start + 0.01)
        protocol = udp.EndpointProtocol(core, lambda event: None)
        protocol.datagram_received(b"x", ("127.0.0.1", 848))  # raises inside: logged
        protocol.datagram_received(b"y", ("127.0.0.1", 848))
        await asyncio.sleep(udp.TIMER_ERROR_BACKOFF + 0.3)
        return core, protocol

    core, protocol = asyncio.run(scenario())
    assert core.received == 2
    assert len(core.timer_calls) == 2  # failed once, tried again once, then done
    assert core.timer_calls[1] - core.timer_calls[0] >= udp.TIMER_ERROR_BACKOFF - 0.01
    assert "bug in a timer" in caplog.text and "bug while receiving" in caplog.text
    assert protocol.endpoint is core
