"""Admission: how many requests an instance takes, how long one may queue, how big a body may be.

Azure's rules (reference §3.4, §3.6), per deployment:

* an instance runs at most ``max_concurrent_requests_per_instance`` requests at once;
* a request that finds every instance busy waits up to ``max_queue_wait_ms`` for one; after that,
  or when as many requests already wait as the deployment can run (so that at most
  ``2 × max_concurrent × instances`` are admitted at once), it is refused with **429**;
* a deployment without a ready instance answers **503**;
* an instance that refused a connection is set aside for :data:`UNREACHABLE_SECONDS` (no new
  request and no freed slot goes to it), so that only the first requests after it died pay the
  failed connect, until the change feed drops it from the routing table; a deployment whose
  every instance is set aside answers **503**;
* a request body over the size limit (1.5 MB by default, Azure's older documented cap) is
  refused with **413** before the model sees it; ``request_timeout_ms`` (**408**) is enforced by
  :mod:`propylon.gateway.upstream`, which owns the connection that must then be dropped.

A freed slot is handed straight to the oldest waiter, so queued requests are served in order.
Counters are keyed by instance, so they survive routing-table swaps.

Example::

    instance = await limiter.acquire(deployment)   # 429 / 503
    try:
        ...
    finally:
        limiter.release(deployment, instance)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.types import Receive

from propylon.errors import PayloadTooLarge, ServiceUnavailable, TooManyRequests
from propylon.gateway.routing import least_outstanding
from propylon.gateway.table import Deployment, Instance

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "UNREACHABLE_SECONDS",
    "ClientDisconnected",
    "Limiter",
    "read_body",
]

DEFAULT_MAX_REQUEST_BYTES = 1_572_864  # 1.5 MiB
# How long an instance that refused a connection gets no request: about the time the change feed
# takes to drop a dead instance (DESIGN: within a second); one that refused only briefly (being
# restarted in place) is tried again soon after.
UNREACHABLE_SECONDS = 1.0


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


class Limiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.outstanding: dict[str, int] = {}
        # Instances set aside after a refused connection: key -> clock time they are tried again.
        self.aside: dict[str, float] = {}
        self._waiting: dict[str, deque[asyncio.Future[Instance]]] = {}
        self._clock = clock

    def try_acquire(self, deployment: Deployment) -> Instance | None:
        """A slot on the least-loaded instance now, or None (no waiting)."""
        aside = self.aside
        if aside:
            self._end_expired_asides()
        instance = least_outstanding(deployment.instances, self.outstanding, aside)
        if instance is not None:
            self.outstanding[instance.key] = self.outstanding.get(instance.key, 0) + 1
        return instance

    async def acquire(self, deployment: Deployment) -> Instance:
        instance = self.try_acquire(deployment)
        if instance is not None:
            return instance
        if not deployment.instances:
            raise ServiceUnavailable(
                f"The deployment '{deployment.name}' has no ready instance.",
                code="NoHealthyInstance",
            )
        if all(candidate.key in self.aside for candidate in deployment.instances):
            raise ServiceUnavailable(
                f"No instance of the deployment '{deployment.name}' accepts connections.",
                code="NoHealthyInstance",
            )
        queue = self._waiting.setdefault(deployment.id, deque())
        capacity = deployment.limits.max_concurrent_requests_per_instance * len(
            deployment.instances
        )
        if sum(1 for waiter in queue if not waiter.done()) >= capacity:
            raise _too_many(deployment, "the queue is full")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Instance] = loop.create_future()
        queue.append(waiter)
        timer = loop.call_later(deployment.limits.max_queue_wait_s, _expire, waiter, deployment)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # The slot was handed over just as the request was cancelled: pass it on.
                self.release(deployment, waiter.result())
            raise
        finally:
            timer.cancel()

    def release(self, deployment: Deployment, instance: Instance) -> None:
        queue = self._waiting.get(deployment.id)
        while queue and instance.key not in self.aside:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(instance)
                return
        self._free(instance)

    def set_aside(self, instance: Instance) -> None:
        """Send no request to ``instance``, which refused a connection, for
        :data:`UNREACHABLE_SECONDS`; the slots held on it are released as usual but go to no
        waiter meanwhile."""
        self.aside[instance.key] = self._clock() + UNREACHABLE_SECONDS

    def _free(self, instance: Instance) -> None:
        left = self.outstanding.get(instance.key, 1) - 1
        if left > 0:
            self.outstanding[instance.key] = left
        else:
            self.outstanding.pop(instance.key, None)

    def _end_expired_asides(self) -> None:
        now = self._clock()
        for key in [key for key, until in self.aside.items() if until <= now]:
            del self.aside[key]


def _expire(waiter: asyncio.Future[Instance], deployment: Deployment) -> None:
    if not waiter.done():
        waiter.set_exception(_too_many(deployment, "no instance was free in time"))


def _too_many(deployment: Deployment, why: str) -> TooManyRequests:
    wait_ms = round(deployment.limits.max_queue_wait_s * 1000)
    return TooManyRequests(
        f"Too many pending requests for deployment '{deployment.name}': {why} "
        f"(max_concurrent_requests_per_instance="
        f"{deployment.limits.max_concurrent_requests_per_instance}, "
        f"max_queue_wait_ms={wait_ms}).",
        code="TooManyPendingRequests",
    )


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the gateway's limit of {limit} bytes.",
        code="RequestEntityTooLarge",
    )


async def read_body(receive: Receive, declared: int | None, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed ``limit``."""
    if declared is not None and declared > limit:
        raise too_large(limit)
    message: Any = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
