"""Test helpers for the gateway, shipped as real code: access-control doubles and a fake upstream.

* :class:`StaticAccess` — an :class:`~propylon.server.access.AccessControl` double whose tokens are
  plain strings you register (unit tests of the auth matrix);
* :class:`LocalAccess` — a real one in miniature: JWTs signed by a built-in issuer's key ring,
  validated by :class:`~propylon.identity.TokenValidator`, authorized by the RBAC engine with
  role assignments you add and remove (integration tests and the benchmark, where the server's
  own directory and control plane are not needed);
* :class:`FakeTransport` — an upstream whose answers a function decides, recording every request;
* :class:`StoreSeeder` — endpoint, deployment, instance-set and key rows written straight into a
  store, as the control plane and the runtime would write them.

Example::

    access = StaticAccess()
    access.add_identity_token("t1", oid="alice")
    access.grant("alice", endpoint_id)
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from propylon.authz import BUILTIN_ROLES_BY_NAME, CachedAuthorizer, Policy, RoleAssignment
from propylon.authz.scopes import is_within
from propylon.config import node_name
from propylon.errors import Forbidden, Unauthenticated
from propylon.gateway.errors import RequestTimeout
from propylon.gateway.table import Instance, endpoint_key_name
from propylon.gateway.upstream import UpstreamRequest, UpstreamResponse
from propylon.identity import (
    IssuerUrl,
    KeyRing,
    PrincipalClaims,
    PrincipalKind,
    SigningKey,
    StaticJwks,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
)
from propylon.server.access import DATA_PLANE_AUDIENCES, Caller
from propylon.store import ResourceStore, ResourceWrite, Vault

__all__ = ["FakeTransport", "LocalAccess", "StaticAccess", "StoreSeeder"]


class StaticAccess:
    """AccessControl double: registered token strings, explicit grants, call counts."""

    def __init__(self) -> None:
        self.identity_tokens: dict[str, Caller] = {}
        self.endpoint_tokens: dict[str, tuple[str, str | None, str | None]] = {}
        self.grants: set[tuple[str, str, str]] = set()
        self.calls: dict[str, int] = {"authenticate": 0, "allowed": 0, "endpoint_token": 0}

    def add_identity_token(
        self, token: str, *, oid: str, appid: str | None = None, tid: str = "tenant"
    ) -> None:
        claims = {"oid": oid, "tid": tid, "exp": 4_102_444_800}
        self.identity_tokens[token] = Caller(oid, tid, appid, "app", claims=claims)

    def add_endpoint_token(
        self,
        token: str,
        endpoint_id: str,
        *,
        oid: str | None = None,
        endpoint_uid: str | None = None,
    ) -> None:
        self.endpoint_tokens[token] = (endpoint_id.lower(), endpoint_uid, oid)

    def grant(self, oid: str, scope: str, action: str = "*") -> None:
        self.grants.add((oid, scope.lower(), action))

    def revoke(self, oid: str, scope: str, action: str = "*") -> None:
        self.grants.discard((oid, scope.lower(), action))

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        self.calls["authenticate"] += 1
        caller = self.identity_tokens.get(token)
        if caller is None or audiences != DATA_PLANE_AUDIENCES:
            raise Unauthenticated("The token is not valid.", code="InvalidAuthenticationToken")
        return caller

    def allowed(self, caller: Caller, action: str, scope: str) -> bool:
        self.calls["allowed"] += 1
        return any(
            oid == caller.oid and is_within(scope, granted) and what in ("*", action)
            for oid, granted, what in self.grants
        )

    def require(self, caller: Caller, action: str, scope: str) -> None:
        if not self.allowed(caller, action, scope):
            raise Forbidden(f"'{caller.oid}' may not {action} on {scope}.")

    def validate_endpoint_token(
        self, token: str, endpoint_id: str, *, endpoint_uid: str | None = None
    ) -> None:
        self.calls["endpoint_token"] += 1
        bound = self.endpoint_tokens.get(token)
        if bound is None or bound[0] != endpoint_id.lower():
            raise Unauthenticated("The token is not valid for this endpoint.")
        if endpoint_uid is not None and bound[1] != endpoint_uid:  # as TokenValidator does
            raise Unauthenticated("The token was minted for an earlier endpoint of this name.")

    def mint_endpoint_token(
        self,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        requested_by: str | None = None,
        requester_tid: str | None = None,
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex
        self.add_endpoint_token(token, endpoint_id, oid=requested_by, endpoint_uid=endpoint_uid)
        return {"accessToken": token, "expiryTimeUtc": 0, "refreshAfterTimeUtc": 0}


class LocalAccess:
    """A self-contained AccessControl over real tokens and the real RBAC engine.

    ``score`` grants add an ``AzureML Data Scientist`` assignment (which carries the score action
    through ``workspaces/*/action``) at the given scope.
    """

    TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

    def __init__(self, issuer_base: str = "https://idp.propylon.test") -> None:
        now = datetime.now(UTC)
        self.keyring = KeyRing([SigningKey.generate(now - timedelta(days=2))])
        urls = IssuerUrl(issuer_base)
        self.issuer = TokenIssuer(self.keyring, urls)
        trusted = TrustedIssuer(
            urls.template,
            StaticJwks(self.keyring),
            audiences=(*DATA_PLANE_AUDIENCES, "https://management.azure.com"),
            endpoint_tokens=True,
        )
        self.validator = TokenValidator([trusted])
        self._assignments: dict[str, RoleAssignment] = {}
        self._ids = itertools.count(1)
        self.authorizer = CachedAuthorizer(Policy())

    def identity_token(self, oid: str, *, app_id: str | None = None) -> str:
        principal = PrincipalClaims(oid=oid, kind=PrincipalKind.APP, app_id=app_id or oid)
        return self.issuer.issue_access_token(self.TENANT, principal, DATA_PLANE_AUDIENCES[0]).token

    def grant_score(self, oid: str, scope: str) -> str:
        role = BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"]
        assignment = RoleAssignment(f"a{next(self._ids)}", scope, role.id, oid)
        self._assignments[assignment.id] = assignment
        self.authorizer.replace(Policy(assignments=self._assignments.values()))
        return assignment.id

    def remove_assignment(self, assignment_id: str) -> None:
        self._assignments.pop(assignment_id, None)
        self.authorizer.replace(Policy(assignments=self._assignments.values()))

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        who = self.validator.validate(token, audiences=audiences)
        return Caller(
            who.oid, who.tid, who.appid, who.idtyp, frozenset(who.groups), dict(who.claims)
        )

    def allowed(self, caller: Caller, action: str, scope: str) -> bool:
        return self.authorizer.authorize(caller.oid, caller.groups, action, scope).allowed

    def require(self, caller: Caller, action: str, scope: str) -> None:
        decision = self.authorizer.authorize(caller.oid, caller.groups, action, scope)
        if not decision.allowed:
            raise decision.to_error(caller.oid)

    def validate_endpoint_token(
        self, token: str, endpoint_id: str, *, endpoint_uid: str | None = None
    ) -> None:
        self.validator.validate_endpoint_token(token, endpoint_id, endpoint_uid=endpoint_uid)

    def mint_endpoint_token(
        self,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        requested_by: str | None = None,
        requester_tid: str | None = None,
    ) -> Any:
        minted = self.issuer.issue_endpoint_token(
            endpoint_id,
            tenant_id=self.TENANT,
            requested_by=requested_by,
            endpoint_uid=endpoint_uid,
        )
        return minted.as_body()


Handler = Callable[[Instance, UpstreamRequest], Awaitable[UpstreamResponse]]


class FakeTransport:
    """An upstream decided by ``handler``; ``sent`` lists ``(instance, request)`` in order."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler or self.echo
        self.sent: list[tuple[Instance, UpstreamRequest]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    @staticmethod
    async def echo(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(200, [(b"content-type", b"application/json")], request.body)

    async def send(
        self, instance: Instance, request: UpstreamRequest, time_limit: float
    ) -> UpstreamResponse:
        self.sent.append((instance, request))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            async with asyncio.timeout(time_limit):
                return await self.handler(instance, request)
        except TimeoutError:
            raise RequestTimeout("The model did not answer within requestTimeout.") from None
        finally:
            self.in_flight -= 1

    def retain(self, instances: Iterable[str]) -> None:
        return None

    async def aclose(self) -> None:
        return None


class StoreSeeder:
    """Writes endpoints, deployments, instance sets and keys into a store the way the control
    plane and the runtime do, so gateway tests and benchmarks need neither.

    Example::

        seed = StoreSeeder(ctx.resources, ctx.vault, ctx.tenancy.workspace_id)
        seed.endpoint("e1", keys=("k1", "k2"))
        seed.deployment("e1", "blue", instances=["http://127.0.0.1:5001"])
    """

    def __init__(self, resources: ResourceStore, vault: Vault, workspace_id: str) -> None:
        self.resources = resources
        self.vault = vault
        self.workspace_id = workspace_id

    def endpoint_id(self, name: str) -> str:
        return f"{self.workspace_id}/onlineEndpoints/{name}"

    def endpoint(
        self,
        name: str,
        *,
        auth_mode: str = "Key",
        traffic: dict[str, int] | None = None,
        mirror: dict[str, int] | None = None,
        keys: tuple[str, str] | None = None,
        uid: str | None = None,
    ) -> str:
        endpoint_id = self.endpoint_id(name)
        body = {
            "id": endpoint_id,
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "properties": {
                "authMode": auth_mode,
                "traffic": traffic or {},
                "mirrorTraffic": mirror or {},
                "provisioningState": "Succeeded",
                "properties": {} if uid is None else {"propylon.endpointuid": uid},
            },
        }
        self.resources.put(
            ResourceWrite(endpoint_id, self.workspace_id, "onlineEndpoints", name, body)
        )
        if keys is not None:
            self.keys(name, *keys)
        return endpoint_id

    def update_endpoint(self, name: str, **properties: Any) -> None:
        row = self.resources.get(self.endpoint_id(name))
        assert row is not None, name
        body = dict(row.body)
        body["properties"] = {**body["properties"], **properties}
        self.resources.put(
            ResourceWrite(row.id, self.workspace_id, "onlineEndpoints", row.name, body)
        )

    def keys(self, name: str, primary: str, secondary: str) -> None:
        endpoint_id = self.endpoint_id(name)
        self.vault.put(endpoint_key_name(endpoint_id, "primary"), primary)
        self.vault.put(endpoint_key_name(endpoint_id, "secondary"), secondary)

    def deployment(
        self,
        endpoint: str,
        name: str,
        *,
        instances: Iterable[str | tuple[str, str]] = (),
        max_concurrent: int = 1,
        request_timeout: str = "PT5S",
        max_queue_wait: str = "PT0.5S",
    ) -> str:
        deployment_id = f"{self.endpoint_id(endpoint)}/deployments/{name}"
        body = {
            "id": deployment_id,
            "name": name,
            "properties": {
                "requestSettings": {
                    "maxConcurrentRequestsPerInstance": max_concurrent,
                    "requestTimeout": request_timeout,
                    "maxQueueWait": max_queue_wait,
                },
                "provisioningState": "Succeeded",
            },
        }
        self.resources.put(
            ResourceWrite(deployment_id, self.endpoint_id(endpoint), "deployments", name, body)
        )
        self.instances(endpoint, name, instances, max_concurrent=max_concurrent)
        return deployment_id

    def instances(
        self,
        endpoint: str,
        deployment: str,
        urls: Iterable[str | tuple[str, str]],
        *,
        max_concurrent: int = 1,
    ) -> None:
        """An instance set of ``urls``: a URL, or (URL, Unix socket on this machine)."""
        deployment_id = f"{self.endpoint_id(endpoint)}/deployments/{deployment}"
        entries: list[dict[str, Any]] = []
        for n, address in enumerate(urls):
            url, uds = address if isinstance(address, tuple) else (address, None)
            entry = {
                "instance_id": f"{deployment}-{n}",
                "url": url,
                "max_concurrent": max_concurrent,
            }
            if uds is not None:
                entry.update(uds=uds, node=node_name())
            entries.append(entry)
        body = {"instances": entries, "generation": 1}
        self.resources.put(
            ResourceWrite(
                f"{deployment_id}/instanceSets/current",
                deployment_id,
                "instanceSets",
                "current",
                body,
            )
        )
