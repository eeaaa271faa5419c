"""Types and helpers of the in-process inference-server tests (fixtures are in conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx

from propylon.inference import InferenceApp

MakeApp = Callable[..., InferenceApp]
Serve = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@asynccontextmanager
async def serving(app: InferenceApp, *, wait: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """Start the app (script import and init()) and give a client to it; shut it down after."""
    await app.startup()
    if wait:
        await app.wait_started()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://instance") as client:
            yield client
    finally:
        await app.shutdown()
