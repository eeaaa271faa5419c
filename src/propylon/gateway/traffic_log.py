"""The traffic log and the gateway's metrics: one record per scoring request, written off-path.

Each record has the columns of Azure's ``AmlOnlineEndpointTrafficLog`` table (reference §3.7,
§5.7) under the same names — ``Method``, ``Path``, ``EndpointName``, ``DeploymentName``,
``ResponseCode``, ``ResponseCodeReason``, ``ModelStatusCode``, ``ModelStatusReason``,
``RequestPayloadSize``, ``ResponsePayloadSize``, ``UserAgent``, ``XRequestId``,
``XMSClientRequestId``, ``TotalDurationMs``, ``RequestDurationMs``, ``ResponseDurationMs``,
``RequestThrottlingDelayMs``, ``AuthType`` and ``IdentityData`` (``key`` for keys, the ``oid``
for tokens), plus ``AppId`` and ``TenantId`` of token callers. A record never holds a key or a
token: the pipeline copies only the caller's :class:`~propylon.gateway.auth.Identity` into it,
and the path is logged without its query string.

The request path only appends a :class:`TrafficRecord` to a list. A background task takes the list
every 100 ms and, in a worker thread, appends JSON lines to ``<logs>/traffic/<endpoint>.jsonl``
and updates the Prometheus metrics (:class:`TrafficMetrics`: per endpoint, deployment, status and
auth type). If the writer falls behind by more than ``max_pending`` records, new ones are dropped
and counted rather than slowing requests down.

A file that reaches ``max_bytes`` is rotated (``<endpoint>.jsonl.1`` … ``.<backups>``, the oldest
dropped: :mod:`propylon.logfiles`), so a busy endpoint keeps a bounded window of its traffic —
at ~500 bytes a record, 64 MiB is ~130,000 requests per file. Replicas sharing the data dir
append to the same file and take turns rotating it; a writer whose file was rotated or moved
away reopens the one now at the path.

Example::

    log = TrafficLog(ctx.settings.logs_dir / "traffic", registry=ctx.metrics)
    log.record(TrafficRecord(time=time.time(), method="POST", path="/endpoints/e/score"))
    await log.aclose()
    read_traffic_log(ctx.settings.logs_dir / "traffic", "e", tail=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from json.encoder import encode_basestring_ascii as _string  # the C escaper json.dumps uses
from pathlib import Path
from typing import IO, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from propylon import logfiles

__all__ = ["TrafficLog", "TrafficMetrics", "TrafficRecord", "read_traffic_log"]

log = logging.getLogger("propylon.gateway.traffic")

_SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,254}")
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(slots=True)
class TrafficRecord:
    """One request; filled in by the gateway as the request goes (durations in milliseconds)."""

    time: float
    method: str
    path: str
    endpoint: str = ""
    workspace: str = ""
    deployment: str = ""
    response_code: int = 0
    response_reason: str = ""
    model_status_code: int | None = None
    model_status_reason: bytes = b""
    request_size: int = 0
    response_size: int = 0
    user_agent: str = ""
    x_request_id: str = ""
    x_ms_client_request_id: str = ""
    total_ms: float = 0.0
    request_ms: float = 0.0
    response_ms: float | None = None
    queue_ms: float = 0.0
    auth_type: str = ""
    identity: str = ""
    app_id: str | None = None
    tenant_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The record under Azure's column names."""
        return {
            "TimeGenerated": datetime.fromtimestamp(self.time, UTC).isoformat(
                timespec="microseconds"
            ),
            "Protocol": "HTTP/1.1",
            "Method": self.method,
            "Path": self.path,
            "AzureMLWorkspaceName": self.workspace,
            "EndpointName": self.endpoint,
            "DeploymentName": self.deployment,
            "ResponseCode": self.response_code,
            "ResponseCodeReason": self.response_reason,
            "ModelStatusCode": self.model_status_code,
            "ModelStatusReason": self.model_status_reason.decode("latin-1"),
            "RequestPayloadSize": self.request_size,
            "ResponsePayloadSize": self.response_size,
            "UserAgent": self.user_agent,
            "XRequestId": self.x_request_id,
            "XMSClientRequestId": self.x_ms_client_request_id,
            "TotalDurationMs": round(self.total_ms, 3),
            "RequestDurationMs": round(self.request_ms, 3),
            "ResponseDurationMs": None if self.response_ms is None else round(self.response_ms, 3),
            "RequestThrottlingDelayMs": round(self.queue_ms, 3),
            "ResponseThrottlingDelayMs": 0,
            "AuthType": self.auth_type,
            "IdentityData": self.identity,
            "AppId": self.app_id,
            "TenantId": self.tenant_id,
        }


class TrafficLog:
    """Collects records on the request path; writes them and the metrics in the background."""

    def __init__(
        self,
        directory: Path,
        *,
        registry: CollectorRegistry | None = None,
        interval: float = 0.1,
        max_pending: int = 100_000,
        max_bytes: int = 64 * 2**20,
        backups: int = 4,
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._backups = backups
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[TrafficRecord] = []
        self._files: dict[str, IO[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._recent: deque[TrafficRecord] = deque(maxlen=1000)
        self._lines = _LineFormat()
        self.metrics = TrafficMetrics()
        self.dropped = 0
        if registry is not None:
            registry.register(self.metrics)

    def record(self, record: TrafficRecord) -> None:
        """Queue a record (request path: no I/O, no formatting)."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            self.dropped += 1
            return
        pending.append(record)
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="traffic-log")

    def recent(self) -> list[TrafficRecord]:
        """The last records written (newest last): for tests and diagnostics."""
        return list(self._recent)

    async def flush(self) -> None:
        """Write everything queued so far."""
        batch, self._pending = self._pending, []
        if batch:
            await asyncio.to_thread(self._write, batch)

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception:
                log.exception("traffic log write failed")

    def _write(self, batch: list[TrafficRecord]) -> None:
        self.metrics.add(batch, self.dropped)
        lines: dict[str, list[str]] = {}
        to_line = self._lines.render
        for record in batch:
            entries = lines.get(record.endpoint)
            if entries is None:
                entries = lines[record.endpoint] = []
            entries.append(to_line(record))
        for endpoint, entries in lines.items():
            name = endpoint.lower()
            if not _SAFE_NAME.fullmatch(name):  # unknown endpoints (404) have no log
                continue
            path = self.directory / f"{name}.jsonl"
            handle = self._files.get(name)
            if handle is not None and not _is_open_at(handle, path):
                # Rotated by another replica sharing the data dir, or moved away by an operator.
                handle.close()
                handle = None
            if handle is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                handle = self._files[name] = path.open("a", encoding="utf-8")
            entries.append("")
            handle.write("\n".join(entries))
            handle.flush()
            if self._max_bytes and os.fstat(handle.fileno()).st_size >= self._max_bytes:
                self._rotate(name, path, self._files.pop(name))
        self._recent.extend(batch)

    def _rotate(self, name: str, path: Path, handle: IO[str]) -> None:
        """Start a new file for ``name``; replicas sharing the directory rotate one at a time, and
        one that finds the file already rotated by another leaves it alone."""
        with (self.directory / f".{name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _is_open_at(handle, path):
                logfiles.rotate(path, self._backups)
        handle.close()


class _LineFormat:
    """:meth:`TrafficRecord.as_json` as one JSON line, ten times faster than ``json.dumps``
    (the writer shares the gateway's CPU); equal to it, as a unit test checks.

    The columns that repeat from request to request (what was called, how it ended, who called)
    are rendered once per distinct value and kept: a few thousand at most.
    """

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""
        # One cache per group of columns, each keyed by the group's values.
        self._called: dict[tuple[Any, ...], str] = {}
        self._outcomes: dict[tuple[Any, ...], str] = {}
        self._callers: dict[tuple[Any, ...], str] = {}

    def render(self, r: TrafficRecord) -> str:
        second = int(r.time)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = int((r.time - second) * 1_000_000)
        called = (r.method, r.path, r.workspace, r.endpoint, r.deployment)
        outcome = (r.response_code, r.response_reason, r.model_status_code, r.model_status_reason)
        caller = (r.auth_type, r.identity, r.app_id, r.tenant_id)
        s = _string
        return (
            f'{{"TimeGenerated":"{self._stamp}.{micros:06d}+00:00","Protocol":"HTTP/1.1",'
            f"{self._called.get(called) or _part(self._called, called, _called)}"
            f"{self._outcomes.get(outcome) or _part(self._outcomes, outcome, _outcome)}"
            f'"RequestPayloadSize":{r.request_size},"ResponsePayloadSize":{r.response_size},'
            f'"UserAgent":{s(r.user_agent)},"XRequestId":{s(r.x_request_id)},'
            f'"XMSClientRequestId":{s(r.x_ms_client_request_id)},'
            f'"TotalDurationMs":{_ms(r.total_ms)},"RequestDurationMs":{_ms(r.request_ms)},'
            f'"ResponseDurationMs":{_ms(r.response_ms)},"RequestThrottlingDelayMs":{_ms(r.queue_ms)},'
            f'"ResponseThrottlingDelayMs":0,'
            f"{self._callers.get(caller) or _part(self._callers, caller, _caller)}"
        )


_MAX_PARTS = 4096  # per group: paths of unknown endpoints (404) are the client's to choose


def _part(
    cache: dict[tuple[Any, ...], str], values: tuple[Any, ...], render: Callable[..., str]
) -> str:
    if len(cache) >= _MAX_PARTS:
        cache.clear()
    text = cache[values] = render(*values)
    return text


def _called(method: str, path: str, workspace: str, endpoint: str, deployment: str) -> str:
    s = _string
    return (
        f'"Method":{s(method)},"Path":{s(path)},"AzureMLWorkspaceName":{s(workspace)},'
        f'"EndpointName":{s(endpoint)},"DeploymentName":{s(deployment)},'
    )


def _outcome(code: int, reason: str, model_code: int | None, model_reason: bytes) -> str:
    return (
        f'"ResponseCode":{code},"ResponseCodeReason":{_string(reason)},'
        f'"ModelStatusCode":{_number(model_code)},'
        f'"ModelStatusReason":{_string(model_reason.decode("latin-1"))},'
    )


def _caller(auth_type: str, identity: str, app_id: str | None, tenant_id: str | None) -> str:
    return (
        f'"AuthType":{_string(auth_type)},"IdentityData":{_string(identity)},'
        f'"AppId":{_optional(app_id)},"TenantId":{_optional(tenant_id)}}}'
    )


def _ms(value: float | None) -> str:
    """``repr(round(value, 3))`` in half its time: both are the value's correctly rounded
    3-decimal form (shortest round-trip repr keeps it for up to 15 significant digits)."""
    if value is None:
        return "null"
    text = f"{value:.3f}"
    if len(text) > 16:  # 1e12 ms and more: repr's own form, exponent included
        return repr(round(value, 3))
    text = text.rstrip("0")
    return text + "0" if text[-1] == "." else text


def _number(value: int | None) -> str:
    return "null" if value is None else str(value)


def _optional(value: str | None) -> str:
    return "null" if value is None else _string(value)


class TrafficMetrics(Collector):
    """Per endpoint, deployment, status and auth type: request counts and latency histograms.

    Fed in bulk by the traffic-log writer (a dict update per record instead of a locked
    ``labels().inc()`` per metric), exposed in the Prometheus registry as ordinary counters and
    histograms: ``propylon_gateway_scoring_requests_total``,
    ``propylon_gateway_scoring_duration_seconds`` (arrival to end of answer),
    ``propylon_gateway_model_duration_seconds`` (forwarded to answered) and
    ``propylon_gateway_traffic_log_dropped_total``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str, str], int] = {}
        self._total: dict[tuple[str, str], _Histogram] = {}
        self._model: dict[tuple[str, str], _Histogram] = {}
        self._dropped = 0

    def add(self, batch: Iterable[TrafficRecord], dropped: int = 0) -> None:
        with self._lock:
            requests, total, model = self._requests, self._total, self._model
            for r in batch:
                key = (r.endpoint, r.deployment, str(r.response_code), r.auth_type)
                requests[key] = requests.get(key, 0) + 1
                pair = (r.endpoint, r.deployment)
                histogram = total.get(pair) or total.setdefault(pair, _Histogram())
                histogram.observe(r.total_ms / 1000)
                if r.response_ms is not None and r.deployment:
                    histogram = model.get(pair) or model.setdefault(pair, _Histogram())
                    histogram.observe(max(0.0, r.response_ms - r.request_ms - r.queue_ms) / 1000)
            self._dropped = dropped

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            requests = CounterMetricFamily(
                "propylon_gateway_scoring_requests",
                "Scoring requests answered by the gateway.",
                labels=["endpoint", "deployment", "status", "auth_type"],
            )
            for labels, count in self._requests.items():
                requests.add_metric(list(labels), count)
            yield requests
            for name, help_text, histograms in (
                (
                    "propylon_gateway_scoring_duration_seconds",
                    "Time from a scoring request's arrival to the end of its answer.",
                    self._total,
                ),
                (
                    "propylon_gateway_model_duration_seconds",
                    "Time from forwarding a request to the model's answer.",
                    self._model,
                ),
            ):
                family = HistogramMetricFamily(name, help_text, labels=["endpoint", "deployment"])
                for pair, histogram in histograms.items():
                    family.add_metric(list(pair), histogram.buckets(), histogram.sum)
                yield family
            dropped = CounterMetricFamily(
                "propylon_gateway_traffic_log_dropped",
                "Traffic-log records dropped because the writer fell behind.",
            )
            dropped.add_metric([], self._dropped)
            yield dropped


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(_BUCKETS, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        bounds = [*(str(b) for b in _BUCKETS), "+Inf"]
        return list(zip(bounds, accumulate(self.counts), strict=True))


def read_traffic_log(directory: Path, endpoint: str, *, tail: int = 100) -> list[dict[str, Any]]:
    """The last ``tail`` records of an endpoint, oldest first (for ``get-logs --traffic``), read
    across the rotated files. A line that is not a whole record (one being written right now, or
    a file cut short by a full disk) is skipped."""
    name = endpoint.lower()
    if not _SAFE_NAME.fullmatch(name):
        return []
    records = []
    for line in logfiles.tail(directory / f"{name}.jsonl", tail):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _is_open_at(handle: IO[str], path: Path) -> bool:
    """Whether ``handle`` is the file now at ``path`` (not one rotated or moved away)."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)
