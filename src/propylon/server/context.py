"""What one server process holds: settings, the store, and the services built on it.

Adapters (HTTP routes, the gateway, the runtime) receive this object; nothing reaches for globals.
Services that later parts add (token issuer, authorizer, runtime) are attached by
:func:`propylon.server.app.build_context`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from propylon.config import Settings
from propylon.server.bootstrap import Tenancy
from propylon.server.tls import TlsFiles
from propylon.store import ChangeFeed, Database, ResourceStore, Sealer, Vault

__all__ = ["ServerContext"]


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    sealer: Sealer
    vault: Vault
    resources: ResourceStore
    feed: ChangeFeed
    tenancy: Tenancy
    tls: TlsFiles | None
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    # Services registered by the parts (identity, authz, runtime, gateway) under their names.
    services: dict[str, Any] = field(default_factory=dict)
    # Coroutines run once the ports listen / after they stop accepting (in reverse order).
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def control_url(self) -> str:
        return self.settings.advertised_control_url

    @property
    def gateway_url(self) -> str:
        return self.settings.advertised_gateway_url
