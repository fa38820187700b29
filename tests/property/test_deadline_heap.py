"""The IKE endpoint's deadline heap behaves like the obvious O(n) scan it replaced."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from groupvpn.ike.timers import DeadlineHeap

ITEMS = st.sampled_from("abcdefgh")
TIMES = st.integers(min_value=0, max_value=50).map(float)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), ITEMS, st.one_of(st.none(), TIMES)),
        st.tuples(st.just("cancel"), ITEMS, st.none()),
        st.tuples(st.just("pop_due"), ITEMS, TIMES),
    ),
    max_size=60,
)


@given(OPERATIONS)
def test_heap_matches_a_scan_of_current_deadlines(
    operations: list[tuple[str, str, float | None]],
) -> None:
    heap: DeadlineHeap[str] = DeadlineHeap()
    model: dict[str, float] = {}
    for operation, item, value in operations:
        if operation == "schedule":
            heap.schedule(item, value)
            if value is None:
                model.pop(item, None)
            else:
                model[item] = value
        elif operation == "cancel":
            heap.cancel(item)
            model.pop(item, None)
        else:
            assert value is not None
            due = heap.pop_due(value)
            expected = sorted((t, i) for i, t in model.items() if t <= value)
            # Each due item exactly once, in deadline order, and then unscheduled.
            assert sorted(due) == sorted(i for _, i in expected)
            assert [model[i] for i in due] == sorted(model[i] for i in due)
            for i in due:
                del model[i]
        assert heap.next_deadline() == min(model.values(), default=None)
        assert len(heap) == len(model)


def test_rescheduling_later_hides_the_old_deadline() -> None:
    heap: DeadlineHeap[str] = DeadlineHeap()
    heap.schedule("sa", 2.0)  # retransmission
    heap.schedule("sa", 3600.0)  # answered: now only its lifetime
    assert heap.pop_due(10.0) == []
    assert heap.next_deadline() == 3600.0
    assert heap.pop_due(3600.0) == ["sa"]
    assert heap.next_deadline() is None
