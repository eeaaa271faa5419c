"""The ASGI application inside every deployment instance: Azure's inference-server contract.

Routes (reference §4.2, plus Propylon's probes and the model-inference routes of §5.3):

=========================  ========  ===============================================================
``/``                      GET       liveness: ``200 Healthy`` as soon as the process serves
``/readyz``, ``/health``   GET       readiness: 200 once ``init()`` has returned, 503 before
``/score``                 GET POST  ``run()``; OPTIONS → 200 empty (Azure)
``/swagger.json``          GET       OpenAPI document (:mod:`propylon.inference.swagger`)
``/chat/completions``      POST      ``chat_completions(body)``; a generator streams as SSE
``/embeddings``            POST      ``embeddings(body)``
``/info``                  GET       ``info()``
=========================  ========  ===============================================================

At startup the script is imported and ``init()`` called in the user-code pool, so liveness
answers during a slow ``init()``; if either fails, the traceback is logged and ``on_failure`` is
called (the server then exits with status 3). Every response carries ``x-request-id`` (echoed, or
a new UUID) and Azure's ``x-ms-request-id`` / ``x-ms-client-request-id``. Example::

    app = InferenceApp(InferenceSettings.from_env())
    uvicorn.run(app, port=5001)     # or, in-process: await app.startup(); await app.wait_started()
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from propylon.errors import PropylonError
from propylon.inference import logs
from propylon.inference.aml_request import AMLRequest
from propylon.inference.asgi import (
    ClientDisconnected,
    Receive,
    Response,
    Scope,
    Send,
    read_body,
    send_response,
)
from propylon.inference.errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    RunFailed,
    ScoringTimeout,
    ScriptError,
    ServiceUnavailable,
)
from propylon.inference.responses import (
    SSE_HEADERS,
    json_response,
    message_response,
    output_response,
    sse_body,
)
from propylon.inference.runner import UserCodeRunner, UserStream
from propylon.inference.settings import InferenceSettings
from propylon.inference.startup import log_model_dir, prepare_script
from propylon.inference.swagger import SwaggerDocuments
from propylon.inference.tracing import RequestIds
from propylon.inference.user_script import ScoringScript

__all__ = ["InferenceApp", "Lifecycle"]

logger = logging.getLogger("propylon.inference")
access_logger = logging.getLogger("propylon.inference.access")

_PROBE_PATHS = frozenset({"/", "/readyz", "/health"})
_STATS_PATH = "/_propylon/stats"
# Requests that are not the model's work do not count as load.
_UNCOUNTED_PATHS = _PROBE_PATHS | {_STATS_PATH, "/swagger.json"}
_INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."

Handler = Callable[[AMLRequest], Awaitable[Response]]


class Lifecycle(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class _Route:
    methods: frozenset[str]
    handler: Handler


class InferenceApp:
    """One instance's HTTP face: probes, ``/score``, swagger and the model-inference routes."""

    def __init__(
        self,
        settings: InferenceSettings,
        *,
        on_failure: Callable[[ScriptError], None] | None = None,
        module_name: str = "entry_module",
    ) -> None:
        self.settings = settings
        self.state = Lifecycle.STARTING
        self.failure: ScriptError | None = None
        self.runner = UserCodeRunner(settings.worker_count)
        self._on_failure = on_failure
        self._module_name = module_name
        self._script: ScoringScript | None = None
        self._swagger = SwaggerDocuments()
        self._startup: asyncio.Task[None] | None = None
        self._server_version = f"propylon-inference/{_package_version()}"
        readiness = _Route(frozenset({"GET"}), self._readiness)
        self._routes: dict[str, _Route] = {
            "/": _Route(frozenset({"GET"}), self._liveness),
            "/readyz": readiness,
            "/health": readiness,
            "/score": _Route(frozenset({"GET", "POST", "OPTIONS"}), self._score),
            "/swagger.json": _Route(frozenset({"GET"}), self._swagger_document),
            "/chat/completions": _Route(frozenset({"POST"}), self._chat_completions),
            "/embeddings": _Route(frozenset({"POST"}), self._embeddings),
            "/info": _Route(frozenset({"GET"}), self._info),
            _STATS_PATH: _Route(frozenset({"GET"}), self._stats),
        }
        self._in_flight = 0
        self._in_flight_seconds = 0.0
        self._in_flight_since = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Begin importing the script and calling ``init()``; returns at once."""
        self._start()

    async def wait_started(self) -> Lifecycle:
        """Wait until ``init()`` has returned or failed (starting it if need be); the state."""
        await asyncio.shield(self._start())
        return self.state

    def _start(self) -> asyncio.Task[None]:
        if self._startup is None:
            self._startup = asyncio.get_running_loop().create_task(self._load())
        return self._startup

    async def shutdown(self) -> None:
        """Stop taking user work; a thread still inside ``init()``/``run()`` is not waited for."""
        self.runner.shutdown()
        if self._startup is not None and not self._startup.done():
            self._startup.cancel()

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._script, self._swagger = await self.runner.call(
                prepare_script, self.settings, module_name=self._module_name
            )
        except Exception as exc:
            failure = exc if isinstance(exc, ScriptError) else ScriptError(str(exc))
            if failure is not exc:
                failure.__cause__ = exc
            self.state = Lifecycle.FAILED
            self.failure = failure
            logger.error("The scoring script cannot serve: %s", failure, exc_info=failure)
            log_model_dir(self.settings.model_dir)
            if self._on_failure is not None:
                self._on_failure(failure)
            return
        self.state = Lifecycle.READY
        logger.info(
            "init() finished; ready to score",
            extra={
                "init_seconds": round(time.perf_counter() - started, 3),
                "worker_count": self.settings.worker_count,
            },
        )

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise RuntimeError(f"the inference server does not serve {scope['type']!r} connections")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        ids = RequestIds.from_asgi(scope["headers"])
        token = logs.request_id.set(ids.request_id)
        response: Response | None = None
        counted = path not in _UNCOUNTED_PATHS
        if counted:
            self._count_in_flight(+1)
        try:
            try:
                ids.check()
                route = self._routes.get(path)
                if route is None:
                    raise NotFound(f"No route {path}.")
                if method not in route.methods:
                    raise MethodNotAllowed(route.methods)
                request = _aml_request(scope, await read_body(receive))
                response = await route.handler(request)
            except PropylonError as exc:
                response = _error_response(exc)
            except ClientDisconnected:
                return
            except Exception:
                logger.exception("Unexpected error while serving %s %s", method, path)
                response = message_response(500, _INTERNAL_ERROR)
            response.headers.extend(ids.response_headers())
            response.headers.append(("x-ms-server-version", self._server_version))
            await send_response(send, receive, response)
        finally:
            if response is not None and response.on_close is not None:
                await response.on_close()
            if counted:
                self._count_in_flight(-1)
            self._log_access(method, path, scope, response, started)
            logs.request_id.reset(token)

    def _log_access(
        self, method: str, path: str, scope: Scope, response: Response | None, started: float
    ) -> None:
        level = logging.DEBUG if path in _UNCOUNTED_PATHS else logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        status = response.status if response is not None else 499  # client went away
        query = scope.get("query_string", b"")
        target = f"{path}?{query.decode('latin-1')}" if query else path
        access_logger.log(
            level,
            "%s %s %d",
            method,
            target,
            status,
            extra={
                "method": method,
                "path": target,
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "response_bytes": response.sent_bytes if response is not None else 0,
            },
        )

    # -- handlers ------------------------------------------------------------------------------

    def _ready_script(self) -> ScoringScript:
        if self.state is Lifecycle.READY and self._script is not None:
            return self._script
        if self.state is Lifecycle.FAILED:
            raise ServiceUnavailable(
                "The scoring script failed to initialise; see the instance log."
            )
        raise ServiceUnavailable("The scoring script's init() has not finished yet.")

    async def _liveness(self, request: AMLRequest) -> Response:
        return Response(200, [("content-type", "text/plain; charset=utf-8")], b"Healthy")

    def _count_in_flight(self, delta: int) -> None:
        now = time.monotonic()
        self._in_flight_seconds += self._in_flight * (now - self._in_flight_since)
        self._in_flight_since = now
        self._in_flight += delta

    async def _stats(self, request: AMLRequest) -> Response:
        """The load the runtime's autoscaler samples: requests in flight now, and its integral."""
        self._count_in_flight(0)
        return json_response(
            {"in_flight": self._in_flight, "in_flight_seconds_total": self._in_flight_seconds}
        )

    async def _readiness(self, request: AMLRequest) -> Response:
        self._ready_script()
        return Response(200, [("content-type", "text/plain; charset=utf-8")], b"Ready")

    async def _score(self, request: AMLRequest) -> Response:
        script = self._ready_script()
        if request.method == "OPTIONS":
            return Response(200)
        if script.run is None:
            raise NotFound("The scoring script defines no run() function.")
        kwargs = script.score_arguments(request)
        started = time.perf_counter()
        response = await self._call_script("run", script.run, stream_events=False, **kwargs)
        elapsed_ms = (time.perf_counter() - started) * 1000
        failed = "True" if response.status >= 500 else "False"
        response.headers.append(("x-ms-run-function-failed", failed))
        response.headers.append(("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}"))
        return response

    async def _swagger_document(self, request: AMLRequest) -> Response:
        self._ready_script()
        return json_response(self._swagger.get(request.args.get("version")))

    async def _chat_completions(self, request: AMLRequest) -> Response:
        function = self._ready_script().chat_completions
        if function is None:
            raise NotFound("The scoring script defines no chat_completions() function.")
        return await self._call_script(
            "chat_completions", function, _json_object(request), stream_events=True
        )

    async def _embeddings(self, request: AMLRequest) -> Response:
        function = self._ready_script().embeddings
        if function is None:
            raise NotFound("The scoring script defines no embeddings() function.")
        return await self._call_script(
            "embeddings", function, _json_object(request), stream_events=True
        )

    async def _info(self, request: AMLRequest) -> Response:
        function = self._ready_script().info
        if function is None:
            raise NotFound("The scoring script defines no info() function.")
        return await self._call_script("info", function, stream_events=False)

    async def _call_script(
        self,
        name: str,
        function: Callable[..., Any],
        /,
        *args: Any,
        stream_events: bool,
        **kwargs: Any,
    ) -> Response:
        """Call a script function in the pool and turn what it returns into a response.

        A generator's items are pulled in the pool as the response is sent; ``Response.on_close``
        closes it however the response ends.
        """
        runner = self.runner
        try:
            output = await runner.call(
                function, *args, time_limit=self.settings.scoring_timeout, **kwargs
            )
        except ScoringTimeout:
            logger.error("%s() did not return within %s ms", name, self.settings.scoring_timeout_ms)
            raise
        except Exception as exc:
            logger.error("%s() raised", name, exc_info=exc)
            raise RunFailed(str(exc) or type(exc).__name__) from None
        streams: list[UserStream] = []

        def stream(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
            streams.append(runner.stream(items))
            return streams[-1]

        if stream_events and isinstance(output, Iterator | AsyncIterator):
            response = Response(200, list(SSE_HEADERS), sse_body(stream(output)))
        else:
            try:
                response = output_response(output, stream)
            except (TypeError, ValueError) as exc:
                logger.error("%s() returned what cannot be sent", name, exc_info=exc)
                raise RunFailed(str(exc)) from None
        if streams:
            response.on_close = streams[0].aclose
        return response


def _aml_request(scope: Scope, body: bytes) -> AMLRequest:
    server = scope.get("server")
    client = scope.get("client")
    return AMLRequest(
        method=scope["method"],
        path=scope["path"],
        root_path=scope.get("root_path", ""),
        query_string=scope.get("query_string", b""),
        raw_headers=scope["headers"],
        body=body,
        scheme=scope.get("scheme", "http"),
        host=f"{server[0]}:{server[1]}" if server and server[1] is not None else None,
        remote_addr=client[0] if client else None,
    )


def _json_object(request: AMLRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.data)
    except ValueError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _error_response(error: PropylonError) -> Response:
    headers = list(error.headers.items())
    if isinstance(error, RunFailed | ScoringTimeout):
        headers.append(("x-ms-run-function-failed", "True"))
    return message_response(error.status, error.message, headers)


def _package_version() -> str:
    try:
        return metadata.version("propylon")
    except metadata.PackageNotFoundError:
        return "0+unknown"
