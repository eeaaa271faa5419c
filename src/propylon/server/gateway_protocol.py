"""The gateway port's HTTP protocol: plain scoring requests on the fast lane, the rest to the app.

:class:`GatewayProtocol` is the server's :class:`~propylon.server.protocol.BoundedHeadProtocol`
(uvicorn's httptools protocol with a bound on the request head) that offers every request head
to the gateway's :class:`~propylon.gateway.fastlane.FastLane` first. A request the lane takes is
answered from the callbacks (:class:`~propylon.gateway.fastlane.Exchange` stands where uvicorn
keeps its per-request cycle, so pipelining, keep-alive, shutdown and a client going away work as
for any other request); any other request starts the ASGI app as before. So does a request the
lane hands back after its body was read (:meth:`GatewayProtocol.replay`).

Example::

    uvicorn.Config(app, loop="uvloop", http=gateway_protocol(gateway, middleware))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from propylon.errors import PropylonError
from propylon.gateway.app import CHOSEN, Gateway
from propylon.gateway.fastlane import Exchange, FastLane
from propylon.server.middleware import RequestContextMiddleware, new_request_id
from propylon.server.protocol import BoundedHeadProtocol

__all__ = ["GatewayProtocol", "gateway_protocol"]

log = logging.getLogger("propylon.gateway")


def gateway_protocol(gateway: Gateway, middleware: RequestContextMiddleware) -> type[Any]:
    """The protocol class for a gateway port serving ``middleware`` (around ``gateway``)."""
    lane = FastLane(gateway, request_id=new_request_id, observe=middleware.observe)
    return type("GatewayProtocol", (GatewayProtocol,), {"lane": lane})


class GatewayProtocol(BoundedHeadProtocol):
    """See the module docstring; made with :func:`gateway_protocol`."""

    lane: ClassVar[FastLane]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The exchange in flight, with what replay() needs of its head: headers and target.
        self._exchange: Exchange | None = None
        self._exchange_head: tuple[list[tuple[bytes, bytes]], bytes] | None = None

    # -- the request's parts (BoundedHeadProtocol's hooks) ---------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's, without the ASGI scope: most requests never need one (_to_the_app makes it).
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def _to_the_app(self, state: dict[str, Any]) -> None:
        """Make the request's ASGI scope as uvicorn's on_message_begin would have, with what the
        parser gave so far and ``state`` added to its state."""
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers.extend(headers)  # the list the new scope holds
        self.scope["state"].update(state)

    def request_head_complete(self) -> None:
        cycle = self.cycle
        parser = self.parser
        state: dict[str, Any] = {}
        if (
            (cycle is None or cycle.response_complete)
            and not self.expect_100_continue
            and parser.get_http_version() == "1.1"
            and not parser.should_upgrade()
        ):
            client = self.client
            try:
                exchange = self.lane.begin(
                    self,
                    parser.get_method(),
                    self.url,
                    self.headers,
                    keep_alive=parser.should_keep_alive(),
                    address=client[0] if client else None,
                    state=state,
                )
            except Exception:  # a bug: the app still answers (an escape here would be a 400)
                log.exception("fast lane failed to take a request")
                exchange = None
            if exchange is not None:
                self.cycle = self._exchange = exchange  # type: ignore[assignment]
                self._exchange_head = (self.headers, self.url)
                return
        self._to_the_app(state)
        super().request_head_complete()

    def request_body(self, body: bytes) -> None:
        exchange = self._exchange
        if exchange is not None and self.cycle is exchange:  # type: ignore[comparison-overlap]
            exchange.add_body(body)
        else:
            super().request_body(body)

    def request_complete(self) -> None:
        exchange = self._exchange
        if exchange is not None and self.cycle is exchange:  # type: ignore[comparison-overlap]
            try:
                exchange.send()
            except Exception:
                log.exception("fast lane failed to forward a request")
                exchange.failed(PropylonError("The gateway failed."))
        else:
            super().request_complete()

    # -- Downstream, for the exchange ------------------------------------------------------------

    def date_headers(self) -> list[tuple[bytes, bytes]]:
        return self.server_state.default_headers

    def exchange_done(self, exchange: Exchange) -> None:
        if self._exchange is exchange:
            self._exchange = self._exchange_head = None
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def replay(self, exchange: Exchange) -> None:
        """Start the ASGI app on the exchange's request, body and all, as uvicorn would have."""
        assert self._exchange is exchange
        assert self._exchange_head is not None
        headers, url = self._exchange_head
        self._exchange = self._exchange_head = None
        # The scope uvicorn would have made for it (the parser may be in a next request by now).
        saved = self.url, self.headers, self.expect_100_continue, self.scope
        self.url, self.headers, self.expect_100_continue = url, headers, False
        self._to_the_app({CHOSEN: exchange.chosen})
        scope = self.scope
        self.url, self.headers, self.expect_100_continue, self.scope = saved
        parsed = httptools.parse_url(url)
        scope["method"] = exchange.method
        scope["path"] = self.root_path + parsed.path.decode("latin-1")  # not %-encoded
        scope["raw_path"] = self.root_path.encode() + parsed.path
        scope["query_string"] = parsed.query or b""
        cycle = RequestResponseCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=exchange.keep_alive,
            on_response=self.on_response_complete,
        )
        cycle.body = bytearray(exchange.request_body())
        cycle.more_body = False
        cycle.message_event.set()  # the body is all there: the app's first receive() gets it
        if self.cycle is exchange:  # type: ignore[comparison-overlap]
            self.cycle = cycle
        # else a request pipelined behind it holds self.cycle and waits in self.pipeline.
        self._start_asgi_task(cycle, self.app)

    def request_timed_out(self) -> None:
        exchange = self._exchange
        if exchange is not None and self.cycle is exchange:  # type: ignore[comparison-overlap]
            # Its body stopped coming: nothing went to an instance yet.
            error = self._timeout_error("body")
            self.answer_and_close(error)
            exchange.abandon(error.status, error.code)
        else:
            super().request_timed_out()

    # -- the client's connection -----------------------------------------------------------------

    def connection_lost(self, exc: Exception | None) -> None:
        exchange = self._exchange
        if exchange is not None and not exchange.response_complete:
            exchange.client_gone()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._exchange is not None:
            self._exchange.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._exchange is not None:
            self._exchange.resume()
