"""The floor under any Python gateway here: a minimal ASGI forwarder, nothing else.

``python bench/gateway/floor_proxy.py --port P --upstream http://127.0.0.1:5001`` serves, under
uvicorn with the settings ``propylon server`` uses, an app that reads the body, forwards it with
the gateway's own upstream client (:class:`~propylon.gateway.PooledTransport`) to one fixed
instance and relays the answer — no routing, authentication, limits, traffic log or middleware.
``run.py`` measures it beside the gateway, so that the gateway's figures can be read against
what one more Python process in the path costs on the same machine.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.types import Receive, Scope, Send

from propylon.gateway import Instance, PooledTransport, UpstreamRequest

_DROP = frozenset({b"host", b"content-length", b"connection", b"authorization"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    instance = Instance("floor", "floor", args.upstream, None, 1 << 20)
    transport = PooledTransport()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        headers = [(n, v) for n, v in scope["headers"] if n not in _DROP]
        request = UpstreamRequest(b"POST", b"/score", headers, message.get("body", b""))
        answer = await transport.send(instance, request, 5.0)
        body = answer.body()
        relayed = [(n, v) for n, v in answer.headers if n not in (b"date", b"content-length")]
        relayed.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": answer.status, "headers": relayed})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
