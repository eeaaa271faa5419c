"""The bounded pool in which the scoring script's code runs.

``init()`` and ``run()`` are synchronous user code: they run on a pool of ``size`` threads, never
on the event loop, so probes answer while a model computes. At most ``size`` user functions run at
once (Azure's server runs one request per worker at a time, and its docs set ``WORKER_COUNT`` to
``max_concurrent_requests_per_instance``); further calls wait in the pool's queue, so a busy thread
picks up the next call without a round trip through the event loop (the pool,
:class:`~propylon.inference.threads.UserThreadPool`, also chooses which sleeping thread a call
wakes: that decides the latency at low load). A call that overruns its time
limit is answered with :class:`ScoringTimeout` but keeps its thread until it returns (Python cannot
stop a thread), so a stuck ``run()`` never lets more than ``size`` calls pile up. Example::

    runner = UserCodeRunner(size=2)
    result = await runner.call(script.run, time_limit=5.0, raw_data="[1, 2]")
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from propylon.inference.errors import ScoringTimeout
from propylon.inference.threads import UserThreadPool

__all__ = ["UserCodeRunner", "UserStream"]

logger = logging.getLogger(__name__)

_END = object()
# While a call waits in the queue its time limit has not started; look again this often.
_QUEUED_RECHECK_SECONDS = 0.25


class UserCodeRunner:
    """A fixed number of threads for user code."""

    def __init__(self, size: int = 1) -> None:
        if size < 1:
            raise ValueError(f"the pool needs at least one thread, not {size}")
        self.size = size
        self._pool = UserThreadPool(size, name="user-code")
        self._lock = threading.Lock()
        self._running = 0

    @property
    def running(self) -> int:
        """How many user functions are executing in the pool right now."""
        with self._lock:
            return self._running

    async def call(
        self,
        function: Callable[..., Any],
        /,
        *args: Any,
        time_limit: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``function``: a coroutine function on the loop, anything else in a pool thread.

        Raises :class:`ScoringTimeout` once it has *run* (not queued) longer than ``time_limit``
        seconds; the call's own exception otherwise.
        """
        if inspect.iscoroutinefunction(function):
            try:
                return await asyncio.wait_for(function(*args, **kwargs), time_limit)
            except TimeoutError:
                raise _timeout(time_limit) from None
        call = _Call(self, function, args, kwargs)
        # The request's context (its request id for the log) follows the call into the thread.
        future = self._pool.submit(contextvars.copy_context().run, call.run)
        waiter = asyncio.wrap_future(future)
        if time_limit is None:
            return await waiter
        # One timer per call, cheaper than asyncio.wait_for on this per-request path.
        loop = asyncio.get_running_loop()
        call.timer = loop.call_later(time_limit, call.check_time, loop, waiter, time_limit)
        try:
            return await waiter
        except asyncio.CancelledError:
            if call.expired:
                raise _timeout(time_limit) from None
            raise
        finally:
            call.timer.cancel()

    def stream(self, items: Iterable[Any] | AsyncIterable[Any]) -> UserStream:
        """An async iterator over a user iterator (a generator returned by user code)."""
        return UserStream(self, items)

    def shutdown(self) -> None:
        """Stop taking work; threads still inside user code are left to finish (or be abandoned)."""
        self._pool.shutdown(cancel_queued=True)


class _Call:
    __slots__ = ("args", "expired", "function", "kwargs", "runner", "started", "timer")

    def __init__(
        self,
        runner: UserCodeRunner,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.runner = runner
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.started: float | None = None
        self.expired = False
        self.timer: asyncio.TimerHandle | None = None

    def check_time(
        self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any], time_limit: float
    ) -> None:
        """On the loop: end the wait if the call has run for ``time_limit``, else look again."""
        if waiter.done():
            return
        if self.started is None:
            # Still queued behind other calls: the limit counts from the start of the call.
            delay = min(time_limit, _QUEUED_RECHECK_SECONDS)
        else:
            delay = time_limit - (time.monotonic() - self.started)
            if delay <= 0:
                self.expired = True
                waiter.cancel()
                return
        self.timer = loop.call_later(delay, self.check_time, loop, waiter, time_limit)

    def run(self) -> Any:
        runner = self.runner
        with runner._lock:
            runner._running += 1
        self.started = time.monotonic()
        try:
            return self.function(*self.args, **self.kwargs)
        except Exception:
            raise
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt from user code must not unwind the event loop.
            raise RuntimeError(f"{type(exc).__name__}({exc}) raised by {self.function!r}") from exc
        finally:
            with runner._lock:
                runner._running -= 1


class UserStream:
    """The items of a user iterator, pulled one at a time.

    A synchronous iterator is advanced in the pool, so a model that computes each item never
    blocks the event loop; an async iterator is awaited directly. :meth:`aclose` closes the user's
    generator (running its ``finally``); it is safe to call twice and before iteration started.
    """

    def __init__(self, runner: UserCodeRunner, items: Iterable[Any] | AsyncIterable[Any]) -> None:
        self._runner = runner
        self._closed = False
        self._async: AsyncIterator[Any] | None = None
        self._sync: Iterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._async = aiter(items)
        else:
            self._sync = iter(items)

    def __aiter__(self) -> UserStream:
        return self

    async def __anext__(self) -> Any:
        if self._closed:
            raise StopAsyncIteration
        if self._async is not None:
            return await anext(self._async)
        item = await self._runner.call(next, self._sync, _END)
        if item is _END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._async is not None:
                aclose = getattr(self._async, "aclose", None)
                if aclose is not None:
                    await aclose()
            else:
                close = getattr(self._sync, "close", None)
                if close is not None:
                    await self._runner.call(close)
        except Exception:
            # A generator that fails while closing has nothing left to tell the client.
            logger.warning("closing the script's generator raised", exc_info=True)


def _timeout(time_limit: float | None) -> ScoringTimeout:
    milliseconds = round((time_limit or 0) * 1000)
    return ScoringTimeout(f"Scoring timeout after {milliseconds} ms")
