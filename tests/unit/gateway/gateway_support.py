"""Builders and an ASGI caller for the gateway's unit tests (no server, no sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry

from propylon.gateway import (
    Authenticator,
    AuthMode,
    Deployment,
    Endpoint,
    Gateway,
    GatewayOptions,
    Instance,
    Limiter,
    Mirror,
    RequestLimits,
    RoutingTable,
    RoutingTables,
    TableLoader,
    TrafficLog,
)
from propylon.gateway.table import Weights
from propylon.gateway.testing import FakeTransport, StaticAccess

WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/ws"
)


def endpoint_id(name: str) -> str:
    return f"{WORKSPACE}/onlineEndpoints/{name}"


def deployment(
    name: str,
    *,
    endpoint: str = "e1",
    instances: int = 1,
    max_concurrent: int = 1,
    timeout_s: float = 5.0,
    queue_wait_s: float = 0.5,
) -> Deployment:
    dep_id = f"{endpoint_id(endpoint)}/deployments/{name}".lower()
    return Deployment(
        id=dep_id,
        name=name,
        limits=RequestLimits(max_concurrent, timeout_s, queue_wait_s),
        instances=tuple(
            Instance(
                f"{dep_id}#i{n}", f"i{n}", f"http://127.0.0.1:{9000 + n}", None, max_concurrent
            )
            for n in range(instances)
        ),
    )


def endpoint(
    name: str = "e1",
    *,
    deployments: Iterable[Deployment] = (),
    traffic: Mapping[str, int] | None = None,
    mirror: Mapping[str, int] | None = None,
    auth_mode: AuthMode = AuthMode.KEY,
    keys: tuple[bytes, ...] = (b"primary-key-e1", b"secondary-key-e1"),
    local_auth_disabled: bool = False,
    uid: str | None = None,
) -> Endpoint:
    deps = {d.name.lower(): d for d in deployments}
    return Endpoint(
        id=endpoint_id(name).lower(),
        arm_id=endpoint_id(name),
        uid=uid,
        name=name,
        workspace_id=WORKSPACE.lower(),
        auth_mode=auth_mode,
        keys=keys,
        local_auth_disabled=local_auth_disabled,
        deployments=MappingProxyType(deps),
        traffic=Weights.of(traffic if traffic is not None else {n: 100 for n in list(deps)[:1]}),
        mirror=Weights.of(mirror or {}),
    )


class StaticTables(RoutingTables):
    """RoutingTables over endpoints given in memory."""

    def __init__(self, *endpoints: Endpoint) -> None:
        super().__init__(TableLoader(None, None))  # type: ignore[arg-type]
        self.set(*endpoints)

    def set(self, *endpoints: Endpoint) -> None:
        self.current = RoutingTable(MappingProxyType({e.name.lower(): e for e in endpoints}))
        self.stale = False


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    chunks: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def make_gateway(
    *endpoints: Endpoint,
    transport: FakeTransport | None = None,
    access: StaticAccess | None = None,
    tmp_path: Any = None,
    options: GatewayOptions | None = None,
    rand: Any = None,
) -> Gateway:
    transport = transport or FakeTransport()
    limiter = Limiter()
    registry = CollectorRegistry()
    kwargs: dict[str, Any] = {"rand": rand} if rand is not None else {}
    return Gateway(
        tables=StaticTables(*endpoints),
        authenticator=Authenticator(access or StaticAccess()),
        transport=transport,
        traffic=TrafficLog(tmp_path / "traffic", registry=registry),
        limiter=limiter,
        mirror=Mirror(transport, limiter, registry=registry),
        options=options or GatewayOptions(),
        **kwargs,
    )


async def call(
    app: Any,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    body_parts: list[bytes] | None = None,
    query: bytes = b"",
) -> Answer:
    """One request through an ASGI app, as uvicorn would deliver it."""
    parts = body_parts if body_parts is not None else [body]
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if body_parts is None:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": raw_headers,
        "state": {"request_id": "00000000-0000-0000-0000-00000000abcd"},
    }
    messages = [
        {"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
        for n, part in enumerate(parts)
    ]
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await disconnected.wait()
        return {"type": "http.disconnect"}

    answer = Answer(0, [], b"")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = list(message.get("headers", []))
        else:
            chunk = message.get("body", b"")
            if chunk:
                answer.chunks.append(chunk)
            answer.body += chunk

    await app(scope, receive, send)
    disconnected.set()
    return answer


@contextlib.asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[Gateway]:
    """The gateway, closed afterwards (its traffic log flushed and files closed)."""
    try:
        yield gateway
    finally:
        await gateway.aclose()
