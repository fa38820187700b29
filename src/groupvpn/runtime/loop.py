"""The daemons' event loop: uvloop when it is installed, stock asyncio otherwise.

Why uvloop: a key server spends much of each registration in the event loop's
datagram path (ten datagrams per Phase 1 + GROUPKEY-PULL), and uvloop's is
several times cheaper than stock asyncio's (python-performance.md §4); in
benchmarks/registration.py it raised registrations per server CPU-second by
about a quarter.  It is started with ``uvloop.run`` for this one loop, never
installed as the global event-loop policy: pyroute2 (the data plane) breaks
under a global uvloop policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

try:
    import uvloop
except ImportError:  # pragma: no cover - exercised only where uvloop has no wheel
    uvloop = None  # type: ignore[assignment]

T = TypeVar("T")

EVENT_LOOP = "uvloop" if uvloop is not None else "asyncio"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion on a new event loop and close it."""
    if uvloop is not None:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)
