"""``serve.py``'s gateway, served by ``asgi_shim.py`` instead of uvicorn (same app, same setup).

Same arguments as ``serve.py`` (``--tls-port`` is ignored); ``floor_compare.py`` starts it to
measure what swapping only the HTTP server would save the whole gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asgi_shim
import serve
from starlette.types import ASGIApp

from propylon.server.context import ServerContext


async def _serve(ctx: ServerContext, app: ASGIApp, args: argparse.Namespace) -> None:
    feed = asyncio.create_task(ctx.feed.run())
    for hook in ctx.on_startup:
        await hook()
    try:
        await asgi_shim.serve(app, "127.0.0.1", args.port)
    finally:
        feed.cancel()


if __name__ == "__main__":
    serve._serve = _serve  # the one seam: everything else is serve.py's
    serve.main()
