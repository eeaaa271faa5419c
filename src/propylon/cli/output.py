"""Rendering results as ``az`` does: ``-o json|jsonc|table|tsv|yaml|yamlc|none`` and ``--query``.

``--query`` is JMESPath over the JSON result, applied before formatting. The formats follow
knack's (the framework under ``az``): ``json`` and ``yaml`` sort keys; ``tsv`` writes one line per
list item with a dict's values in key order, a nested list as its length and a nested dict as
nothing, ``None`` as ``None``, so ``-o tsv --query primaryKey`` prints the bare key; ``table``
shows the scalar fields of each item with headers in Title Case. Example::

    >>> render({"primaryKey": "k1", "secondaryKey": "k2"}, "tsv", "primaryKey")
    'k1\\n'
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import jmespath
import yaml
from rich.console import Console
from rich.json import JSON
from rich.syntax import Syntax

from propylon.errors import BadRequest

__all__ = ["OutputFormat", "TableTransform", "apply_query", "render"]

TableTransform = Callable[[Any], Any]


class OutputFormat(StrEnum):
    JSON = "json"
    JSONC = "jsonc"
    TABLE = "table"
    TSV = "tsv"
    YAML = "yaml"
    YAMLC = "yamlc"
    NONE = "none"


def apply_query(data: Any, query: str | None) -> Any:
    """Apply a JMESPath expression; a malformed one is a one-line error naming it."""
    if not query:
        return data
    try:
        return jmespath.search(query, data)
    except jmespath.exceptions.JMESPathError as exc:
        raise BadRequest(
            f"argument --query: invalid jmespath_type value: {query!r} ({exc})",
            code="InvalidQuery",
        ) from None


def render(
    data: Any,
    output: OutputFormat | str,
    query: str | None = None,
    *,
    table_transform: TableTransform | None = None,
    color: bool = False,
) -> str:
    """The text to print for ``data`` (empty when there is nothing to show)."""
    fmt = OutputFormat(output)
    if fmt is OutputFormat.NONE:
        return ""
    result = apply_query(data, query)
    if fmt is OutputFormat.TABLE and table_transform is not None and not query:
        result = table_transform(result)
    if fmt in (OutputFormat.JSONC, OutputFormat.YAMLC) and color:
        return _colored(result, fmt)
    return _WRITERS[fmt](result)


def _json(result: Any) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False, sort_keys=True, default=str) + "\n"


def _yaml(result: Any) -> str:
    plain = json.loads(json.dumps(result, default=str))
    return yaml.safe_dump(plain, sort_keys=True, allow_unicode=True)


def _colored(result: Any, fmt: OutputFormat) -> str:
    renderable: Any
    if fmt is OutputFormat.JSONC:
        renderable = JSON(
            json.dumps(result, ensure_ascii=False, sort_keys=True, default=str), indent=2
        )
    else:
        renderable = Syntax(_yaml(result), "yaml", background_color="default")
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard", width=200)
    console.print(renderable)
    return buffer.getvalue()


# --- tsv (knack's _TsvOutput) ----------------------------------------------------------------


def _tsv_cell(value: Any) -> str:
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return ""
    if isinstance(value, str):
        return value
    return str(value)


def _tsv(result: Any) -> str:
    if result is None:
        return ""
    rows = result if isinstance(result, list) else [result]
    lines = []
    for row in rows:
        if isinstance(row, dict):
            lines.append("\t".join(_tsv_cell(row[k]) for k in sorted(row)))
        elif isinstance(row, list):
            lines.append("\t".join(_tsv_cell(v) for v in row))
        else:
            lines.append(_tsv_cell(row))
    return "\n".join(lines) + "\n"


# --- table (knack's _TableOutput with its automatic columns) ------------------------------------


def _title(key: str) -> str:
    # "provisioningState" → "Provisioning State"; "AzureMLWorkspaceName" → "Azure ML Workspace Name"
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", key).replace("_", " ")
    return " ".join(word[:1].upper() + word[1:] for word in spaced.split())


def _table(result: Any) -> str:
    if result is None:
        return ""
    rows: Sequence[Any] = result if isinstance(result, list) else [result]
    if not rows:
        return ""
    if not all(isinstance(row, dict) for row in rows):
        return "\n".join(_tsv_cell(row) if not isinstance(row, str) else row for row in rows) + "\n"
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if not isinstance(value, dict | list) and key not in columns:
                columns.append(key)
    if not columns:
        return ""
    cells = [[_table_cell(row.get(c)) for c in columns] for row in rows]
    headers = [_title(c) for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    return "\n".join(lines) + "\n"


def _table_cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value)


_WRITERS: dict[OutputFormat, Callable[[Any], str]] = {
    OutputFormat.JSON: _json,
    OutputFormat.JSONC: _json,
    OutputFormat.TSV: _tsv,
    OutputFormat.TABLE: _table,
    OutputFormat.YAML: _yaml,
    OutputFormat.YAMLC: _yaml,
}
