"""Mirror traffic: a copy of a live request goes to the mirror deployment and its answer is dropped.

Azure's rules (reference §3.3): the client always gets the live deployment's answer, mirrored
answers are discarded, and a request that targets a deployment by header is never mirrored
(:func:`propylon.gateway.routing.choose_deployment` decides). Here, in addition, a copy can never
delay or fail the live request:

* it is handed over only after the live answer has been sent, into a bounded queue — when the
  queue is full the copy is dropped (and counted), never awaited;
* a few worker tasks forward copies, each taking a free slot on the mirror deployment or
  dropping the copy, so mirrored traffic never queues ahead of requests sent to that deployment;
* every outcome — answered, model error, timeout, unreachable — only moves a counter,
  ``propylon_gateway_mirror_requests_total{endpoint, deployment, outcome}``.

Example::

    mirror = Mirror(transport, limiter, registry=ctx.metrics)
    mirror.submit("my-endpoint", green, forwarded_request)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CollectorRegistry, Counter

from propylon.errors import PropylonError
from propylon.gateway.errors import ConnectFailed
from propylon.gateway.limits import Limiter
from propylon.gateway.table import Deployment
from propylon.gateway.upstream import Transport, UpstreamRequest

__all__ = ["Mirror"]

log = logging.getLogger("propylon.gateway.mirror")

_Job = tuple[str, Deployment, UpstreamRequest]


class Mirror:
    def __init__(
        self,
        transport: Transport,
        limiter: Limiter,
        *,
        registry: CollectorRegistry | None = None,
        max_pending: int = 256,
        workers: int = 8,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._queue: asyncio.Queue[_Job] | None = None
        self._max_pending = max_pending
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self.outcomes = Counter(
            "propylon_gateway_mirror_requests",
            "Mirrored copies of scoring requests, by outcome (their answers are discarded).",
            ["endpoint", "deployment", "outcome"],
            registry=registry,
        )

    def submit(self, endpoint: str, deployment: Deployment, request: UpstreamRequest) -> None:
        """Queue a copy for ``deployment``; drops it at once if the queue is full."""
        if self._closed:
            return
        if self._queue is None:
            self._start()
        assert self._queue is not None
        try:
            self._queue.put_nowait((endpoint, deployment, request))
        except asyncio.QueueFull:
            self.outcomes.labels(endpoint, deployment.name, "dropped_queue_full").inc()

    async def idle(self) -> None:
        """Wait until every queued copy has been forwarded (for tests and shutdown)."""
        if self._queue is not None:
            await self._queue.join()

    async def aclose(self) -> None:
        self._closed = True
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers.clear()

    def _start(self) -> None:
        self._queue = asyncio.Queue(self._max_pending)
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"mirror-{n}") for n in range(self._worker_count)
        ]

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            endpoint, deployment, request = await self._queue.get()
            try:
                outcome = await self._forward(deployment, request)
            except Exception:
                log.exception("mirror copy failed")
                outcome = "error"
            finally:
                self._queue.task_done()
            self.outcomes.labels(endpoint, deployment.name, outcome).inc()

    async def _forward(self, deployment: Deployment, request: UpstreamRequest) -> str:
        instance = self._limiter.try_acquire(deployment)
        if instance is None:
            return "dropped_busy" if deployment.instances else "dropped_no_instance"
        try:
            answer = await self._transport.send(
                instance, request, deployment.limits.request_timeout_s
            )
            if not answer.complete:
                async for _ in answer.chunks():
                    pass
            return str(answer.status)
        except ConnectFailed as error:  # dead: live requests skip it too until the table drops it
            self._limiter.set_aside(instance)
            return error.code
        except PropylonError as error:
            return error.code
        finally:
            self._limiter.release(deployment, instance)
