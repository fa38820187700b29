"""`clear security group-vpn member ipsec statistics`: the data plane's counters to zero."""

from __future__ import annotations

from ipaddress import IPv4Address

from groupvpn.dataplane.drops import DropReason, Refusal
from groupvpn.dataplane.engine import DataPlane
from groupvpn.dataplane.shell import ShellCounters


def test_reset_zeroes_every_count_and_the_engine_keeps_counting_into_the_same_objects():
    engine = DataPlane(IPv4Address("192.0.2.1"))
    counters = engine.counters
    engine.inbound(b"\x45\x00", 1.0)  # far too short: dropped
    counters.packets_out, counters.bytes_in, counters.fragments = 3, 300, 1
    counters.drops.refuse(Refusal.NO_KEY)
    assert counters.drops.dropped[DropReason.TRUNCATED] == 1
    dropped, refused = counters.drops.dropped, counters.drops.refused
    counters.reset()
    view = counters.as_dict()
    assert all(value == 0 for key, value in view.items() if key not in ("dropped", "refused"))
    assert set(view["dropped"].values()) == {0} and set(view["refused"].values()) == {0}  # type: ignore[attr-defined]
    # In place: the SA database holds the drop counters and keeps counting into them.
    assert counters.drops.dropped is dropped and counters.drops.refused is refused
    assert engine.counters is counters
    engine.inbound(b"\x45\x00", 2.0)
    assert counters.drops.dropped[DropReason.TRUNCATED] == 1


def test_shell_counters_reset():
    counters = ShellCounters(tun_packets_read=4, esp_packets_read=2, send_errors=1)
    counters.reset()
    assert set(counters.as_dict().values()) == {0}
