"""``--group-clock-skew``: the fault injection the data-plane system test uses."""

from __future__ import annotations

from groupvpn.dataplane.shell import skewed


def test_a_skew_shifts_the_group_time_and_no_skew_changes_nothing():
    def group_time(now: float) -> float | None:
        return None if now < 0 else now + 5.0

    assert skewed(group_time, 0.0) is group_time
    later = skewed(group_time, 200.0)
    assert later(10.0) == 215.0
    assert later(-1.0) is None  # no group time yet stays none
    assert skewed(group_time, -30.0)(10.0) == -15.0
