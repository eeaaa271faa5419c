"""The Werkzeug-shaped containers that scoring scripts reach through ``AMLRequest``/``AMLResponse``.

Azure's inference server hands ``@rawhttp`` scripts a Flask request and accepts Flask responses, so
scripts written for it call ``request.headers.get(...)``, ``request.args.getlist(...)``,
``request.files["file"].read()`` and ``response.headers.add(...)``. These classes give the same
calls without Flask on the serving path. Example::

    headers = Headers([("Content-Type", "application/json")])
    headers.get("content-type")          # 'application/json'
    args = MultiDict([("a", "1"), ("a", "2")])
    args.getlist("a"), args.get("a", type=int)   # (['1', '2'], 1)
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar, overload

__all__ = ["FileStorage", "Headers", "MultiDict"]

T = TypeVar("T")
V = TypeVar("V")


class MultiDict(Generic[V]):
    """Keys that may repeat (query strings, form fields); item access returns the first value."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        self._items: list[tuple[str, V]] = list(items)

    @overload
    def get(self, key: str) -> V | None: ...
    @overload
    def get(self, key: str, default: V) -> V: ...
    @overload
    def get(self, key: str, default: T | None = None, *, type: Callable[[V], T]) -> T | None: ...

    def get(self, key: str, default: Any = None, type: Callable[[V], Any] | None = None) -> Any:
        """The first value for ``key``, converted by ``type``; ``default`` if absent or bad."""
        for name, value in self._items:
            if name == key:
                if type is None:
                    return value
                try:
                    return type(value)
                except (ValueError, TypeError):
                    return default
        return default

    def getlist(self, key: str, type: Callable[[V], Any] | None = None) -> list[Any]:
        """Every value for ``key`` in order; those ``type`` cannot convert are left out."""
        values: list[Any] = []
        for name, value in self._items:
            if name != key:
                continue
            if type is None:
                values.append(value)
                continue
            try:
                values.append(type(value))
            except (ValueError, TypeError):
                continue
        return values

    def __getitem__(self, key: str) -> V:
        for name, value in self._items:
            if name == key:
                return value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return any(name == key for name, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def keys(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self._items))

    def values(self) -> list[V]:
        return [self[key] for key in self.keys()]

    def items(self, multi: bool = False) -> list[tuple[str, V]]:
        """First value per key, or every pair with ``multi=True`` (Werkzeug's signature)."""
        if multi:
            return list(self._items)
        return [(key, self[key]) for key in self.keys()]

    def lists(self) -> list[tuple[str, list[V]]]:
        return [(key, self.getlist(key)) for key in self.keys()]

    def to_dict(self, flat: bool = True) -> dict[str, Any]:
        if flat:
            return dict(self.items())
        return dict(self.lists())


class Headers:
    """Case-insensitive, multi-valued HTTP headers that keep their order and spelling.

    Iterating yields ``(name, value)`` pairs, as Werkzeug's ``Headers`` does, and ``dict(headers)``
    keeps the last value of each name.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | dict[str, str] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        if isinstance(items, dict):
            self._items.extend((str(k), str(v)) for k, v in items.items())
        elif items is not None:
            self._items.extend((str(k), str(v)) for k, v in items)

    @overload
    def get(self, key: str) -> str | None: ...
    @overload
    def get(self, key: str, default: str) -> str: ...
    @overload
    def get(self, key: str, default: T | None = None, *, type: Callable[[str], T]) -> T | None: ...

    def get(self, key: str, default: Any = None, type: Callable[[str], Any] | None = None) -> Any:
        lowered = key.lower()
        for name, value in self._items:
            if name.lower() == lowered:
                if type is None:
                    return value
                try:
                    return type(value)
                except (ValueError, TypeError):
                    return default
        return default

    def getlist(self, key: str) -> list[str]:
        lowered = key.lower()
        return [value for name, value in self._items if name.lower() == lowered]

    get_all = getlist

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: object) -> None:
        self.set(key, value)

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def keys(self) -> list[str]:
        return [name for name, _ in self._items]

    def values(self) -> list[str]:
        return [value for _, value in self._items]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def set(self, key: str, value: object) -> None:
        """Replace every value of ``key`` with ``value`` (in the place of the first one)."""
        lowered = key.lower()
        kept: list[tuple[str, str]] = []
        placed = False
        for name, old in self._items:
            if name.lower() != lowered:
                kept.append((name, old))
            elif not placed:
                kept.append((key, str(value)))
                placed = True
        if not placed:
            kept.append((key, str(value)))
        self._items = kept

    def add(self, key: str, value: object) -> None:
        self._items.append((key, str(value)))

    add_header = add

    def remove(self, key: str) -> None:
        lowered = key.lower()
        self._items = [(name, value) for name, value in self._items if name.lower() != lowered]

    def setdefault(self, key: str, default: object) -> str:
        current = self.get(key)
        if current is None:
            self.add(key, default)
            return str(default)
        return current

    def to_wsgi_list(self) -> list[tuple[str, str]]:
        return list(self._items)


class FileStorage:
    """One uploaded file of a ``multipart/form-data`` body (Werkzeug's ``FileStorage`` calls)."""

    def __init__(
        self,
        data: bytes,
        *,
        filename: str | None,
        name: str,
        content_type: str | None,
        headers: Headers | None = None,
    ) -> None:
        self.stream: IO[bytes] = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type
        self.headers = headers if headers is not None else Headers()

    @property
    def mimetype(self) -> str:
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def content_length(self) -> int:
        return len(self.stream.getbuffer()) if isinstance(self.stream, io.BytesIO) else 0

    def read(self, size: int = -1) -> bytes:
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def save(self, dst: str | Path | IO[bytes], buffer_size: int = 16384) -> None:
        """Write the file to a path or a binary file object, as ``FileStorage.save`` does."""
        if isinstance(dst, str | Path):
            with Path(dst).open("wb") as out:
                shutil.copyfileobj(self.stream, out, buffer_size)
        else:
            shutil.copyfileobj(self.stream, dst, buffer_size)

    def __bool__(self) -> bool:
        return bool(self.filename)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.filename!r} ({self.content_type!r})>"
