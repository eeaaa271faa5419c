"""Form bodies for ``AMLRequest.form`` / ``AMLRequest.files``: URL-encoded and multipart.

Only ``@rawhttp`` scripts that read uploads (Azure's binary-payload samples call
``request.files.getlist("file")``) pay for this; python-multipart is imported on first use.
Example::

    form, files = parse_form(b"a=1&b=2", "application/x-www-form-urlencoded")
    form.get("a")   # '1'
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from propylon.inference.datastructures import FileStorage, Headers, MultiDict

__all__ = ["parse_form"]

FormData = tuple[MultiDict[str], MultiDict[FileStorage]]


def parse_form(body: bytes, content_type: str | None) -> FormData:
    """Split a request body into text fields and uploaded files; anything else yields neither.

    A malformed multipart body raises ``ValueError`` (the caller decides what a client sees).
    """
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype == "application/x-www-form-urlencoded":
        pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        return MultiDict(pairs), MultiDict()
    if mimetype == "multipart/form-data" and content_type is not None:
        return _parse_multipart(body, content_type)
    return MultiDict(), MultiDict()


class _Part:
    __slots__ = ("chunks", "header_field", "header_value", "headers")

    def __init__(self) -> None:
        self.headers = Headers()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.chunks: list[bytes] = []


def _parse_multipart(body: bytes, content_type: str) -> FormData:
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ValueError("multipart/form-data body without a boundary parameter")

    parts: list[_Part] = []

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        parts[-1].header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        parts[-1].header_value += data[start:end]

    def on_header_end() -> None:
        part = parts[-1]
        # Kept as latin-1 so every byte survives; names and filenames are decoded as UTF-8 below
        # (RFC 7578 §4.2: that is what browsers send, whatever RFC 7230 says about header bytes).
        part.headers.add(part.header_field.decode("latin-1"), part.header_value.decode("latin-1"))
        part.header_field.clear()
        part.header_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise ValueError(f"malformed multipart/form-data body: {exc}") from None

    fields: list[tuple[str, str]] = []
    files: list[tuple[str, FileStorage]] = []
    for part in parts:
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        data = b"".join(part.chunks)
        if b"filename" in disposition:
            upload = FileStorage(
                data,
                filename=disposition[b"filename"].decode("utf-8", "replace"),
                name=name,
                content_type=part.headers.get("content-type"),
                headers=part.headers,
            )
            files.append((name, upload))
        else:
            fields.append((name, data.decode("utf-8", "replace")))
    return MultiDict(fields), MultiDict(files)
