"""Settings of a Propylon server: where state lives, where it listens, which roles it plays.

Read once at start from the command line and the environment (``PROPYLON_*``); nothing is read at
import time. Example::

    settings = Settings.from_env(data_dir=Path("/srv/propylon"), port=8080)
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from propylon.errors import ConfigurationError

__all__ = ["Role", "Settings", "node_name", "parse_duration", "parse_size"]


@functools.cache
def node_name() -> str:
    """This machine's name. An instance set records it next to an instance's Unix socket, which
    only a gateway on the same machine can reach."""
    return socket.gethostname()


_DURATION = re.compile(r"^(\d+(?:\.\d*)?)\s*([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, name: str) -> float:
    """Seconds in ``text``: a number with an optional unit ``s``, ``m``, ``h`` or ``d``.

    ``name`` says where the text came from, for the error. Example::

        parse_duration("7d", "PROPYLON_ENV_RETENTION")   # 604800.0
    """
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ConfigurationError(
            f"{name} must be a duration such as 7d, 12h, 30m or 90 (seconds), not {text!r}."
        )
    return float(match[1]) * _SECONDS[match[2]]


_SIZE = re.compile(r"^(\d+)\s*([kmg]?)i?b?$")
_BYTES = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(text: str, name: str) -> int:
    """Bytes in ``text``: a whole number with an optional unit ``KB``, ``MB`` or ``GB`` (powers of
    1024; ``KiB``… and a bare ``k``/``m``/``g`` mean the same). Example::

        parse_size("64MB", "PROPYLON_TRAFFIC_LOG_SIZE")   # 67108864
    """
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise ConfigurationError(
            f"{name} must be a size such as 64MB, 1GB, 512KB or 1000000 (bytes), not {text!r}."
        )
    return int(match[1]) * _BYTES[match[2]]


class Role(StrEnum):
    """Which planes one server process serves (DESIGN: control and gateway scale apart)."""

    ALL = "all"
    CONTROL = "control"
    GATEWAY = "gateway"

    @property
    def serves_control(self) -> bool:
        return self in (Role.ALL, Role.CONTROL)

    @property
    def serves_gateway(self) -> bool:
        return self in (Role.ALL, Role.GATEWAY)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    gateway_port: int = 8081
    role: Role = Role.ALL
    tls: bool = True
    database_url: str | None = None
    master_key: str | None = field(default=None, repr=False)
    public_host: str | None = None
    # Replicas behind one address share these, so tokens, issuers and scoring URIs agree.
    control_url: str | None = None
    gateway_url: str | None = None
    runtime: str = "local"
    ray_address: str | None = None
    log_level: str = "info"
    # How long a built deployment environment may go unused before it is deleted; 0 keeps all.
    environment_retention: float = 7 * 86400.0
    # An endpoint's traffic log is rotated at this size (0: never); the newest file and
    # ``traffic_log_backups`` rotated ones are kept.
    traffic_log_size: int = 64 * 2**20
    traffic_log_backups: int = 4
    # Seconds a client may take to send a request's head, or stay silent in its body (0: no
    # limit); see propylon.server.protocol.
    client_timeout: float = 60.0

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ``PROPYLON_*`` variables, then apply explicit overrides."""
        env = os.environ
        data_dir = Path(env.get("PROPYLON_DATA_DIR") or ".propylon")
        base = cls(
            data_dir=data_dir,
            database_url=env.get("PROPYLON_DATABASE_URL") or None,
            master_key=env.get("PROPYLON_MASTER_KEY") or None,
            public_host=env.get("PROPYLON_PUBLIC_HOST") or None,
            control_url=(env.get("PROPYLON_CONTROL_URL") or "").rstrip("/") or None,
            gateway_url=(env.get("PROPYLON_GATEWAY_URL") or "").rstrip("/") or None,
            log_level=env.get("PROPYLON_LOG_LEVEL", "info"),
        )
        if retention := env.get("PROPYLON_ENV_RETENTION"):
            base = replace(
                base, environment_retention=parse_duration(retention, "PROPYLON_ENV_RETENTION")
            )
        if timeout := env.get("PROPYLON_CLIENT_TIMEOUT"):
            base = replace(base, client_timeout=parse_duration(timeout, "PROPYLON_CLIENT_TIMEOUT"))
        if size := env.get("PROPYLON_TRAFFIC_LOG_SIZE"):
            base = replace(base, traffic_log_size=parse_size(size, "PROPYLON_TRAFFIC_LOG_SIZE"))
        if backups := env.get("PROPYLON_TRAFFIC_LOG_BACKUPS"):
            if not backups.strip().isdigit():
                raise ConfigurationError(
                    f"PROPYLON_TRAFFIC_LOG_BACKUPS must be a whole number, not {backups!r}."
                )
            base = replace(base, traffic_log_backups=int(backups))
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = replace(base, **given)  # type: ignore[arg-type]
        return settings.validated()

    def validated(self) -> Settings:
        if self.runtime not in ("local", "ray"):
            raise ConfigurationError(f"--runtime must be local or ray, not {self.runtime!r}.")
        for name, port in (("--port", self.port), ("--gateway-port", self.gateway_port)):
            if not 0 <= port <= 65535:
                raise ConfigurationError(f"{name} {port} is not a TCP port (0-65535).")
        if self.environment_retention < 0:
            raise ConfigurationError("PROPYLON_ENV_RETENTION must not be negative.")
        if self.client_timeout < 0:
            raise ConfigurationError("PROPYLON_CLIENT_TIMEOUT must not be negative.")
        if self.role is Role.ALL and self.port == self.gateway_port and self.port != 0:
            raise ConfigurationError("--port and --gateway-port must differ.")
        if self.database_url is not None and not self.database_url.startswith(
            ("sqlite", "postgresql")
        ):
            raise ConfigurationError(
                "PROPYLON_DATABASE_URL must start with sqlite:// or postgresql+psycopg://, "
                f"not {self.database_url.split(':', 1)[0]!r}."
            )
        return replace(self, data_dir=self.data_dir.expanduser().resolve())

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def advertised_host(self) -> str:
        """The host clients use in URLs: the public host, else the bind address."""
        if self.public_host:
            return self.public_host
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104

    @property
    def advertised_control_url(self) -> str:
        """The control plane (and identity provider) URL clients use; the token issuer's base."""
        host = self.advertised_host
        return self.control_url or f"{self.scheme}://{host}:{self.port}"

    @property
    def advertised_gateway_url(self) -> str:
        """The gateway URL in every endpoint's ``scoringUri``."""
        host = self.advertised_host
        return self.gateway_url or f"{self.scheme}://{host}:{self.gateway_port}"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'propylon.db'}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"
