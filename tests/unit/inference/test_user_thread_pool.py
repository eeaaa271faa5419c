"""The user-code pool: a call wakes the thread idle longest; at most ``size`` threads run."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from propylon.inference.threads import UserThreadPool
from propylon.testing import wait_until


def _thread_name() -> str:
    return threading.current_thread().name


def _hold(gate: threading.Event) -> str:
    gate.wait(10)
    return threading.current_thread().name


def test_a_call_wakes_the_thread_idle_longest() -> None:
    pool = UserThreadPool(3, name="t")
    gates = [threading.Event() for _ in range(3)]
    held = [pool.submit(_hold, gate) for gate in gates]
    wait_until(lambda: len(pool.threads) == 3, timeout=10)
    finished = []
    for gate, future in zip(reversed(gates), reversed(held), strict=True):
        gate.set()  # the threads fall idle one after another, in this order
        finished.append(future.result(10))
        wait_until(lambda: len(pool._idle) == len(finished), timeout=10)
    # Each lone call goes to the thread idle longest, which then falls idle last: a rotation.
    names = []
    for _ in range(6):
        names.append(pool.submit(_thread_name).result(10))
        wait_until(lambda: len(pool._idle) == 3, timeout=10)  # back to sleep before the next
    assert names == finished * 2
    pool.shutdown()


def test_calls_queued_behind_running_ones_do_not_wait_while_the_pool_has_room() -> None:
    pool = UserThreadPool(4, name="t")
    warm = threading.Event()
    started = [pool.submit(_hold, warm) for _ in range(4)]
    warm.set()
    for future in started:
        future.result(10)
    wait_until(lambda: len(pool._idle) == 4, timeout=10)
    gate = threading.Event()
    # Four calls queued faster than sleeping threads wake: each woken thread that finds more
    # calls queued and nobody else awake wakes the next.
    calls = [pool.submit(_hold, gate) for _ in range(4)]
    wait_until(lambda: len(pool._running) == 4, timeout=10)  # all four run at once
    queued = pool.submit(_thread_name)
    assert not queued.done()  # the pool is full: it waits for the first to finish
    gate.set()
    names = {future.result(10) for future in calls}
    assert len(names) == 4
    assert queued.result(10) in names
    pool.shutdown()


def test_a_lone_callers_calls_rotate_over_all_the_threads() -> None:
    pool = UserThreadPool(3, name="t")
    names = []
    for _ in range(9):
        names.append(pool.submit(_thread_name).result(10))
        wait_until(lambda: len(pool._idle) == len(pool.threads), timeout=10)
    assert len(pool.threads) == 3
    assert names == ["t_1", "t_2", "t_3"] * 3
    pool.shutdown()


def test_a_pool_of_one_keeps_one_thread() -> None:
    pool = UserThreadPool(1, name="t")
    assert {pool.submit(_thread_name).result(10) for _ in range(10)} == {"t_1"}
    assert len(pool.threads) == 1
    pool.shutdown()


def test_no_more_than_size_threads_and_queued_calls_all_run() -> None:
    pool = UserThreadPool(2, name="t")
    gate = threading.Event()
    running = [pool.submit(_hold, gate) for _ in range(2)]
    queued = [pool.submit(_thread_name) for _ in range(20)]
    assert not any(future.done() for future in queued)
    assert len(pool.threads) == 2
    gate.set()
    names = {future.result(10) for future in [*running, *queued]}
    assert names <= {"t_1", "t_2"}
    pool.shutdown()


def test_a_calls_exception_reaches_its_future_and_the_thread_lives_on() -> None:
    pool = UserThreadPool(1, name="t")
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(10)
    assert pool.submit(divmod, 7, 2).result(10) == (3, 1)
    pool.shutdown()


def test_shutdown_cancels_queued_calls_lets_running_ones_finish_and_refuses_new_ones() -> None:
    pool = UserThreadPool(1, name="t")
    gate = threading.Event()
    running = pool.submit(_hold, gate)
    wait_until(running.running, timeout=10)
    queued = pool.submit(_thread_name)
    pool.shutdown()
    with pytest.raises(CancelledError):
        queued.result(10)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(_thread_name)
    gate.set()
    assert running.result(10) == "t_1"
    wait_until(lambda: not any(t.is_alive() for t in pool.threads), timeout=10)


def test_idle_threads_end_on_shutdown() -> None:
    pool = UserThreadPool(4, name="ending")
    gate = threading.Event()
    calls = [pool.submit(_hold, gate) for _ in range(4)]
    gate.set()
    for future in calls:
        future.result(10)
    wait_until(lambda: len(pool._idle) == 4, timeout=10)
    pool.shutdown()
    wait_until(lambda: not any(t.is_alive() for t in pool.threads), timeout=10)
    assert not [t for t in threading.enumerate() if t.name.startswith("ending_") and t.is_alive()]
