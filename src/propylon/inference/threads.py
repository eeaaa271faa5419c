"""The bounded thread pool that runs user code, tuned for the wake-up of the next call.

Like :class:`concurrent.futures.ThreadPoolExecutor`, it keeps calls in one queue, runs at most
``size`` at once, and a thread that finishes a call takes the next queued one without sleeping.
It differs in whom a new call wakes, which decides the latency of a scoring request at low load:

* Nobody, when a thread is awake between two calls: that thread takes it. (The standard pool
  wakes a sleeping thread for every call.)
* Otherwise a new thread while the pool has fewer than ``size``, then the thread that has been
  idle *longest*: each idle thread sleeps on its own inbox, in the order they fell idle, so the
  calls of a lone client rotate over all the threads.

Measured through the gateway at one connection after a busy spell (``bench/RESULTS.md``, "Where
the latency goes", ``bench/gateway/pool_compare.py``): the standard pool adds about 125 µs to
the echo model's request and this order about 25 µs; on the scikit-learn sample about 165 µs
against 55 µs. Waking the thread idle *shortest* instead (the same thread every time, or two
alternating) lands in between, and waking a thread for every call cost a sixth of the
throughput at 16 connections. We read it as the scheduler's doing: a thread that has slept for
a while is run at once on a free core, one that slept briefly waits behind the running process.

A thread that takes a call while more are queued and nobody else is between calls wakes the next
taker itself, so calls never wait behind a running one while the pool has room.

The pool takes no lock on the call path. The queue of calls is a deque, the idle threads a list
of their inboxes, the running threads a set, and every step on them is one atomic operation; a
thread about to sleep looks at the queue once more after it declared itself idle, so a call
queued in between is never left behind.

Example::

    pool = UserThreadPool(4, name="user-code")
    future = pool.submit(len, [1, 2, 3])   # a concurrent.futures.Future
    assert future.result() == 3
    pool.shutdown()
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["UserThreadPool"]

_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
# A sleeping thread's inbox: a None in it wakes the thread to look at the queue and the flag.
_Inbox = queue.SimpleQueue[None]


class UserThreadPool:
    """At most ``size`` threads, started as calls need them; see the module docstring."""

    def __init__(self, size: int, *, name: str = "pool") -> None:
        if size < 1:
            raise ValueError(f"the pool needs at least one thread, not {size}")
        self.size = size
        self.threads: list[threading.Thread] = []
        self._name = name
        self._queued: collections.deque[_Job] = collections.deque()
        self._idle: list[_Inbox] = []  # longest idle first
        self._running: set[int] = set()  # idents of the threads inside a call
        self._starting = threading.Lock()
        self._closed = False

    def submit(self, function: Callable[..., Any], /, *args: Any) -> Future[Any]:
        """Run ``function(*args)`` on a pool thread; its future."""
        if self._closed:
            raise RuntimeError("cannot submit a call to a pool that was shut down")
        future: Future[Any] = Future()
        self._queued.append((future, function, args))
        self._ensure_taker()
        return future

    def shutdown(self, *, cancel_queued: bool = True) -> None:
        """Take no more calls; cancel the queued ones (``cancel_queued``) and let idle threads
        end. Calls already running finish on their threads; this does not wait for them."""
        self._closed = True
        while cancel_queued and self._queued:
            try:
                future, _, _ = self._queued.popleft()
            except IndexError:
                break
            future.cancel()
        while self._idle:
            try:
                self._idle.pop().put(None)
            except IndexError:
                break

    def _ensure_taker(self) -> None:
        """Make sure some thread will take the queue's next call: one between calls will; else
        start a thread if the pool may, else wake the one idle longest (none idle: every thread
        is running a call, and the first to finish takes it)."""
        if not self._queued:
            return
        if len(self.threads) - len(self._idle) - len(self._running) > 0:
            return
        with self._starting:
            if len(self.threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self.threads) + 1}", daemon=True
                )
                self.threads.append(thread)
            else:
                thread = None
        if thread is not None:
            thread.start()
            return
        with contextlib.suppress(IndexError):  # taken since: all of them are running calls
            self._idle.pop(0).put(None)

    def _work(self) -> None:
        inbox: _Inbox = queue.SimpleQueue()
        me = threading.get_ident()
        idle, queued, running = self._idle, self._queued, self._running
        while not (self._closed and not queued):
            try:
                job = queued.popleft()
            except IndexError:
                idle.append(inbox)
                if queued or self._closed:
                    try:
                        idle.remove(inbox)
                    except ValueError:
                        pass  # someone took this thread off the list: its inbox has news
                    else:
                        continue
                inbox.get()
                continue
            running.add(me)
            # A call queued while this thread still counted as between calls is not its own.
            self._ensure_taker()
            try:
                _run(job)
            finally:
                running.discard(me)
            del job


def _run(job: _Job) -> None:
    future, function, args = job
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = function(*args)
    except BaseException as exc:  # the caller's to see, as with ThreadPoolExecutor
        future.set_exception(exc)
    else:
        future.set_result(result)
