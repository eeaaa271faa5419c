"""The upstream client the gateway does *not* use, kept so the benchmark can show why.

An :class:`aiohttp.ClientSession` (unlimited keep-alive pool) behind the gateway's
:class:`~propylon.gateway.upstream.Transport` interface; ``serve.py --transport aiohttp`` swaps it
in. The answer is read whole, which is all the benchmark's echo model needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiohttp

from propylon.gateway import BadGateway, Instance, RequestTimeout, UpstreamRequest, UpstreamResponse


class AiohttpTransport:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def send(
        self, instance: Instance, request: UpstreamRequest, time_limit: float
    ) -> UpstreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
            )
        headers = {name.decode(): value.decode() for name, value in request.headers}
        try:
            async with self._session.request(
                request.method.decode(),
                instance.url + request.target.decode(),
                headers=headers,
                data=request.body,
                timeout=aiohttp.ClientTimeout(total=time_limit),
            ) as answer:
                body = await answer.read()
                raw = [(k.lower(), v) for k, v in answer.raw_headers]
                return UpstreamResponse(
                    answer.status, raw, body, reason=(answer.reason or "").encode()
                )
        except TimeoutError:
            raise RequestTimeout("The model did not answer within requestTimeout.") from None
        except aiohttp.ClientError:
            raise BadGateway("The instance could not be reached.") from None

    def retain(self, instances: Iterable[str]) -> None:
        return None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
