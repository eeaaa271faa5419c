"""Long-running operations, polled the way azure-mgmt-core's ``ARMPolling`` does (reference §1.4).

The first answer decides how to poll:

1. ``Azure-AsyncOperation`` header → GET that URL until its ``status`` is Succeeded, Failed or
   Canceled (case-insensitive); then, for PUT/PATCH, GET the resource for the result;
2. ``Location`` header → GET it: 202 means still running, any other 2xx is the result;
3. PUT/PATCH without either → the resource's ``properties.provisioningState``;
4. otherwise the operation is already done.

``Retry-After`` is honoured; otherwise the poller waits ``interval`` seconds. Example::

    poller = client.online_endpoints.begin_create_or_update(endpoint)
    while not poller.done():
        print(poller.status())
        poller.poll()
    endpoint = poller.result()
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from propylon.client.http import ARM_SCOPE, Pipeline, Reply
from propylon.errors import NotFound, PropylonError

__all__ = ["TERMINAL_STATES", "Poller"]

T = TypeVar("T")

TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled", "cancelled"})
_MAX_RETRY_AFTER = 10.0


class Poller(Generic[T]):
    """An operation in progress; :meth:`result` waits for it and returns what it produced."""

    def __init__(
        self,
        pipeline: Pipeline,
        method: str,
        resource_url: str,
        initial: Reply | None,
        finish: Callable[[Any], T],
        *,
        interval: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._pipeline = pipeline
        self._method = method
        self._resource_url = resource_url
        self._finish = finish
        self._interval = interval
        self._sleep = sleep
        self._status = "InProgress"
        self._result: Any = None
        self._done = False
        self._delay = interval
        self._async_url: str | None = None
        self._location_url: str | None = None
        self._error: PropylonError | None = None
        if initial is None:
            self._complete(None)
            return
        self._async_url = initial.header("Azure-AsyncOperation")
        self._location_url = initial.header("Location")
        self._delay = _retry_after(initial, interval)
        body = initial.json() if initial.content else None
        if self._async_url or (self._location_url and initial.status == 202):
            self._status = _provisioning_state(body) or "InProgress"
            return
        if method in {"PUT", "PATCH"}:
            state = _provisioning_state(body)
            if state is None or state.lower() in TERMINAL_STATES:
                self._settle(state or "Succeeded", body)
            else:
                self._status = state
            return
        self._complete(body)

    @classmethod
    def completed(cls, value: T) -> Poller[T]:
        """A poller for something that needed no waiting (``--no-wait`` paths, local steps)."""
        poller: Poller[T] = cls.__new__(cls)
        poller._status = "Succeeded"
        poller._result = value
        poller._done = True
        poller._error = None
        poller._finish = lambda body: body
        return poller

    def status(self) -> str:
        """The last status seen: ``InProgress``, ``Creating``, ``Succeeded``, ``Failed`` …"""
        return self._status

    def done(self) -> bool:
        return self._done

    def poll(self) -> str:
        """Wait the advised delay, ask once, and return the status."""
        if self._done:
            return self._status
        self._sleep(self._delay)
        if self._async_url:
            self._poll_async()
        elif self._location_url:
            self._poll_location()
        else:
            self._poll_resource()
        return self._status

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            if deadline is not None and time.monotonic() > deadline:
                error = PropylonError(
                    f"the operation did not finish within {timeout:g} s (last status "
                    f"{self._status}).",
                    code="OperationTimeout",
                )
                error.status = 408
                raise error
            self.poll()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the end; return the result or raise the operation's error."""
        self.wait(timeout)
        if self._error is not None:
            raise self._error
        value: T = self._result
        return value

    # -- the three polling strategies -------------------------------------------------------

    def _poll_async(self) -> None:
        assert self._async_url is not None
        reply = self._pipeline.send("GET", self._async_url, scope=ARM_SCOPE)
        self._delay = _retry_after(reply, self._interval)
        body = reply.json() or {}
        status = str(body.get("status") or "InProgress")
        self._status = status
        if status.lower() not in TERMINAL_STATES:
            return
        if status.lower() != "succeeded":
            self._fail(body)
            return
        if self._method in {"PUT", "PATCH"}:
            final = self._pipeline.send("GET", self._resource_url, scope=ARM_SCOPE)
            self._complete(final.json())
        elif self._location_url:
            self._async_url = None
            self._poll_location(sleep=False)
        else:
            self._complete(None)

    def _poll_location(self, *, sleep: bool = True) -> None:
        assert self._location_url is not None
        reply = self._pipeline.send("GET", self._location_url, scope=ARM_SCOPE, ok=(404,))
        self._delay = _retry_after(reply, self._interval)
        if reply.status == 202:
            self._status = _provisioning_state(reply.json()) or "InProgress"
            return
        body = reply.json() if reply.status != 404 else None
        if isinstance(body, dict) and str(body.get("status", "")).lower() in {
            "failed",
            "canceled",
            "cancelled",
        }:
            self._fail(body)
            return
        if self._method in {"PUT", "PATCH"}:
            body = self._pipeline.send("GET", self._resource_url, scope=ARM_SCOPE).json()
        self._complete(body)

    def _poll_resource(self) -> None:
        try:
            reply = self._pipeline.send("GET", self._resource_url, scope=ARM_SCOPE)
        except NotFound:
            if self._method == "DELETE":
                self._complete(None)
                return
            raise
        body = reply.json()
        state = _provisioning_state(body) or "Succeeded"
        self._status = state
        if state.lower() in TERMINAL_STATES:
            self._settle(state, body)

    # -- endings ---------------------------------------------------------------------------

    def _settle(self, state: str, body: Any) -> None:
        if state.lower() == "succeeded":
            self._complete(body)
        else:
            self._fail(body)

    def _complete(self, body: Any) -> None:
        self._status = "Succeeded"
        self._done = True
        self._result = self._finish(body)

    def _fail(self, body: Any) -> None:
        self._done = True
        status = str((body or {}).get("status") or _provisioning_state(body) or "Failed")
        self._status = status
        error = (body or {}).get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            self._error = PropylonError(
                str(error["message"]), code=str(error.get("code") or "OperationFailed")
            )
        else:
            self._error = PropylonError(
                f"the operation ended with status {status}.", code="OperationFailed"
            )


def _provisioning_state(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    properties = body.get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("provisioningState"), str):
        return str(properties["provisioningState"])
    return None


def _retry_after(reply: Reply, default: float) -> float:
    value = reply.header("Retry-After")
    if value is None:
        return default
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return default
