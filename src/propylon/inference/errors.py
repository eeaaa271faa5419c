"""The inference server's errors, on the project's one tree (:mod:`propylon.errors`).

Inside an instance, every error a client sees is rendered the way Azure's inference server renders
it, ``{"message": "<text>"}`` with the error's status (the gateway wraps non-2xx answers in its own
ARM error body). Errors of the scoring script itself never reach a client: they stop the server.

::

    PropylonError
    ├── BadRequest (400)             body is not UTF-8 / not the JSON a decorated run() needs
    ├── NotFound (404)               unknown path; swagger or a model route the script lacks
    ├── MethodNotAllowed (405)       carries Allow
    ├── UnsupportedMediaType (415)   decorated run() without Content-Type: application/json
    ├── HeaderTooLarge (431)         request-id headers over 100 characters
    ├── RunFailed (500)              run() raised; the message is the exception's text
    ├── ScoringTimeout (500)         run() exceeded SCORING_TIMEOUT_MS
    └── ServiceUnavailable (503)     init() has not finished
    ScriptError                      score.py cannot be imported, lacks init/run, or init() raised
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from propylon.errors import BadRequest, NotFound, PropylonError, ServiceUnavailable

__all__ = [
    "BadRequest",
    "HeaderTooLarge",
    "MethodNotAllowed",
    "NotFound",
    "RunFailed",
    "ScoringTimeout",
    "ScriptError",
    "ServiceUnavailable",
    "UnsupportedMediaType",
]


class MethodNotAllowed(PropylonError):
    status = 405
    code = "MethodNotAllowed"

    def __init__(self, allowed: Iterable[str], **kwargs: Any) -> None:
        super().__init__("Method not allowed", **kwargs)
        self.headers.setdefault("Allow", ", ".join(sorted(allowed)))


class UnsupportedMediaType(PropylonError):
    status = 415
    code = "UnsupportedMediaType"


class HeaderTooLarge(PropylonError):
    status = 431
    code = "RequestHeaderFieldsTooLarge"


class RunFailed(PropylonError):
    """The scoring script raised while answering; the traceback goes to the log, not the client."""

    status = 500
    code = "ModelError"


class ScoringTimeout(PropylonError):
    status = 500
    code = "ScoringTimeout"


class ScriptError(Exception):
    """The scoring script cannot serve: it failed to import, lacks ``init``/``run``, or ``init()``
    raised. The server logs it with the cause's traceback and exits with status 3 (Azure's code).
    """
