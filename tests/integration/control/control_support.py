"""Test doubles and helpers for the control plane's in-process tests.

``FakeAccess`` implements the ``AccessControl`` protocol with two static tokens (``t-allow`` may do
everything, ``t-deny`` nothing; single actions can be denied); ``FakeBackend`` implements the
runtime ``Backend`` protocol and succeeds, fails or holds a deployment on demand. ``Arm`` builds the
paths and follows long-running operations.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.testclient import TestClient

from propylon.errors import Forbidden, Unauthenticated
from propylon.runtime.base import (
    ContainerType,
    DeploymentSpec,
    DeploymentState,
    DeploymentStatus,
)
from propylon.server.access import Caller
from propylon.server.context import ServerContext

ALLOW = "t-allow"
DENY = "t-deny"
ALLOW_OID = "11111111-1111-1111-1111-111111111111"
DENY_OID = "22222222-2222-2222-2222-222222222222"


class FakeAccess:
    def __init__(self) -> None:
        self.denied_actions: set[str] = set()
        self.checks: list[tuple[str, str]] = []
        self.minted: list[str] = []
        self.minted_uids: list[str | None] = []

    def authenticate(self, token: str, *, audiences: tuple[str, ...]) -> Caller:
        assert "https://management.azure.com" in audiences
        if token == ALLOW:
            return Caller(oid=ALLOW_OID, tid="t", appid=None, kind="user", claims={"upn": "a@x"})
        if token == DENY:
            return Caller(oid=DENY_OID, tid="t", appid="app", kind="app")
        raise Unauthenticated("Authentication failed: the token is not valid.")

    def allowed(self, caller: Caller, action: str, scope: str) -> bool:
        return caller.oid == ALLOW_OID and action.lower() not in self.denied_actions

    def require(self, caller: Caller, action: str, scope: str) -> None:
        self.checks.append((action, scope))
        if not self.allowed(caller, action, scope):
            raise Forbidden(
                f"The client '{caller.oid}' does not have authorization to perform action "
                f"'{action}' over scope '{scope}' or the scope is invalid."
            )

    def validate_endpoint_token(
        self, token: str, endpoint_id: str, *, endpoint_uid: str | None = None
    ) -> None:
        raise Unauthenticated("not used here")

    def mint_endpoint_token(
        self,
        endpoint_id: str,
        *,
        endpoint_uid: str | None = None,
        requested_by: str | None = None,
        requester_tid: str | None = None,
    ) -> dict[str, Any]:
        self.minted.append(endpoint_id)
        self.minted_uids.append(endpoint_uid)
        now = int(time.time())
        return {
            "accessToken": f"aml-token-for:{endpoint_id}",
            "expiryTimeUtc": now + 86400,
            "refreshAfterTimeUtc": now + 43200,
            "tokenType": "Bearer",
        }


@dataclass
class FakeBackend:
    """Succeeds at once unless told to fail (``fail[name] = reason``) or hold (``hold``)."""

    name: str = "fake"
    specs: dict[str, DeploymentSpec] = field(default_factory=dict)
    applied: list[DeploymentSpec] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    fail: dict[str, str] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    log_lines: list[str] = field(default_factory=lambda: [f"line {i}" for i in range(10)])

    async def apply(self, spec: DeploymentSpec) -> None:
        await asyncio.sleep(0)
        self.specs[spec.deployment_id] = spec
        self.applied.append(spec)

    async def remove(self, deployment_id: str) -> None:
        self.removed.append(deployment_id)
        self.specs.pop(deployment_id, None)

    def status(self, deployment_id: str) -> DeploymentStatus:
        spec = self.specs.get(deployment_id)
        if spec is None:
            return DeploymentStatus(DeploymentState.FAILED, reason="unknown deployment")
        if spec.name in self.fail:
            return DeploymentStatus(DeploymentState.FAILED, 1, 0, self.fail[spec.name])
        if spec.name in self.hold:
            return DeploymentStatus(DeploymentState.CREATING, spec.instance_count, 0)
        return DeploymentStatus(DeploymentState.SUCCEEDED, spec.instance_count, spec.instance_count)

    def logs(self, deployment_id: str, container_type: ContainerType, tail: int) -> str:
        if deployment_id not in self.specs:
            raise KeyError(deployment_id)
        lines = [f"{container_type.value}: {line}" for line in self.log_lines]
        return "\n".join(lines[-tail:] if tail else [])

    async def shutdown(self) -> None:
        self.specs.clear()


def archive(files: dict[str, bytes], *, top: str | None = None) -> bytes:
    """A .tar.gz of ``files`` (under folder ``top`` when given, as the CLI uploads folders)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Arm:
    """Paths of one workspace, an authenticated client, and LRO helpers."""

    def __init__(self, client: TestClient, ctx: ServerContext, token: str = ALLOW) -> None:
        self.client = client
        self.ctx = ctx
        self.token = token
        tenancy = ctx.tenancy
        self.sub = tenancy.subscription_id
        self.rg = tenancy.resource_group
        self.ws_name = tenancy.workspace
        self.ws = tenancy.workspace_id

    def as_(self, token: str) -> Arm:
        return Arm(self.client, self.ctx, token)

    def endpoint(self, name: str) -> str:
        return f"{self.ws}/onlineEndpoints/{name}"

    def deployment(self, endpoint: str, name: str) -> str:
        return f"{self.endpoint(endpoint)}/deployments/{name}"

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        params = kwargs.pop("params", {"api-version": "2023-04-01"})
        return self.client.request(method, path, headers=headers, params=params, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, json=body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        if body is None:
            return self.request("POST", path, headers={"Content-Length": "0"}, **kwargs)
        return self.request("POST", path, json=body, **kwargs)

    def wait(self, url: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """Follow an Azure-AsyncOperation URL to a terminal status document."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.client.get(url, headers={"Authorization": f"Bearer {self.token}"})
            assert reply.status_code == 200, reply.text
            document: dict[str, Any] = reply.json()
            if document["status"] in ("Succeeded", "Failed", "Canceled"):
                return document
            assert time.monotonic() < deadline, f"operation still {document['status']}"
            time.sleep(0.01)

    def wait_location(self, url: str, *, timeout: float = 10.0) -> httpx.Response:
        """Follow a Location URL until it stops answering 202."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.client.get(url, headers={"Authorization": f"Bearer {self.token}"})
            if reply.status_code != 202:
                return reply
            assert reply.headers["Retry-After"]
            assert time.monotonic() < deadline, "operation still running"
            time.sleep(0.01)

    # --- fixtures of resources ---------------------------------------------------------------

    def create_endpoint(self, name: str, auth_mode: str = "Key", **extra: Any) -> dict[str, Any]:
        body = {"location": "local", "properties": {"authMode": auth_mode, **extra}}
        reply = self.put(self.endpoint(name), body)
        assert reply.status_code == 201, reply.text
        assert self.wait(reply.headers["Azure-AsyncOperation"])["status"] == "Succeeded"
        result: dict[str, Any] = self.get(self.endpoint(name)).json()
        return result

    def upload(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        reply = self.request("PUT", f"{self.ws}/blobs/sha256:{digest}", content=data)
        assert reply.status_code in (200, 201), reply.text
        return f"sha256:{digest}"

    def register_assets(self, *, script: str = "score.py") -> dict[str, str]:
        """A code version (folder ``onlinescoring``), a model and an environment; their ids."""
        code = self.upload(archive({script: b"def init(): pass\n"}, top="onlinescoring"))
        model = self.upload(archive({"model.pkl": b"weights"}, top="model"))
        ids = {}
        for kind, body in (
            ("codes/score/versions/1", {"properties": {"codeUri": code}}),
            ("models/sk/versions/1", {"properties": {"modelUri": model}}),
            (
                "environments/env/versions/1",
                {
                    "properties": {
                        "condaFile": "dependencies:\n  - python=3.11\n  - numpy=2.3.1\n"
                        "  - pip:\n    - joblib\n"
                    }
                },
            ),
        ):
            reply = self.put(f"{self.ws}/{kind}", body)
            assert reply.status_code in (200, 201), reply.text
            ids[kind.split("/")[0]] = reply.json()["id"]
        return ids

    def deployment_body(self, ids: dict[str, str], **properties: Any) -> dict[str, Any]:
        return {
            "location": "local",
            "sku": {"name": "Default", "capacity": 1},
            "properties": {
                "endpointComputeType": "Managed",
                "model": ids["models"],
                "codeConfiguration": {"codeId": ids["codes"], "scoringScript": "score.py"},
                "environmentId": ids["environments"],
                "instanceType": "Standard_DS3_v2",
                **properties,
            },
        }

    def create_deployment(self, endpoint: str, name: str, ids: dict[str, str]) -> dict[str, Any]:
        reply = self.put(self.deployment(endpoint, name), self.deployment_body(ids))
        assert reply.status_code == 201, reply.text
        status = self.wait(reply.headers["Azure-AsyncOperation"])
        assert status["status"] == "Succeeded", status
        result: dict[str, Any] = self.get(self.deployment(endpoint, name)).json()
        return result
