"""The routing table: an immutable snapshot of everything the gateway needs to answer a request.

Built from the store — endpoints (``onlineendpoints``), their deployments, the ready instances the
runtime publishes (``instancesets``), the endpoint keys in the vault and the workspace's
``disableLocalAuth`` — and swapped atomically: a request reads ``tables.current`` once and works
on that snapshot to the end, whatever changes meanwhile.

:class:`RoutingTables` follows the change feed (DESIGN: freshness within a second). A batch of
changes reloads only the endpoints it touches; anything it cannot attribute reloads the whole
table. When the store cannot be read the last snapshot keeps serving and the table is marked
stale, and :meth:`RoutingTables.refresh` (called every second by the gateway) retries.

Example::

    tables = RoutingTables(TableLoader(ctx.resources, ctx.vault))
    tables.reload()
    ctx.feed.subscribe(tables.on_changes)
    endpoint = tables.current.endpoints.get("my-endpoint")
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import accumulate
from types import MappingProxyType
from typing import Any, Protocol
from urllib.parse import urlsplit

from propylon.config import node_name
from propylon.store import RESET, ResourceStore, Vault, canonical

__all__ = [
    "AuthMode",
    "Deployment",
    "Endpoint",
    "Instance",
    "RequestLimits",
    "RoutingTable",
    "RoutingTables",
    "TableLoader",
    "Weights",
    "endpoint_key_name",
    "parse_duration",
]

log = logging.getLogger("propylon.gateway.table")

ENDPOINT_TYPE = "onlineendpoints"
DEPLOYMENT_TYPE = "deployments"
INSTANCE_SET_TYPE = "instancesets"
WORKSPACE_TYPE = "workspaces"
SECRET_KIND = "secret"  # noqa: S105 — the change feed's kind for vault rows, not a secret


class AuthMode(StrEnum):
    """``properties.authMode`` (reference §5.1), with the names the traffic log's AuthType uses."""

    KEY = "Key"
    AML_TOKEN = "AMLToken"  # noqa: S105 — ARM's enum value, not a secret
    AAD_TOKEN = "AADToken"  # noqa: S105

    @classmethod
    def parse(cls, value: object) -> AuthMode:
        """ARM's value, case-insensitively; Azure's default is ``Key``. Unknown raises."""
        if value is None:
            return cls.KEY
        wanted = str(value).replace("_", "").lower()
        for mode in cls:
            if mode.value.lower() == wanted:
                return mode
        raise ValueError(f"unknown authMode {value!r}")


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """A deployment's ``requestSettings`` (Azure's defaults: 1, 5 s, 0.5 s)."""

    max_concurrent_requests_per_instance: int = 1
    request_timeout_s: float = 5.0
    max_queue_wait_s: float = 0.5


@dataclass(frozen=True, slots=True)
class Instance:
    """A ready instance: ``url`` (``http://host:port``) or a Unix socket ``uds``."""

    # Unique in the gateway, and new when an instance moves: "{deployment id}#{instance id}@{url}";
    # connection pools and concurrency counters are kept under it.
    key: str
    instance_id: str
    url: str
    uds: str | None
    max_concurrent: int

    @property
    def address(self) -> tuple[str, int] | str:
        """Where to connect: ``(host, port)`` or a socket path."""
        if self.uds:
            return self.uds
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    name: str
    limits: RequestLimits
    instances: tuple[Instance, ...]


@dataclass(frozen=True, slots=True)
class Weights:
    """Traffic percentages by deployment name, with the running sums a weighted pick needs."""

    names: tuple[str, ...] = ()
    cumulative: tuple[int, ...] = ()

    @classmethod
    def of(cls, percentages: Mapping[str, Any]) -> Weights:
        positive = sorted((name.lower(), int(p)) for name, p in percentages.items() if _pos(p))
        return cls(tuple(name for name, _ in positive), tuple(accumulate(p for _, p in positive)))

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str  # canonical (lower-case) ARM id
    arm_id: str  # as the client wrote it: the RBAC scope
    # The control plane's per-creation uid, which aml_tokens are bound to (None for an endpoint
    # stored before uids): a token of a deleted endpoint must not open its namesake.
    uid: str | None
    name: str
    workspace_id: str
    auth_mode: AuthMode
    keys: tuple[bytes, ...]
    local_auth_disabled: bool
    deployments: Mapping[str, Deployment]  # by lower-case name
    traffic: Weights
    mirror: Weights

    def deployment(self, name: str) -> Deployment | None:
        return self.deployments.get(name.lower())


@dataclass(frozen=True)
class RoutingTable:
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)  # by lower-case name

    def replace(self, reloaded: Mapping[str, Endpoint | None]) -> RoutingTable:
        """A new table with the endpoints of ``reloaded`` (by canonical id) replaced or gone."""
        by_name = {name: e for name, e in self.endpoints.items() if e.id not in reloaded}
        for endpoint in reloaded.values():
            if endpoint is not None:
                _add(by_name, endpoint)
        return RoutingTable(MappingProxyType(by_name))

    def instances(self) -> set[str]:
        return {
            i.key
            for e in self.endpoints.values()
            for d in e.deployments.values()
            for i in d.instances
        }


def endpoint_key_name(endpoint_id: str, which: str) -> str:
    """The vault name of an endpoint key: ``endpoint/{canonical id}/primary|secondary``."""
    return f"endpoint/{canonical(endpoint_id)}/{which}"


_DURATION = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)


def parse_duration(value: object, default: float) -> float:
    """Seconds of an ISO 8601 duration (``PT5S``, ``PT0.5S``, ``PT1M30S``); ``default`` if unset.

    A bare number is taken as milliseconds (the YAML's ``request_timeout_ms``).
    """
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return float(value) / 1000
    match = _DURATION.fullmatch(str(value).strip())
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"not an ISO 8601 duration: {value!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0.0) * 86400
        + parts.get("h", 0.0) * 3600
        + parts.get("m", 0.0) * 60
        + parts.get("s", 0.0)
    )


class ResourceRow(Protocol):
    id: str
    parent: str
    name: str
    body: dict[str, Any]


class TableLoader:
    """Reads endpoints from the store into :class:`Endpoint` snapshots (blocking I/O)."""

    def __init__(self, resources: ResourceStore, vault: Vault) -> None:
        self._resources = resources
        self._vault = vault

    def load_all(self) -> RoutingTable:
        rows = sorted(self._resources.list_type(ENDPOINT_TYPE), key=_created)
        by_name: dict[str, Endpoint] = {}
        for row in rows:
            endpoint = self._build(row)
            if endpoint is not None:
                _add(by_name, endpoint)
        return RoutingTable(MappingProxyType(by_name))

    def load(self, endpoint_id: str) -> Endpoint | None:
        row = self._resources.get(endpoint_id)
        return None if row is None else self._build(row)

    def _build(self, row: ResourceRow) -> Endpoint | None:
        props = row.body.get("properties") or {}
        try:
            auth_mode = AuthMode.parse(props.get("authMode"))
        except ValueError:
            log.warning("endpoint has an unknown authMode; not routed", extra={"endpoint": row.id})
            return None
        if str(props.get("provisioningState", "")).lower() == "deleting":
            return None
        workspace = self._resources.get(row.parent) if row.parent else None
        ws_props = (workspace.body.get("properties") or {}) if workspace else {}
        deployments: dict[str, Deployment] = {}
        for dep_row in self._resources.children(row.id, DEPLOYMENT_TYPE):
            deployment = self._deployment(dep_row)
            if deployment is not None:
                deployments[deployment.name.lower()] = deployment
        keys = tuple(
            value.encode()
            for which in ("primary", "secondary")
            if (value := self._key(row.id, which))
        )
        return Endpoint(
            id=canonical(row.id),
            arm_id=str(row.body.get("id") or row.id),
            uid=_uid(props),
            name=row.name,
            workspace_id=canonical(row.parent) if row.parent else "",
            auth_mode=auth_mode,
            keys=keys,
            local_auth_disabled=bool(ws_props.get("disableLocalAuth", False)),
            deployments=MappingProxyType(deployments),
            traffic=Weights.of(props.get("traffic") or {}),
            mirror=Weights.of(props.get("mirrorTraffic") or {}),
        )

    def _key(self, endpoint_id: str, which: str) -> str | None:
        value = self._vault.get(endpoint_key_name(endpoint_id, which))
        if value is None:  # tolerate a writer that joined the id without the doubled slash
            value = self._vault.get(f"endpoint{canonical(endpoint_id)}/{which}")
        return value

    def _deployment(self, row: ResourceRow) -> Deployment | None:
        settings = (row.body.get("properties") or {}).get("requestSettings") or {}
        try:
            configured = settings.get("maxConcurrentRequestsPerInstance")
            limits = RequestLimits(
                max_concurrent_requests_per_instance=max(1, int(configured or 1)),
                request_timeout_s=parse_duration(settings.get("requestTimeout"), 5.0),
                max_queue_wait_s=parse_duration(settings.get("maxQueueWait"), 0.5),
            )
        except (TypeError, ValueError):
            log.warning("deployment has bad requestSettings; not routed", extra={"id": row.id})
            return None
        instance_set = self._resources.get(f"{row.id}/instanceSets/current")
        published = (instance_set.body.get("instances") or []) if instance_set else []
        deployment_id = canonical(row.id)
        instances = tuple(
            instance
            for item in published
            if (instance := instance_entry(deployment_id, item, configured)) is not None
        )
        return Deployment(id=deployment_id, name=row.name, limits=limits, instances=instances)


def _uid(props: Mapping[str, Any]) -> str | None:
    """``properties.properties["propylon.endpointuid"]`` (see :mod:`propylon.control.endpoints`)."""
    uid = (props.get("properties") or {}).get("propylon.endpointuid")
    return uid if isinstance(uid, str) and uid else None


def instance_entry(deployment_id: str, item: Any, configured: Any) -> Instance | None:
    """An entry of an instance set (``{"instance_id", "url" and/or "uds", "max_concurrent"}``,
    and ``node``, the machine whose Unix socket ``uds`` is: it is used only on that machine)."""
    try:
        url, uds, node = item.get("url"), item.get("uds"), item.get("node")
        if uds and node and node != node_name():
            uds = None
        if not item.get("instance_id") or not (url or uds):
            raise ValueError("no instance_id or address")
        return Instance(
            # A restarted local instance keeps its socket and gets a new port: a new key.
            key=f"{deployment_id}#{item['instance_id']}@{url or uds}",
            instance_id=str(item["instance_id"]),
            url=str(url or ""),
            uds=uds or None,
            max_concurrent=max(1, int(configured or item.get("max_concurrent") or 1)),
        )
    except (AttributeError, TypeError, ValueError):
        log.warning("instance set entry ignored", extra={"deployment": deployment_id})
        return None


class RoutingTables:
    """The current :class:`RoutingTable` and how it follows the store; see the module docstring."""

    def __init__(self, loader: TableLoader) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self.current = RoutingTable()
        self.stale = True

    def reload(self) -> bool:
        """Rebuild the whole table; False (and the old table kept) when the store is away."""
        with self._lock:
            try:
                table = self._loader.load_all()
            except Exception as exc:  # the store's driver errors vary by backend
                self._lost(exc)
                return False
            self.current, self.stale = table, False
            return True

    def refresh(self) -> bool:
        """Retry a whole reload if an earlier one failed; True when the table is current."""
        return not self.stale or self.reload()

    def on_changes(self, changes: Sequence[Any]) -> None:
        """Change-feed subscriber (runs in the feed's worker thread)."""
        affected = self.affected(changes)
        if affected is None:
            self.reload()
            return
        if not affected:
            return
        with self._lock:
            try:
                reloaded = {eid: self._loader.load(eid) for eid in affected}
            except Exception as exc:
                self._lost(exc)
                return
            self.current = self.current.replace(reloaded)

    def affected(self, changes: Iterable[Any]) -> set[str] | None:
        """Canonical ids of the endpoints a batch of changes touches; None means all of them."""
        ids: set[str] = set()
        known = self.current.endpoints.values()
        for change in changes:
            kind, key = change.kind, canonical(change.key)
            if kind == RESET:
                return None
            if kind in (ENDPOINT_TYPE, DEPLOYMENT_TYPE, INSTANCE_SET_TYPE):
                ids.add(_endpoint_of(key))
            elif kind == SECRET_KIND:
                if change.key.startswith("endpoint/"):
                    ids.add(_endpoint_of(canonical(change.key.removeprefix("endpoint/"))))
            elif kind == WORKSPACE_TYPE:
                ids.update(e.id for e in known if e.workspace_id == key)
            elif "/" in change.key:
                # A parent above workspaces (resource group, subscription) may have been deleted.
                ids.update(e.id for e in known if e.id.startswith(key + "/"))
        return None if len(ids) > 64 else ids

    def _lost(self, exc: Exception) -> None:
        if not self.stale:
            log.warning("routing table kept: the store is unavailable", extra={"error": repr(exc)})
        self.stale = True


def _endpoint_of(key: str) -> str:
    """The endpoint id in an endpoint, deployment, instance-set or key name."""
    head, sep, _ = key.partition("/deployments/")
    if sep:
        return head
    for suffix in ("/primary", "/secondary"):
        if key.endswith(suffix):
            return key.removesuffix(suffix)
    return key.rstrip("/")


def _add(by_name: dict[str, Endpoint], endpoint: Endpoint) -> None:
    name = endpoint.name.lower()
    other = by_name.get(name)
    if other is not None and other.id != endpoint.id:
        # Scoring URIs carry only the name, so names must be unique on a server, as they are
        # per region in Azure (reference §3.1); the control plane enforces it, this is a guard.
        log.warning("two endpoints share a name; the first keeps it", extra={"endpoint": name})
        return
    by_name[name] = endpoint


def _created(row: Any) -> Any:
    return (row.created_at, row.id)


def _pos(value: object) -> bool:
    try:
        return float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
