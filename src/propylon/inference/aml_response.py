"""``AMLResponse``: what a scoring script returns when it wants its own status, headers or body.

Same constructor and behaviour as Azure's ``azureml.contrib.services.aml_response.AMLResponse``
(a Flask response there): ``message`` is the body (``str``, ``bytes``, or an iterable of chunks,
which is streamed); ``json_str=True`` serialises ``message`` as JSON; ``message=None`` gives
``{}``; a comma in a ``response_headers`` value makes several headers of that name. Example::

    from azureml.contrib.services.aml_response import AMLResponse

    def run(raw_data):
        if not raw_data:
            return AMLResponse("empty body", 422)
        resp = AMLResponse(render_png(raw_data), 200)
        resp.mimetype = "image/png"
        return resp
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any

from propylon.inference.datastructures import Headers

__all__ = ["AMLResponse"]

_DEFAULT_MIMETYPE = "text/html"  # Flask's Response default, which Azure's AMLResponse inherits


def _with_charset(mimetype: str) -> str:
    if mimetype.startswith("text/") or mimetype in ("application/xml", "application/javascript"):
        return f"{mimetype}; charset=utf-8"
    return mimetype


class AMLResponse:
    """An HTTP response chosen by ``run()``; the server sends its status and headers as they are."""

    def __init__(
        self,
        message: str | bytes | Iterable[str | bytes] | Any = None,
        status_code: int = 200,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
        run_function_failed: bool = False,
    ) -> None:
        self.status_code = int(status_code)
        self.headers = Headers()
        self.run_function_failed = run_function_failed
        self._body: bytes | None = None
        self._chunks: Iterable[str | bytes] | None = None
        if message is None or json_str:
            payload = {} if message is None else message
            self.set_data(json.dumps(payload))
            self.headers.set("Content-Type", "application/json")
        else:
            if isinstance(message, str | bytes | bytearray):
                self.set_data(message)
            else:
                self._chunks = message
            self.headers.set("Content-Type", _with_charset(_DEFAULT_MIMETYPE))
            if response_headers and any(k.lower() == "content-type" for k in response_headers):
                self.headers.remove("Content-Type")
        # Azure splits on commas to let a script send a header several times (RFC 9110 §5.3).
        for name, value in (response_headers or {}).items():
            for item in str(value).split(","):
                self.headers.add(name, item.strip())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} [{self.status_code}]>"

    @property
    def status(self) -> str:
        try:
            phrase = HTTPStatus(self.status_code).phrase
        except ValueError:
            phrase = "UNKNOWN"
        return f"{self.status_code} {phrase.upper()}"

    @property
    def content_type(self) -> str | None:
        return self.headers.get("Content-Type")

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers.set("Content-Type", value)

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @mimetype.setter
    def mimetype(self, value: str) -> None:
        self.headers.set("Content-Type", _with_charset(value))

    @property
    def is_streamed(self) -> bool:
        """True while the body is an iterable that has not been read yet."""
        return self._chunks is not None

    def iter_encoded(self) -> Iterator[bytes]:
        """The body as byte chunks, without reading an iterable body ahead of the client."""
        if self._chunks is None:
            yield self._body or b""
            return
        for chunk in self._chunks:
            yield chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)

    def get_data(self, as_text: bool = False) -> Any:
        if self._chunks is not None:
            self._body = b"".join(self.iter_encoded())
            self._chunks = None
        body = self._body or b""
        return body.decode("utf-8", "replace") if as_text else body

    def set_data(self, value: str | bytes | bytearray) -> None:
        self._body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        self._chunks = None

    @property
    def data(self) -> bytes:
        body: bytes = self.get_data()
        return body

    @data.setter
    def data(self, value: str | bytes) -> None:
        self.set_data(value)

    def get_json(self) -> Any:
        return json.loads(self.get_data())

    @property
    def json(self) -> Any:
        return self.get_json()
