"""The sign-in audit log: one JSON line per sign-in attempt in ``DATA_DIR/logs/signins.jsonl``.

Shaped after Entra's sign-in log: when, which tenant, which client (``appId``), which principal
(object id; the UPN typed for user sign-ins), how (grant type and client authentication
method), from where, for which resource, and the result with its OAuth error and a reason for
administrators. A :class:`SignInEvent` has no field that could hold a password, client secret,
assertion, refresh token or device code, so none can be written; the file is created 0600.

Example::

    audit = SignInAudit(settings.logs_dir / "signins.jsonl")
    audit.record(SignInEvent(tenant_id=tid, grant_type="client_credentials", client_id=cid,
                             success=False, error="invalid_client", reason="wrong secret"))
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["SignInAudit", "SignInEvent"]

log = logging.getLogger("propylon.identity.audit")


@dataclass(frozen=True)
class SignInEvent:
    """One sign-in attempt. Deliberately has no field for any credential."""

    tenant_id: str | None
    grant_type: str
    client_id: str | None
    success: bool
    principal_id: str | None = None
    username: str | None = None
    auth_method: str | None = None
    resource: str | None = None
    source_address: str | None = None
    error: str | None = None
    reason: str | None = None
    request_id: str | None = None


class SignInAudit:
    """Appends :class:`SignInEvent` lines; safe from several threads of one process.

    Each line is written with one ``write`` on an ``O_APPEND`` descriptor, so lines from
    several processes sharing the data dir do not interleave.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, event: SignInEvent) -> None:
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": "sign_in",
            "result": "success" if event.success else "failure",
            **{k: v for k, v in asdict(event).items() if v is not None and k != "success"},
        }
        data = (json.dumps(line, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, data)
                finally:
                    os.close(fd)
        except OSError as exc:
            # An audit failure must be seen, but must not turn a sign-in into a 500.
            log.error("cannot write the sign-in audit log", extra={"error": exc.strerror})

    def read(self) -> list[dict[str, object]]:
        """Every recorded event (for tests and ``propylon`` tooling)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
