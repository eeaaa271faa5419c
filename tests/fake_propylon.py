"""An in-memory Propylon for the client's and the CLI's unit tests, behind ``httpx.MockTransport``.

It answers the REST calls the CLI and client make — ARM resources with long-running operations,
blobs and assets, role definitions and assignments, the Graph-shaped directory, and the gateway's
scoring route — with the shapes the real server gives, and records every request so tests can
check what went over the wire. It does not check tokens beyond their presence: the credential is
:class:`FakeCredential`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
from azure.core.credentials import AccessToken
from typer.testing import Result

SERVER = "https://propylon.test:8080"
GATEWAY = "https://propylon.test:8081"
TENANT = "11111111-1111-1111-1111-111111111111"
SUBSCRIPTION = "22222222-2222-2222-2222-222222222222"
RESOURCE_GROUP = "default-rg"
WORKSPACE = "default-ws"
WS_ID = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"
    f"/providers/Microsoft.MachineLearningServices/workspaces/{WORKSPACE}"
)
ALICE = "33333333-3333-3333-3333-333333333333"

_WS = re.escape(WS_ID)

#: ``run("ml", "online-endpoint", "list")`` → the command's result (see conftest ``run``).
Run = Callable[..., Result]
_AUTH = "/providers/Microsoft.Authorization"


@dataclass
class FakeCredential:
    """Tokens named after their scope; remembers which scopes were asked for."""

    scopes: list[str] = field(default_factory=list)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(f"token:{scopes[0]}", int(time.time()) + 3600)


def _json(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(
        status,
        content=content,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def _error(status: int, code: str, message: str) -> httpx.Response:
    return _json(status, {"error": {"code": code, "message": message}})


@dataclass
class FakeServer:
    """The state of the fake: ARM resources by lower-cased id, blobs, directory objects."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    directory: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    operations: dict[str, int] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    polls_before_done: int = 1
    fail_operations: bool = False

    def __post_init__(self) -> None:
        self.directory[ALICE] = {
            "@odata.type": "#microsoft.graph.user",
            "id": ALICE,
            "userPrincipalName": "alice@contoso.test",
            "displayName": "Alice",
        }

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # -- helpers for tests ----------------------------------------------------------------------

    def sent(self, method: str, path_part: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and path_part in r.url.path]

    def body_of(self, request: httpx.Request) -> Any:
        return json.loads(request.content) if request.content else None

    def put_endpoint(self, name: str, auth_mode: str = "Key") -> None:
        self._store_endpoint(name, {"properties": {"authMode": auth_mode}, "location": "local"})

    # -- dispatch -------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:  # noqa: PLR0911 — a router
        self.requests.append(request)
        path = unquote(request.url.path)
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "AuthenticationFailed", "no bearer token")
        if request.url.host == "propylon.test" and request.url.port == 8081:
            return self._score(request, path)
        if path.startswith("/v1.0/"):
            return self._graph(request, path.removeprefix("/v1.0/"))
        if path.startswith("/operations/"):
            return self._operation(path.rsplit("/", 1)[-1])
        if _AUTH in path:
            return self._authorization(request, path)
        if path == "/subscriptions":
            return _json(200, {"value": [{"subscriptionId": SUBSCRIPTION, "tenantId": TENANT}]})
        if path.lower() == WS_ID.lower():
            return _json(200, {"id": WS_ID, "name": WORKSPACE, "location": "local"})
        if not path.lower().startswith(WS_ID.lower()):
            return _error(404, "ResourceNotFound", f"no route {path}")
        rest = path[len(WS_ID) :].strip("/").split("/")
        return self._workspace(request, rest)

    def _operation(self, op_id: str) -> httpx.Response:
        remaining = self.operations.get(op_id, 0)
        if remaining > 0:
            self.operations[op_id] = remaining - 1
            return _json(200, {"status": "InProgress"})
        if self.fail_operations:
            return _json(
                200,
                {
                    "status": "Failed",
                    "error": {"code": "ModelError", "message": "init() raised ValueError"},
                },
            )
        return _json(200, {"status": "Succeeded"})

    def _start_operation(self) -> str:
        op_id = uuid.uuid4().hex
        self.operations[op_id] = self.polls_before_done
        return f"{SERVER}/operations/{op_id}"

    # -- workspace resources --------------------------------------------------------------------

    def _workspace(self, request: httpx.Request, parts: list[str]) -> httpx.Response:  # noqa: PLR0911 — a router
        method = request.method
        if parts[0] == "blobs" and len(parts) == 2 and method == "PUT":
            digest = parts[1].removeprefix("sha256:")
            if hashlib.sha256(request.content).hexdigest() != digest:
                return _error(400, "DigestMismatch", "digest mismatch")
            self.blobs[digest] = request.content
            return _json(201, {"digest": f"sha256:{digest}", "size": len(request.content)})
        if parts[0] in {"models", "codes", "environments"}:
            return self._asset(request, parts)
        if parts[0] != "onlineEndpoints":
            return _error(404, "ResourceNotFound", "unknown collection")
        if len(parts) == 1:
            prefix = f"{WS_ID}/onlineEndpoints/".lower()
            items = [
                v
                for k, v in self.resources.items()
                if k.startswith(prefix) and k.count("/") == prefix.count("/")
            ]
            return _json(200, {"value": items})
        endpoint_id = f"{WS_ID}/onlineEndpoints/{parts[1]}"
        if len(parts) == 2:
            return self._endpoint(request, endpoint_id, parts[1])
        if parts[2] in {"listKeys", "token", "regenerateKeys"}:
            return self._endpoint_action(request, endpoint_id, parts[2])
        if parts[2] == "deployments":
            return self._deployment(request, endpoint_id, parts[3:])
        return _error(404, "ResourceNotFound", "unknown endpoint action")

    def _store_endpoint(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        endpoint_id = f"{WS_ID}/onlineEndpoints/{name}"
        properties = dict(body.get("properties") or {})
        properties.update(
            {
                "scoringUri": f"{GATEWAY}/endpoints/{name}/score",
                "swaggerUri": f"{GATEWAY}/endpoints/{name}/swagger.json",
                "provisioningState": "Succeeded",
            }
        )
        properties.setdefault("traffic", {})
        properties.setdefault("mirrorTraffic", {})
        stored = {
            "id": endpoint_id,
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
            "location": body.get("location", "local"),
            "kind": "Managed",
            "tags": body.get("tags") or {},
            "identity": {"type": "SystemAssigned", "principalId": ALICE, "tenantId": TENANT},
            "properties": properties,
            "systemData": {
                "createdAt": "2025-01-01T00:00:00Z",
                "lastModifiedAt": "2025-01-01T00:00:00Z",
            },
        }
        self.resources[endpoint_id.lower()] = stored
        self.keys.setdefault(endpoint_id.lower(), {"primaryKey": "pk-1", "secondaryKey": "sk-1"})
        return stored

    def _endpoint(self, request: httpx.Request, endpoint_id: str, name: str) -> httpx.Response:
        key = endpoint_id.lower()
        if request.method == "PUT":
            body = json.loads(request.content)
            if "authMode" not in (body.get("properties") or {}):
                return _error(400, "BadRequest", "'properties.authMode' is required.")
            created = key not in self.resources
            stored = self._store_endpoint(name, body)
            return _json(
                201 if created else 200,
                stored,
                {"Azure-AsyncOperation": self._start_operation()},
            )
        if key not in self.resources:
            return _error(404, "ResourceNotFound", f"Could not find online endpoint {name}")
        if request.method == "GET":
            return _json(200, self.resources[key])
        if request.method == "DELETE":
            for other in [k for k in self.resources if k.startswith(key)]:
                del self.resources[other]
            return _json(202, None, {"Location": self._start_operation(), "Retry-After": "0"})
        return _error(405, "MethodNotAllowed", request.method)

    def _endpoint_action(
        self, request: httpx.Request, endpoint_id: str, action: str
    ) -> httpx.Response:
        key = endpoint_id.lower()
        if key not in self.resources:
            return _error(404, "ResourceNotFound", "no such endpoint")
        if action == "listKeys":
            return _json(200, self.keys[key])
        if action == "token":
            now = int(time.time())
            return _json(
                200,
                {
                    "accessToken": f"aml-token-for-{endpoint_id.rsplit('/', 1)[-1]}",
                    "expiryTimeUtc": now + 3600,
                    "refreshAfterTimeUtc": now + 1800,
                    "tokenType": "Bearer",
                },
            )
        body = json.loads(request.content)
        slot = "primaryKey" if body["keyType"] == "Primary" else "secondaryKey"
        self.keys[key][slot] = f"{slot}-{uuid.uuid4().hex[:6]}"
        return _json(202, None, {"Location": self._start_operation()})

    def _deployment(  # noqa: PLR0911 — a router
        self, request: httpx.Request, endpoint_id: str, parts: list[str]
    ) -> httpx.Response:
        if endpoint_id.lower() not in self.resources:
            return _error(404, "ResourceNotFound", "no such endpoint")
        if not parts:
            prefix = f"{endpoint_id}/deployments/".lower()
            return _json(
                200, {"value": [v for k, v in self.resources.items() if k.startswith(prefix)]}
            )
        deployment_id = f"{endpoint_id}/deployments/{parts[0]}"
        key = deployment_id.lower()
        if len(parts) == 2 and parts[1] == "getLogs":
            body = json.loads(request.content or b"{}")
            lines = [f"line {i}" for i in range(1, 11)]
            tail = body.get("tail") or len(lines)
            return _json(200, {"content": "\n".join(lines[-tail:]) + "\n"})
        if request.method == "PUT":
            body = json.loads(request.content)
            created = key not in self.resources
            properties = dict(body.get("properties") or {})
            properties["provisioningState"] = "Succeeded"
            properties.setdefault("scaleSettings", {"scaleType": "Default"})
            stored = {
                "id": deployment_id,
                "name": parts[0],
                "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                "location": body.get("location"),
                "kind": "Managed",
                "sku": body.get("sku") or {"name": "Default", "capacity": 1},
                "tags": body.get("tags") or {},
                "properties": properties,
            }
            self.resources[key] = stored
            return _json(
                201 if created else 200, stored, {"Azure-AsyncOperation": self._start_operation()}
            )
        if key not in self.resources:
            return _error(404, "ResourceNotFound", f"no deployment {parts[0]}")
        if request.method == "GET":
            return _json(200, self.resources[key])
        if request.method == "DELETE":
            del self.resources[key]
            return _json(202, None, {"Location": self._start_operation()})
        return _error(405, "MethodNotAllowed", request.method)

    def _asset(self, request: httpx.Request, parts: list[str]) -> httpx.Response:
        kind = parts[0]
        if len(parts) == 1:
            prefix = f"{WS_ID}/{kind}/".lower()
            names = sorted(
                {k[len(prefix) :].split("/")[0] for k in self.resources if k.startswith(prefix)}
            )
            return _json(
                200,
                {
                    "value": [
                        {"id": f"{WS_ID}/{kind}/{n}", "name": n, "properties": {}} for n in names
                    ]
                },
            )
        if len(parts) == 3:
            prefix = f"{WS_ID}/{kind}/{parts[1]}/versions/".lower()
            return _json(
                200, {"value": [v for k, v in self.resources.items() if k.startswith(prefix)]}
            )
        version_id = f"{WS_ID}/{kind}/{parts[1]}/versions/{parts[3]}"
        key = version_id.lower()
        if request.method == "PUT":
            body = json.loads(request.content)
            uri = body["properties"].get("modelUri") or body["properties"].get("codeUri")
            if uri and uri.removeprefix("sha256:") not in self.blobs:
                return _error(400, "BlobNotFound", f"{uri} was not uploaded")
            stored = {"id": version_id, "name": parts[3], "properties": body["properties"]}
            self.resources[key] = stored
            return _json(201, stored)
        if key not in self.resources:
            return _error(404, "ResourceNotFound", f"no {kind} {parts[1]}:{parts[3]}")
        return _json(200, self.resources[key])

    # -- data plane -----------------------------------------------------------------------------

    def _score(self, request: httpx.Request, path: str) -> httpx.Response:
        name = path.split("/")[2]
        endpoint = self.resources.get(f"{WS_ID}/onlineEndpoints/{name}".lower())
        if endpoint is None:
            return _error(404, "EndpointNotFound", name)
        token = request.headers["authorization"].removeprefix("Bearer ")
        mode = endpoint["properties"]["authMode"]
        allowed = {
            "Key": set(self.keys[endpoint["id"].lower()].values()),
            "AMLToken": {f"aml-token-for-{name}"},
            "AADToken": {"token:https://ml.azure.com/.default"},
        }[mode]
        if token not in allowed:
            return _error(401, "AuthenticationFailed", "wrong credential for this endpoint")
        data = json.loads(request.content)["data"]
        deployment = request.headers.get("azureml-model-deployment", "blue")
        return _json(
            200, [float(sum(row)) for row in data], {"azureml-model-deployment": deployment}
        )

    # -- authorization --------------------------------------------------------------------------

    def _authorization(self, request: httpx.Request, path: str) -> httpx.Response:
        scope, _, rest = path.partition(_AUTH + "/")
        scope = scope or "/"
        kind, _, name = rest.partition("/")
        if kind == "checkAccess":
            body = json.loads(request.content)
            allowed = body["principalId"] == ALICE and body["action"].endswith("score/action")
            return _json(
                200,
                {
                    "allowed": allowed,
                    "action": body["action"],
                    "scope": scope,
                    "reason": "granted by AzureML Data Scientist"
                    if allowed
                    else "no role grants it",
                },
            )
        if kind == "roleDefinitions":
            return self._role_definitions(request, scope, name)
        if kind == "roleAssignments":
            return self._role_assignments(request, scope, name)
        return _error(404, "ResourceNotFound", kind)

    def _role_definitions(self, request: httpx.Request, scope: str, name: str) -> httpx.Response:
        roles = {k: v for k, v in self.resources.items() if "/roledefinitions/" in k}
        builtin_id = "f6c7c914-8db3-469d-8ca1-694a8f32e121"
        builtin = {
            "id": f"/providers/Microsoft.Authorization/roleDefinitions/{builtin_id}",
            "name": builtin_id,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": "AzureML Data Scientist",
                "type": "BuiltInRole",
                "description": "Can perform all actions within an AML workspace.",
                "permissions": [
                    {"actions": ["Microsoft.MachineLearningServices/workspaces/*/action"]}
                ],
                "assignableScopes": ["/"],
            },
        }
        if request.method == "PUT":
            body = json.loads(request.content)
            role_id = f"{scope.rstrip('/')}{_AUTH}/roleDefinitions/{name}"
            stored = {
                "id": role_id,
                "name": name,
                "type": "Microsoft.Authorization/roleDefinitions",
                **body,
            }
            stored["properties"]["type"] = "CustomRole"
            self.resources[role_id.lower()] = stored
            return _json(201, stored)
        if request.method == "DELETE":
            for key in [k for k in roles if k.endswith(name.lower())]:
                del self.resources[key]
            return _json(200, {})
        items = [builtin, *roles.values()]
        query = request.url.params.get("$filter", "")
        match = re.match(r"roleName eq '(.*)'", query)
        if match:
            items = [
                r for r in items if r["properties"]["roleName"].lower() == match.group(1).lower()
            ]
        if "CustomRole" in query:
            items = [r for r in items if r["properties"]["type"] == "CustomRole"]
        return _json(200, {"value": items})

    def _role_assignments(self, request: httpx.Request, scope: str, name: str) -> httpx.Response:
        if request.method == "PUT":
            body = json.loads(request.content)
            assignment_id = f"{scope}{_AUTH}/roleAssignments/{name}"
            properties = {**body["properties"], "scope": scope}
            role_guid = properties["roleDefinitionId"].rsplit("/", 1)[-1]
            properties["roleDefinitionName"] = (
                "AzureML Data Scientist" if role_guid.startswith("f6c7c914") else "custom"
            )
            stored = {
                "id": assignment_id,
                "name": name,
                "type": "Microsoft.Authorization/roleAssignments",
                "properties": properties,
            }
            self.resources[assignment_id.lower()] = stored
            return _json(201, stored)
        if request.method == "DELETE":
            self.resources.pop(f"{scope}{_AUTH}/roleAssignments/{name}".lower(), None)
            return _json(200, {})
        items = [v for k, v in self.resources.items() if "/roleassignments/" in k]
        query = request.url.params.get("$filter", "")
        match = re.match(r"principalId eq '(.*)'", query)
        if match:
            items = [a for a in items if a["properties"]["principalId"] == match.group(1)]
        elif query == "atScope()":
            items = [a for a in items if scope.lower().startswith(a["properties"]["scope"].lower())]
        return _json(200, {"value": items})

    # -- directory ------------------------------------------------------------------------------

    def _graph(self, request: httpx.Request, path: str) -> httpx.Response:  # noqa: PLR0911 — a router
        parts = path.split("/")
        collection = parts[0]
        types = {
            "users": "#microsoft.graph.user",
            "groups": "#microsoft.graph.group",
            "servicePrincipals": "#microsoft.graph.servicePrincipal",
            "applications": "#microsoft.graph.application",
        }
        if request.method == "POST" and len(parts) == 1:
            body = json.loads(request.content)
            body.pop("passwordProfile", None)
            object_id = str(uuid.uuid4())
            entry = {"@odata.type": types[collection], "id": object_id, **body}
            if collection == "applications":
                entry["appId"] = str(uuid.uuid4())
            self.directory[object_id] = entry
            return _json(201, entry)
        if collection == "applications" and parts[-1] == "addPassword":
            return _json(200, {"secretText": "s3cr3t-value", "keyId": str(uuid.uuid4())})
        if len(parts) == 1:
            items = [v for v in self.directory.values() if v["@odata.type"] == types[collection]]
            query = request.url.params.get("$filter", "")
            for field_name in ("appId", "displayName", "userPrincipalName"):
                match = re.match(rf"{field_name} eq '(.*)'", query)
                if match:
                    items = [v for v in items if v.get(field_name) == match.group(1)]
            return _json(200, {"value": items})
        found = next(
            (
                v
                for v in self.directory.values()
                if v["@odata.type"] == types.get(collection)
                and parts[1] in (v["id"], v.get("userPrincipalName"))
            ),
            None,
        )
        if found is None:
            return _error(404, "Request_ResourceNotFound", f"Resource '{parts[1]}' does not exist")
        if len(parts) >= 3 and parts[2] == "members":
            members = self.members.setdefault(found["id"], set())
            if request.method == "POST":
                members.add(json.loads(request.content)["@odata.id"].rsplit("/", 1)[-1])
                return _json(204)
            if request.method == "DELETE":
                members.discard(parts[3])
                return _json(204)
            return _json(200, {"value": [self.directory[m] for m in sorted(members)]})
        if request.method == "DELETE":
            del self.directory[found["id"]]
            return _json(204)
        return _json(200, found)


def output_json(result: Result) -> Any:
    """The JSON a successful command printed."""
    assert result.exit_code == 0, result.stderr or result.output
    return json.loads(result.stdout)
