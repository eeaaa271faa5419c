"""What the scoring script returns, turned into HTTP responses the way Azure's server does it.

* an ``AMLResponse`` (or any Flask/Werkzeug response) keeps its status, headers and body; an
  iterable body is streamed;
* ``bytes`` are sent as they are (``application/octet-stream``);
* anything else is serialised with ``json.dumps`` — so a returned ``str`` becomes a JSON string
  literal, exactly as on Azure. NumPy arrays and scalars are converted with ``tolist()``.

A generator returned by a model route becomes server-sent events (:func:`sse_body`): one
``data: {json}`` event per item, then ``data: [DONE]`` — the framing the OpenAI and
azure-ai-inference clients read. Example::

    json_response({"output": [1.5]})                # 200 application/json
    message_response(404, "no swagger")             # 404 {"message": "no swagger"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from propylon.inference.asgi import Response

__all__ = [
    "is_response_object",
    "json_body",
    "json_response",
    "message_response",
    "output_response",
    "sse_body",
]

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = ("content-type", "application/json")
SSE_HEADERS = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    # Tells nginx-style proxies in front of the gateway not to buffer the events.
    ("x-accel-buffering", "no"),
]

# Computed by the server, or meaningless once the body is re-framed for this connection.
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})

Stream = Callable[[Iterable[Any]], AsyncIterator[Any]]


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_body(value: Any) -> bytes:
    """``json.dumps(value)`` as UTF-8 (NaN allowed, as Azure's server allows it)."""
    return json.dumps(value, default=_json_default).encode("utf-8")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, [JSON_CONTENT_TYPE], json_body(value))


def message_response(
    status: int, message: str, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """Azure's inference-server error body: ``{"message": "<text>"}``."""
    return Response(status, [JSON_CONTENT_TYPE, *headers], json_body({"message": message}))


def is_response_object(value: Any) -> bool:
    """An ``AMLResponse`` or a Flask/Werkzeug response (duck-typed, Flask need not be installed)."""
    return (
        hasattr(value, "status_code") and hasattr(value, "headers") and hasattr(value, "get_data")
    )


def output_response(output: Any, stream: Stream) -> Response:
    """The response for what ``run()`` (or a model route) returned.

    ``stream`` turns the user's iterable body into an async iterator that pulls it in the user-code
    pool. ``TypeError``/``ValueError`` mean the output cannot be serialised: the script's fault.
    """
    if is_response_object(output):
        return _from_response_object(output, stream)
    if isinstance(output, bytes | bytearray | memoryview):
        return Response(200, [("content-type", "application/octet-stream")], bytes(output))
    return json_response(output)


def _from_response_object(output: Any, stream: Stream) -> Response:
    headers = [
        (str(name), str(value))
        for name, value in output.headers.items()
        if str(name).lower() not in _DROPPED_HEADERS
    ]
    status = int(output.status_code)
    if getattr(output, "is_streamed", False) and hasattr(output, "iter_encoded"):
        return Response(status, headers, _encoded(stream(output.iter_encoded())))
    return Response(status, headers, bytes(output.get_data()))


async def _encoded(chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


async def sse_body(events: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    """Server-sent events for a model route's generator; a failure ends it with an error event."""
    try:
        async for event in events:
            yield _sse_event(event)
    except Exception as exc:
        logger.error("the scoring script's stream raised", exc_info=exc)
        error = {"error": {"code": "ModelError", "message": str(exc) or type(exc).__name__}}
        yield b"data: " + json_body(error) + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


def _sse_event(event: Any) -> bytes:
    if isinstance(event, bytes | bytearray):
        payload = bytes(event)
    elif isinstance(event, str):
        payload = event.encode("utf-8")
    else:
        payload = json_body(event)
    # A newline would end the data field (WHATWG HTML §9.2.6): each line gets its own "data:".
    lines = payload.replace(b"\r\n", b"\n").split(b"\n")
    return b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"
