"""Structured logs of an instance: one JSON object per line on stderr, tagged with the request id.

The runtime collects an instance's stderr for ``get-logs``; one line per event keeps that
machine-readable. The scoring script's own ``logging`` calls go through the same handler, and a
line logged while a request is being served (also from the worker thread running ``run()``)
carries that request's ``request_id``.

Lines are written by a background thread (:class:`BackgroundHandler`), several per ``write``:
the event loop never waits on stderr, which at one access line per request costs more than the
rest of serving a small request. Example line (the keys of the server's own log lines)::

    {"event": "POST /score 200", "level": "info", "logger": "propylon.inference.access",
     "timestamp": "2026-08-01T12:00:00.123456Z", "request_id": "6f1c…", "status": 200,
     "duration_ms": 1.92}
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import queue
import sys
import threading
import time
from typing import IO, Any

__all__ = ["BackgroundHandler", "JsonFormatter", "configure_logging", "request_id"]

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "propylon_inference_request_id", default=None
)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged as a field.
_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "color_message", "taskName"}


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _timestamp(created: float) -> str:
    """ISO 8601 UTC with microseconds, as structlog's TimeStamper(fmt="iso", utc=True) writes it."""
    whole = int(created)
    return f"{_second(whole)}.{int((created - whole) * 1_000_000):06d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its ``extra`` fields and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        # The same keys as the server's structlog lines (propylon.server.logs), so one reader
        # understands the logs of every part.
        entry: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": _timestamp(record.created),
        }
        # Stamped by BackgroundHandler when the record was made; else the current request's.
        current = record.__dict__.get("request_id") or request_id.get()
        if current is not None:
            entry["request_id"] = current
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class BackgroundHandler(logging.Handler):
    """Queues records for a writer thread that formats them and writes them in batches.

    What depends on the moment of logging (the message arguments, the request id) is fixed when
    the record is queued. ``flush()`` waits until everything queued so far is written; ``close()``
    (called by ``logging.shutdown`` at exit) also stops the thread.
    """

    _BATCH = 4096
    _GATHER_SECONDS = 0.05

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream
        self._queue: queue.SimpleQueue[logging.LogRecord | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._writer = threading.Thread(target=self._write, name="log-writer", daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        record.msg, record.args = record.message, None
        current = record.__dict__.get("request_id") or request_id.get()
        if current is not None:
            record.request_id = current
        self._queue.put(record)

    def flush(self) -> None:
        if self._writer.is_alive():
            written = threading.Event()
            self._queue.put(written)
            written.wait(5)

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join(5)
        super().close()

    def _write(self) -> None:
        formatter = self.formatter or JsonFormatter()
        while True:
            batch = [self._queue.get()]
            # Let a burst gather: under load the writer then wakes a few times a second, not once
            # per request, and stays out of the event loop's way (they share one GIL).
            time.sleep(self._GATHER_SECONDS)
            while len(batch) < self._BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for item in batch:
                if isinstance(item, logging.LogRecord):
                    try:
                        lines.append(formatter.format(item) + "\n")
                    except Exception:
                        self.handleError(item)
            if lines:
                try:
                    self._stream.write("".join(lines))
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stderr is gone (the supervisor closed it); nothing else can be told
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if None in batch:
                return


def configure_logging(level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Send every logger's records, the script's included, to ``stream`` (stderr) as JSON lines."""
    handler = BackgroundHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log is replaced by ours; its error log stays, as JSON.
    logging.getLogger("uvicorn.access").disabled = True
