"""Azure's request-tracing headers, resolved and echoed as its inference server does (§4.5).

* ``x-request-id``: echoed, or a new UUID; the id every log line of the request carries;
* ``x-ms-client-request-id``: the client's own id, echoed (``x-ms-request-id`` stands in for it);
* ``x-ms-request-id``: the legacy id, ``x-ms-request-id`` or else the client's or the request's;
* ``TraceId``: Office services' tracing header, echoed.

Each id over 100 characters makes the request a ``431``. Example::

    ids = RequestIds.from_asgi([(b"x-request-id", b"abc")])
    ids.response_headers()   # [("x-request-id", "abc"), ("x-ms-request-id", "abc")]
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from propylon.inference.errors import HeaderTooLarge

__all__ = ["RequestIds"]

_LIMIT = 100
_NAMES = frozenset({b"x-request-id", b"x-ms-request-id", b"x-ms-client-request-id", b"traceid"})


@dataclass(frozen=True, slots=True)
class RequestIds:
    request_id: str
    legacy_client_request_id: str
    client_request_id: str
    trace_id: str | None

    @classmethod
    def from_asgi(cls, raw_headers: Iterable[tuple[bytes, bytes]]) -> RequestIds:
        """Read the ids from ASGI headers (lower-case names) in one pass."""
        found: dict[bytes, str] = {}
        for name, value in raw_headers:
            if name in _NAMES and name not in found:
                found[name] = value.decode("latin-1")
        request_id = found.get(b"x-request-id") or str(uuid.uuid4())
        client_request_id = found.get(b"x-ms-client-request-id", "")
        legacy = found.get(b"x-ms-request-id", "")
        return cls(
            request_id=request_id,
            legacy_client_request_id=legacy or client_request_id or request_id,
            client_request_id=client_request_id or legacy,
            trace_id=found.get(b"traceid"),
        )

    def check(self) -> None:
        """:class:`HeaderTooLarge` (431) with Azure's message when an id is too long."""
        if len(self.request_id) > _LIMIT:
            raise HeaderTooLarge(f"x-request-id must not exceed {_LIMIT} characters")
        if max(len(self.legacy_client_request_id), len(self.client_request_id)) > _LIMIT:
            raise HeaderTooLarge(
                f"x-ms-request-id and x-ms-client-request-id must not exceed {_LIMIT} characters"
            )

    def response_headers(self) -> list[tuple[str, str]]:
        echoed = [
            ("x-request-id", self.request_id[:_LIMIT]),
            ("x-ms-request-id", self.legacy_client_request_id[:_LIMIT]),
        ]
        if self.client_request_id:
            echoed.append(("x-ms-client-request-id", self.client_request_id[:_LIMIT]))
        if self.trace_id is not None:
            echoed.append(("TraceId", self.trace_id))
        return echoed
