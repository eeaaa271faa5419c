"""``AMLRequest`` and ``@rawhttp``: the raw-request mode of Azure's scoring-script contract.

A script that decorates ``run`` with ``@rawhttp`` receives the whole HTTP request instead of the
body text. Azure passes a Flask request; this class answers the same calls (``method``,
``headers``, ``args``, ``get_data()``, ``get_json()``, ``full_path``, ``form``, ``files``) from a
body that the server has already read. Scripts import it through the
``azureml.contrib.services.aml_request`` module that :mod:`propylon.inference.shims` provides.
Example score.py::

    from azureml.contrib.services.aml_request import AMLRequest, rawhttp

    @rawhttp
    def run(request: AMLRequest):
        if request.method != "POST":
            return AMLResponse("POST only", 405)
        return {"n": len(request.get_json()["data"]), "mode": request.args.get("mode")}
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from propylon.inference.datastructures import FileStorage, Headers, MultiDict
from propylon.inference.forms import parse_form

__all__ = ["AMLRequest", "is_rawhttp", "rawhttp"]

F = TypeVar("F", bound=Callable[..., Any])

_RAWHTTP_MARK = "__aml_rawhttp__"


def rawhttp(func: F) -> F:
    """Ask the server to call ``run(request)`` with the :class:`AMLRequest` itself."""
    setattr(func, _RAWHTTP_MARK, True)
    return func


def is_rawhttp(func: Callable[..., Any]) -> bool:
    """Whether ``func``, or a function it wraps (``functools.wraps``), was marked ``@rawhttp``."""
    seen: set[int] = set()
    current: Any = func
    while current is not None and id(current) not in seen:
        if getattr(current, _RAWHTTP_MARK, False) is True:
            return True
        seen.add(id(current))
        current = getattr(current, "__wrapped__", None)
    return False


class AMLRequest:
    """One HTTP request as a Flask-compatible object; the body is already in memory.

    Headers come either as ``headers`` (name, value) pairs or, from the server, as the ASGI
    ``raw_headers`` byte pairs, decoded only if the script looks at them.
    """

    def __init__(
        self,
        *,
        method: str,
        path: str,
        query_string: bytes = b"",
        headers: Headers | Iterable[tuple[str, str]] = (),
        raw_headers: Iterable[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        scheme: str = "http",
        host: str | None = None,
        remote_addr: str | None = None,
        root_path: str = "",
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.root_path = root_path
        self.query_string = query_string
        self._headers = headers
        self._raw_headers = raw_headers
        self.scheme = scheme
        self.remote_addr = remote_addr
        self._host = host
        self._body = body

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r} [{self.method}]>"

    @cached_property
    def headers(self) -> Headers:
        """The request headers; names spelled in title case, as Werkzeug's WSGI headers are."""
        if self._raw_headers is not None:
            # Built on first use: most scripts never look, and the server reads what it needs.
            return Headers(
                (name.decode("latin-1").title(), value.decode("latin-1"))
                for name, value in self._raw_headers
            )
        if isinstance(self._headers, Headers):
            return self._headers
        return Headers(self._headers)

    # -- where the request went -------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.headers.get("host") or self._host or "localhost"

    @property
    def full_path(self) -> str:
        """Path and query, always with the ``?`` (as Werkzeug renders it)."""
        return f"{self.path}?{self.query_string.decode('latin-1')}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.root_path}{self.path}"

    @property
    def url(self) -> str:
        query = self.query_string.decode("latin-1")
        return f"{self.base_url}?{query}" if query else self.base_url

    @cached_property
    def args(self) -> MultiDict[str]:
        """Query-string parameters, repeated names kept in order."""
        return MultiDict(parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True))

    # -- what it carries --------------------------------------------------------------------

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        return self.headers.get("content-length", type=int)

    @property
    def is_json(self) -> bool:
        mimetype = self.mimetype
        return mimetype == "application/json" or (
            mimetype.startswith("application/") and mimetype.endswith("+json")
        )

    def get_data(
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> Any:
        """The raw body: ``bytes``, or with ``as_text`` a ``str`` (UTF-8, bad bytes replaced)."""
        del cache, parse_form_data  # the body is always held in memory
        if as_text:
            return self._body.decode("utf-8", "replace")
        return self._body

    @property
    def data(self) -> bytes:
        return self._body

    @property
    def stream(self) -> io.BytesIO:
        return io.BytesIO(self._body)

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        """The body parsed as JSON, as Flask does it.

        Without ``force`` the Content-Type must be JSON; failures raise ``ValueError`` unless
        ``silent``, which returns ``None`` instead.
        """
        del cache
        if not (force or self.is_json):
            if silent:
                return None
            raise ValueError(
                "Did not attempt to load JSON data because the request Content-Type was not "
                "'application/json'."
            )
        try:
            return json.loads(self._body)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json()

    @cached_property
    def _form_data(self) -> tuple[MultiDict[str], MultiDict[FileStorage]]:
        return parse_form(self._body, self.content_type)

    @property
    def form(self) -> MultiDict[str]:
        """Fields of a URL-encoded or multipart body."""
        return self._form_data[0]

    @property
    def files(self) -> MultiDict[FileStorage]:
        """Uploaded files of a multipart body, by field name."""
        return self._form_data[1]

    @property
    def values(self) -> MultiDict[str]:
        """Query arguments followed by form fields."""
        return MultiDict([*self.args.items(multi=True), *self.form.items(multi=True)])
