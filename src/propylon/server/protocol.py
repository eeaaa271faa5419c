"""The HTTP/1.1 protocol both ports speak: uvicorn's httptools protocol, with a bound on the head.

httptools (llhttp) hands uvicorn a header field only once it has ended, joining its pieces in
memory until then, and neither uvicorn nor httptools limits that: one client sending a 64 MiB
header cost the server twice that. :class:`BoundedHeadProtocol` counts the bytes of a request head
(request line and header fields, up to the blank line) as they are read, feeds the parser no more
than :data:`MAX_REQUEST_HEAD_BYTES` of it, and refuses a longer one with **431** (RFC 6585 §5) in
the ARM error body. It then reads and drops what the client is still sending for a little while,
so that the client reads the answer rather than a connection reset (RFC 9112 §9.6), and closes.

The count costs a comparison and an addition per segment read and one attribute store where a
request's head and the request end; a segment that crosses the limit is parsed in two parts.
Where a request arrives pipelined behind another in the same segment, its count starts with the
next segment, so the parser may hold up to one more segment of it.

The same bound applies to what a chunked body sends after its last chunk (trailer fields, which
httptools buffers the same way) and to anything else that brings no body bytes: more than
:data:`MAX_REQUEST_HEAD_BYTES` read in a body without a byte of body (counted by segment, after it
is parsed: the parser may hold one segment more) cuts the connection, the request having been
handed to the app already.

It bounds how long a client may take to send a request, as nginx's ``client_header_timeout`` and
``client_body_timeout`` do: the head must arrive within :attr:`~BoundedHeadProtocol.client_timeout`
of its first byte (else **408** and close), and a body must never be silent that long (else 408,
when no answer has started, or the connection is cut; the app sees the client gone, and the
scope's state says why). Time in which the server itself does not read (flow control) does not
count. uvicorn's keep-alive timeout already covers a connection idle between requests; this covers
a client that starts a request and then trickles it, which would otherwise hold a connection (and,
on the gateway, a request) for as long as it likes. A request read in one segment costs two
attribute tests; a timer is armed only while a request is incomplete after a segment.

It also makes a stopping server's connections close for good: a TLS close waits for the client's
close_notify, which a client holding an idle keep-alive connection never sends, so uvicorn would
wait out its whole graceful-shutdown period; such a connection is aborted a second after its
close began.

Example::

    uvicorn.Config(app, loop="uvloop", http=BoundedHeadProtocol)
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from propylon.errors import ClientTimeout, HeaderFieldsTooLarge, PropylonError

__all__ = ["DEFAULT_CLIENT_TIMEOUT", "MAX_REQUEST_HEAD_BYTES", "BoundedHeadProtocol"]

log = logging.getLogger("propylon.server")

# 64 KiB for the request line and all header fields. Common servers allow less: nginx 4 x 8 KiB
# (large_client_header_buffers), Kestrel 32 KiB (MaxRequestHeadersTotalSize), Node.js 16 KiB, as
# does uvicorn's own h11 protocol; twice nginx's total leaves room for a few large Entra ID
# tokens and long query strings, and a refused client costs the server no more than that.
MAX_REQUEST_HEAD_BYTES: Final = 64 * 1024

# A refused connection is read and dropped until the client has been quiet this long (nginx's
# lingering_timeout is 5 s), and for this long at most (nginx's lingering_time: 30 s).
_LINGER_QUIET_SECONDS: Final = 2.0
_LINGER_MAX_SECONDS: Final = 30.0

# How long a connection closed because the server stops may take to finish closing (TLS:
# exchanging close_notify) before it is aborted.
_CLOSE_GRACE_SECONDS: Final = 1.0

_IN_BODY: Final = -1

# Seconds a client may take for a request's head, or stay silent within its body (nginx: 60 s
# each; Kestrel: 30 s for the headers). PROPYLON_CLIENT_TIMEOUT sets it; 0 turns it off.
DEFAULT_CLIENT_TIMEOUT: Final = 60.0


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol refusing a request head over :data:`MAX_REQUEST_HEAD_BYTES`
    and a request that comes too slowly (see the module docstring)."""

    client_timeout: ClassVar[float] = DEFAULT_CLIENT_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes of the current request's head read so far, or _IN_BODY from the end of its head
        # to the end of the request. A segment is counted before it is parsed; the parser's
        # callbacks then mark where the head and the request ended.
        self._head = 0
        # Bytes of the segments read in a body that brought no body byte (what a chunked body's
        # trailer fields, headers after its last chunk, are buffered from), and whether the
        # segment being parsed brought one.
        self._bodiless = 0
        self._body_seen = False
        self._stopping = False
        # While a request is incomplete after a segment: the timer, and the loop time its head
        # began (in a head) or its body was last read (in a body).
        self._read_timer: asyncio.TimerHandle | None = None
        self._read_since = 0.0
        self._read_paused = False  # the server was not reading when the timer last expired

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head < 0:
            self._body_seen = False
            super().data_received(data)
            if self._body_seen:
                self._bodiless = 0
            elif self._head < 0:  # still in that body
                self._bodiless += len(data)
                if self._bodiless > MAX_REQUEST_HEAD_BYTES:
                    self._refuse_trailers()
        elif head + len(data) <= MAX_REQUEST_HEAD_BYTES:
            self._head = head + len(data)
            super().data_received(data)
        else:
            self._receive_across_the_limit(data)
        if self._head != 0:
            self._incomplete()
        elif self._read_timer is not None:
            self._stop_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_read_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server is stopping: close this connection once its answer is sent, as uvicorn
        does — and make sure the close ends, see :meth:`_close_or_abort`."""
        self._stopping = True
        super().shutdown()
        self._close_or_abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._stopping:
            self._close_or_abort()

    def _close_or_abort(self) -> None:
        """Abort a closing connection still open :data:`_CLOSE_GRACE_SECONDS` later.

        Closing a TLS connection sends close_notify and waits for the client's, and a client
        that keeps an idle keep-alive connection in its pool never reads it: the connection
        would stay open, and uvicorn would wait for it the whole graceful-shutdown period
        before the server could stop. After the grace the answer has long been sent.
        """
        if self.transport.is_closing():
            self.loop.call_later(_CLOSE_GRACE_SECONDS, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self in self.connections:
            self.transport.abort()

    def on_headers_complete(self) -> None:
        self._head = _IN_BODY
        self.request_head_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self.request_body(body)

    def on_message_complete(self) -> None:
        self._head = 0
        self._bodiless = 0
        self.request_complete()

    # What a request's parts do once counted (uvicorn: start, feed and end the app's cycle);
    # the gateway port's protocol takes some requests itself (propylon.server.gateway_protocol).

    def request_head_complete(self) -> None:
        super().on_headers_complete()

    def request_body(self, body: bytes) -> None:
        super().on_body(body)

    def request_complete(self) -> None:
        super().on_message_complete()

    def request_timed_out(self) -> None:
        """The body of the request in progress was silent for :attr:`client_timeout`: 408 if its
        answer has not started (the app's ``receive`` then says the client is gone, and the
        scope's state holds :attr:`ClientTimeout.scope_key`), else the connection is cut."""
        cycle = self.cycle
        if cycle is None or cycle.response_started or cycle.response_complete:
            self.transport.abort()
            return
        state = cycle.scope.get("state")
        if state is not None:
            state[ClientTimeout.scope_key] = True
        cycle.disconnected = True
        cycle.message_event.set()
        self.answer_and_close(self._timeout_error("body"))

    def answer_and_close(self, error: PropylonError) -> None:
        """Write ``error`` as the answer to the request in progress, and close."""
        self._unset_keepalive_if_required()
        self.transport.write(self._error_answer(error))
        self.transport.close()

    # -- request timing --------------------------------------------------------------------------

    def _incomplete(self) -> None:
        """A segment left a request incomplete: start timing its head, or note a body read."""
        if self.parser is None or self.client_timeout <= 0 or self.transport.is_closing():
            self._stop_read_timer()
            return
        now = self.loop.time()
        if self._read_timer is None:
            self._read_since, self._read_paused = now, False
            self._read_timer = self.loop.call_at(now + self.client_timeout, self._read_expired)
        elif self._head < 0:
            self._read_since = now

    def _read_expired(self) -> None:
        self._read_timer = None
        if self.parser is None or self.transport.is_closing() or self._head == 0:
            return
        now = self.loop.time()
        # While the server does not read (flow control) the client is not late, nor before the
        # first read after that: the moment reading resumed is not recorded, so the client's
        # allowance starts again at the first expiry that sees reading on.
        paused, self._read_paused = self._read_paused, self.flow.read_paused
        if paused or self._read_paused:
            self._read_since = now
        if (
            paused
            or self._read_paused
            or (self._head < 0 and now - self._read_since < self.client_timeout)
        ):
            wake = self._read_since + self.client_timeout
            self._read_timer = self.loop.call_at(wake, self._read_expired)
            return
        log.warning(
            "request too slow, timed out",
            extra={
                "client": self.client,
                "part": "head" if self._head > 0 else "body",
                "timeout_s": self.client_timeout,
            },
        )
        if self._head > 0:
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self.transport.close()  # an earlier request's answer is still being written
            else:
                self.answer_and_close(self._timeout_error("head"))
        else:
            self.request_timed_out()

    def _stop_read_timer(self) -> None:
        timer, self._read_timer = self._read_timer, None
        if timer is not None:
            timer.cancel()

    def _timeout_error(self, part: str) -> ClientTimeout:
        if part == "head":
            return ClientTimeout(
                f"The request line and headers did not arrive within {self.client_timeout:g} s."
            )
        return ClientTimeout(
            "The request body stopped arriving: nothing was received for "
            f"{self.client_timeout:g} s."
        )

    def _error_answer(self, error: PropylonError) -> bytes:
        """``error`` as a whole HTTP/1.1 answer that closes the connection, in the ARM body."""
        body = json.dumps(error.body()).encode()
        answer = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            answer += (name, b": ", value, b"\r\n")
        answer += (
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
        return b"".join(answer)

    # -- refusals ----------------------------------------------------------------------------------

    def _refuse_trailers(self) -> None:
        """A body that stopped bringing body bytes yet keeps coming: trailer fields (or chunk
        extensions) past the head's limit. The request is already the app's, so no answer can
        be put in front of its own: the connection is cut."""
        log.warning(
            "request trailers over the limit refused",
            extra={"client": self.client, "limit": MAX_REQUEST_HEAD_BYTES},
        )
        self.transport.abort()

    def _receive_across_the_limit(self, data: bytes) -> None:
        """Parse up to the limit: a head still open there is refused, else the rest is parsed."""
        budget = MAX_REQUEST_HEAD_BYTES - self._head
        self._head = MAX_REQUEST_HEAD_BYTES
        super().data_received(data[:budget])
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # refused as malformed (400), or upgraded to a WebSocket
        if self._head == MAX_REQUEST_HEAD_BYTES:
            self._refuse()
        elif len(data) > budget and not self.parser.should_upgrade():
            self.data_received(data[budget:])

    def _refuse(self) -> None:
        log.warning(
            "request head over the limit refused",
            extra={"client": self.client, "limit": MAX_REQUEST_HEAD_BYTES},
        )
        self._unset_keepalive_if_required()
        if self.cycle is not None and not self.cycle.response_complete:
            # A request pipelined before this one is still being answered; a 431 now would come
            # before that answer, so the connection is closed instead.
            self.transport.close()
            return
        error = HeaderFieldsTooLarge(
            f"The request line and headers are longer than {MAX_REQUEST_HEAD_BYTES} bytes."
        )
        self.transport.write(self._error_answer(error))
        self._stop_read_timer()
        # From here on the connection is the lingerer's: the server no longer waits for it at
        # shutdown, and the parser, with the part of the head it holds, is let go now.
        self.connections.discard(self)
        self.parser = None  # type: ignore[assignment]
        self.transport.set_protocol(_Lingering(self.transport, self.loop))


class _Lingering(asyncio.Protocol):
    """Reads and drops what a refused client still sends; closes once it stops or goes quiet."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._heard = loop.time()
        self._until = self._heard + _LINGER_MAX_SECONDS
        self._timer = loop.call_later(_LINGER_QUIET_SECONDS, self._check)

    def data_received(self, data: bytes) -> None:
        self._heard = self._loop.time()

    def eof_received(self) -> None:
        return None  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._until:
            self._transport.abort()  # it may not even be reading the answer
        elif now - self._heard >= _LINGER_QUIET_SECONDS:
            self._transport.close()
        else:
            wake = min(self._heard + _LINGER_QUIET_SECONDS, self._until)
            self._timer = self._loop.call_at(wake, self._check)
