"""wbcap.io.background: Prefetch, BackgroundCalls and OrderedMap keep order, hand exceptions
over, stop their threads when the block is left, and run in the caller's context."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from wbcap.io.background import BackgroundCalls, OrderedMap, Prefetch

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_prefetch_yields_every_item_in_order_from_another_thread():
    seen_in: list[str] = []

    def items():
        for i in range(20):
            seen_in.append(threading.current_thread().name)
            yield i

    with Prefetch(items(), maxsize=2, name="test-prefetch-order") as it:
        assert list(it) == list(range(20))
    assert set(seen_in) == {"test-prefetch-order"}
    assert not _threads("test-prefetch-order")


def test_prefetch_stays_at_most_maxsize_ahead():
    made: list[int] = []

    def items():
        for i in range(10):
            made.append(i)
            yield i

    with Prefetch(items(), maxsize=2) as it:
        first = next(iter(it))
        deadline = time.monotonic() + 10
        while len(made) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # time enough to go further, were it allowed to
        # the one handed over, two in the queue and one computed, waiting to be put
        assert first == 0 and len(made) == 4


def test_prefetch_is_iterated_inside_its_block_only():
    with pytest.raises(RuntimeError, match="with"):
        list(Prefetch([1, 2], maxsize=1))
    with Prefetch([1, 2], maxsize=1) as it:
        assert list(it) == [1, 2]
        assert list(it) == []  # ended: a second loop ends at once


def test_prefetch_raises_the_iterators_exception_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with Prefetch(items(), maxsize=1) as it, pytest.raises(OSError, match="disk gone"):
        for x in it:
            got.append(x)
    assert got == [1, 2]


def test_prefetch_leaving_early_stops_the_thread_and_closes_the_generator():
    closed = threading.Event()

    def items():
        try:
            yield from range(10**9)
        finally:
            closed.set()

    with Prefetch(items(), maxsize=2, name="test-prefetch-stop") as it:
        for x in it:
            if x == 3:
                break
    assert closed.is_set()
    assert not _threads("test-prefetch-stop")


def test_prefetch_runs_in_the_callers_context():
    token = _VAR.set("caller")
    try:
        with Prefetch((_VAR.get() for _ in range(2)), maxsize=1) as it:
            assert list(it) == ["caller", "caller"]
    finally:
        _VAR.reset(token)


def test_maxsize_below_one_is_refused():
    with pytest.raises(ValueError, match="maxsize"):
        Prefetch([], maxsize=0)
    with pytest.raises(ValueError, match="maxsize"):
        BackgroundCalls(print, maxsize=0)


def test_background_calls_run_in_order_in_one_thread_and_all_finish_at_exit():
    done: list[tuple[int, str, str]] = []
    token = _VAR.set("caller")
    try:
        def work(i: int) -> None:
            time.sleep(0.002)
            done.append((i, threading.current_thread().name, _VAR.get()))

        with BackgroundCalls(work, maxsize=2, name="test-calls") as calls:
            for i in range(15):
                calls.put(i)
    finally:
        _VAR.reset(token)
    assert [d[0] for d in done] == list(range(15))
    assert {d[1:] for d in done} == {("test-calls", "caller")}
    assert not _threads("test-calls")


def test_background_calls_raise_a_calls_exception_at_the_next_put_and_run_no_later_call():
    ran: list[int] = []

    def work(i: int) -> None:
        if i == 2:
            raise ValueError("cannot encode frame 2")
        ran.append(i)

    with pytest.raises(ValueError, match="frame 2"):  # raised again when the block ends
        with BackgroundCalls(work, maxsize=1) as calls:
            for i in range(3):
                calls.put(i)
            calls._thread.join(10)  # the thread stops at the failure
            with pytest.raises(ValueError, match="frame 2"):
                calls.put(3)
    assert ran == [0, 1]


def test_background_calls_raise_a_failure_of_the_last_call_when_the_block_ends():
    def work(i: int) -> None:
        raise RuntimeError(f"bad {i}")

    with pytest.raises(RuntimeError, match="bad 0"), BackgroundCalls(work, maxsize=4) as calls:
        calls.put(0)


def test_background_calls_leaving_by_an_exception_drops_the_calls_not_started():
    started = threading.Event()
    ran: list[int] = []
    box: list[BackgroundCalls] = []

    def work(i: int) -> None:
        started.set()
        deadline = time.monotonic() + 10
        while not box[0]._stop.is_set() and time.monotonic() < deadline:  # until the caller has failed
            time.sleep(0.005)
        ran.append(i)

    with pytest.raises(KeyError), BackgroundCalls(work, maxsize=3, name="test-calls-drop") as calls:
        box.append(calls)
        calls.put(0)
        calls.put(1)
        calls.put(2)
        started.wait(10)
        raise KeyError("the caller failed")
    assert ran == [0]  # the running call finished, the waiting ones were dropped
    assert not _threads("test-calls-drop")


def test_ordered_map_yields_in_order_what_its_threads_computed_out_of_order():
    ran_in: set[str] = set()

    def slow_square(i: int) -> int:
        time.sleep(0.003 * ((i * 5) % 4))  # later items often finish first
        ran_in.add(threading.current_thread().name)
        return i * i

    with OrderedMap(slow_square, range(30), workers=3, ahead=6, name="test-map") as it:
        assert list(it) == [(i, i * i) for i in range(30)]
    assert ran_in and all(name.startswith("test-map") for name in ran_in) and len(ran_in) > 1
    assert not _threads("test-map")


def test_ordered_map_takes_at_most_ahead_items_before_they_are_used():
    taken: list[int] = []

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    with OrderedMap(lambda i: i, items(), workers=2, ahead=3) as it:
        first = next(iter(it))
        time.sleep(0.05)  # time enough to take more, were it allowed to
        assert first == (0, 0) and taken == [0, 1, 2]


def test_ordered_map_raises_at_the_failed_items_turn_and_after_a_failed_take():
    def fn(i: int) -> int:
        if i == 4:
            raise KeyError("item 4")
        return i

    got = []
    with OrderedMap(fn, range(10), workers=2, ahead=4) as it, pytest.raises(KeyError, match="item 4"):
        for i, _ in it:
            got.append(i)
    assert got == [0, 1, 2, 3]

    def items():
        yield from range(3)
        raise OSError("disk gone")

    got = []
    with OrderedMap(lambda i: i, items(), workers=2, ahead=8) as it, pytest.raises(OSError, match="disk gone"):
        for i, _ in it:
            got.append(i)
    assert got == [0, 1, 2]


def test_ordered_map_leaving_early_starts_no_more_calls_and_waits_for_the_running_ones():
    started: list[int] = []
    finished: list[int] = []

    def fn(i: int) -> int:
        started.append(i)
        time.sleep(0.02)
        finished.append(i)
        return i

    with OrderedMap(fn, range(1000), workers=2, ahead=10, name="test-map-stop") as it:
        for i, _ in it:
            if i == 1:
                break
    assert sorted(started) == sorted(finished) and len(started) < 20  # none running, the rest never began
    assert not _threads("test-map-stop")


def test_ordered_map_runs_in_the_callers_context_and_checks_its_arguments():
    token = _VAR.set("caller")
    try:
        with OrderedMap(lambda _: _VAR.get(), range(3), workers=2, ahead=2) as it:
            assert [v for _, v in it] == ["caller"] * 3
    finally:
        _VAR.reset(token)
    with pytest.raises(RuntimeError, match="with"):
        list(OrderedMap(abs, [1], workers=1, ahead=1))
    for workers, ahead in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="workers and ahead"):
            OrderedMap(abs, [1], workers=workers, ahead=ahead)


def test_ordered_map_lets_an_interruption_go_on_at_once():
    """A Ctrl-C (or a stop signal's exception) met while taking an item waited for every item
    taken before it, the network run on each (a review): it goes on at once."""
    def items():
        yield from range(3)
        raise KeyboardInterrupt

    got = []
    with OrderedMap(lambda i: i, items(), workers=2, ahead=8) as it, pytest.raises(KeyboardInterrupt):
        for i, _ in it:
            got.append(i)
    assert got == []
