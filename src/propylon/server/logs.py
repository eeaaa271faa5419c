"""Structured JSON logs for every part of the server, with the request id of the current request.

Configured once by ``propylon server`` (never at import time). Fields whose names suggest a
credential are replaced by ``"[redacted]"`` before rendering, as a second line of defence: code
must not log secrets in the first place.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

__all__ = ["configure_logging", "request_id_var"]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

_SENSITIVE = ("authorization", "secret", "password", "token", "key", "assertion", "cookie")
_ALLOWED = {"request_id", "key_type", "kid", "token_type", "auth_type"}


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name in list(event):
        lowered = name.lower()
        if lowered not in _ALLOWED and any(word in lowered for word in _SENSITIVE):
            event[name] = "[redacted]"
    return event


def _add_request_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def configure_logging(logs_dir: Path | None, level: str = "info") -> None:
    """Route stdlib and structlog records to JSON lines on stderr and ``logs_dir/server.log``."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _add_request_id,
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logs_dir is not None and _usable(logs_dir):
        handlers.append(
            logging.handlers.RotatingFileHandler(
                logs_dir / "server.log", maxBytes=20 * 2**20, backupCount=5
            )
        )
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Probes of instances would otherwise log one line per request through httpx.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # The server writes its own access log line with the request id; uvicorn's would repeat it.
    logging.getLogger("uvicorn.access").disabled = True


def _usable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return False  # the data dir check reports it with one clear line
    return True
