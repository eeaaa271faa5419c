"""Writing answers to the client over ASGI: the instance's answer relayed, or an error body.

* :func:`relay` sends what the instance answered. A non-200 answer becomes **424** with the
  model's own body and its status and reason in ``ms-azureml-model-error-statuscode`` and
  ``ms-azureml-model-error-reason`` (reference §3.4), except on pass-through routes (the swagger
  document). A complete answer goes out as one body with its length; a streamed one (server-sent
  events) chunk by chunk as it arrives, and reading stops when the client goes away.
* :func:`send_error` writes the ARM error body of a :class:`~propylon.errors.PropylonError` with
  its status and headers (``WWW-Authenticate``, ``Retry-After``, ``Allow``).

Both add ``azureml-model-deployment`` once a deployment was chosen. Example::

    status, size = await relay(send, receive, answer, "blue", passthrough=False)
    await send_error(send, NotFound("No online endpoint named 'e'."), None)
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Final

from starlette.types import Receive, Send

from propylon.errors import PropylonError
from propylon.gateway.table import Deployment
from propylon.gateway.upstream import UpstreamResponse

__all__ = ["answer_head", "error_answer", "relay", "send_error"]

# Answer headers not relayed: hop-by-hop, framing (recomputed), and those the server adds.
_NOT_RELAYED: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"date",
        b"server",
        b"x-request-id",
        b"x-ms-request-id",
        b"x-ms-client-request-id",
        b"azureml-model-deployment",
    }
)


async def relay(
    send: Send, receive: Receive, answer: UpstreamResponse, deployment: str, *, passthrough: bool
) -> tuple[int, int]:
    """Send the instance's answer to the client; (status sent, body bytes)."""
    status, headers = answer_head(
        answer.status, answer.reason, answer.headers, deployment.encode(), passthrough=passthrough
    )
    if answer.complete:
        body = answer.body()
        headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status, len(body)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    watcher = asyncio.ensure_future(_disconnected(receive))
    watcher.add_done_callback(lambda done: None if done.cancelled() else answer.abort())
    sent = 0
    try:
        async for chunk in answer.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += len(chunk)
    except PropylonError:
        # The instance broke off mid-answer: the head is out, so all that is left is to end it.
        status = 502
    finally:
        watcher.cancel()
    await send({"type": "http.response.body", "body": b""})
    return status, sent


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def answer_head(
    status: int,
    reason: bytes,
    headers: list[tuple[bytes, bytes]],
    deployment: bytes,
    *,
    passthrough: bool,
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The status and headers the client gets for an instance's answer, framing aside. A
    non-200 answer becomes 424 with the model's status and reason in
    ``ms-azureml-model-error-*``, except on ``passthrough`` routes (the swagger document)."""
    relayed = [(n, v) for n, v in headers if n not in _NOT_RELAYED]
    relayed.append((b"azureml-model-deployment", deployment))
    if status != 200 and not passthrough:
        relayed.append((b"ms-azureml-model-error-statuscode", b"%d" % status))
        relayed.append((b"ms-azureml-model-error-reason", reason or _phrase(status).encode()))
        status = 424
    return status, relayed


def error_answer(
    error: PropylonError, deployment: Deployment | None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers (with the length) and ARM error body that answer ``error``."""
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
    ]
    if deployment is not None:
        headers.append((b"azureml-model-deployment", deployment.name.encode()))
    return headers, body


async def send_error(send: Send, error: PropylonError, deployment: Deployment | None) -> None:
    headers, body = error_answer(error, deployment)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
