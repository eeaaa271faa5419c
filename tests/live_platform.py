"""A live Propylon for the attack, fault and load suites: the REST calls an administrator and
its users make, over HTTPS with real tokens, and a ledger of every secret they were handed.

Everything goes through the public APIs (ARM control plane, Graph-shaped directory, OAuth2 token
endpoint, gateway) with httpx — the CLI would cost a process per call. Example::

    with RunningServer.start(tmp / "data") as server:
        live = LivePlatform(server)
        code = live.echo_code()
        live.endpoint("ep-key", "Key")
        live.deploy("ep-key", "blue", code)
        live.score("ep-key", live.keys("ep-key")["primaryKey"], {"x": 1})
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from propylon.testing import RunningServer, wait_until

REPO = Path(__file__).resolve().parents[1]
ECHO = REPO / "examples" / "echo"
ROLES = REPO / "examples" / "roles"
ARM = "https://management.azure.com"
ML = "https://ml.azure.com"
CLI_CLIENT = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # the Azure CLI's public client id
API = {"api-version": "2024-04-01"}
AUTHZ_API = {"api-version": "2022-04-01"}

ROLE_IDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
}
TERMINAL = ("Succeeded", "Failed", "Canceled")


@dataclass
class SecretLedger:
    """Every key, secret, password and token handed out, to look for later in files and
    process listings. Values shorter than 12 characters are refused: they would match noise."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, label: str, value: str) -> str:
        assert len(value) >= 12, f"{label} is too short to scan for"
        self.values.setdefault(value, label)
        return value

    def found_in_files(self, root: Path, *, skip: Iterable[str] = ("bootstrap.json",)) -> list[str]:
        """``"<label> in <path>"`` for every secret found in a file under ``root``."""
        skipped = set(skip)
        needles = [(value.encode(), label) for value, label in self.values.items()]
        hits = []
        for path in sorted(root.rglob("*")):
            if not path.is_file() or path.name in skipped:
                continue
            try:
                content = path.read_bytes()
            except OSError:
                continue
            hits.extend(f"{label} in {path}" for needle, label in needles if needle in content)
        return hits

    def found_on_command_lines(self, pids: Iterable[int]) -> list[str]:
        hits = []
        for pid in pids:
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            hits.extend(
                f"{label} on the command line of {pid}"
                for value, label in self.values.items()
                if value.encode() in line
            )
        return hits


def process_tree(root: int) -> list[int]:
    """``root`` and every descendant (from /proc, as the instances are the server's children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (psutil is not a dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def tarball(folder: Path, *, top: str = "code", extra: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of the files of ``folder`` under ``top/`` (as the CLI uploads a code folder)."""
    buffer = io.BytesIO()
    # mtime=0 everywhere: the same folder is the same blob, so a code version can be re-put.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as tar,
    ):
        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".py"}
        files.update({name: text.encode() for name, text in (extra or {}).items()})
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass(frozen=True)
class Principal:
    """A directory object the suite signs in as: a user (password) or an app (client secret)."""

    name: str
    oid: str
    kind: str  # "user" | "app"
    login: str  # user principal name or application (client) id
    secret: str = field(repr=False)


class LivePlatform:
    """An administrator's view of one running server; see the module docstring."""

    def __init__(self, server: RunningServer, ledger: SecretLedger | None = None) -> None:
        self.server = server
        self.ledger = ledger or SecretLedger()
        info = server.bootstrap
        self.tenant = str(info["tenant_id"])
        self.subscription = str(info["subscription_id"])
        self.resource_group = str(info["resource_group"])
        self.workspace = str(info["workspace"])
        self.http = httpx.Client(verify=server.verify, timeout=60.0)
        self._tokens: dict[tuple[str, str], str] = {}
        self.admin = Principal(
            "root-owner", "", "app", str(info["admin_client_id"]), info["admin_client_secret"]
        )
        self.ledger.add("bootstrap admin secret", self.admin.secret)

    def close(self) -> None:
        self.http.close()

    # -- paths ----------------------------------------------------------------------------------

    @property
    def control(self) -> str:
        return self.server.control_url

    @property
    def gateway(self) -> str:
        return self.server.gateway_url

    def workspace_id(self, workspace: str | None = None) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{workspace or self.workspace}"
        )

    def endpoint_id(self, name: str, workspace: str | None = None) -> str:
        return f"{self.workspace_id(workspace)}/onlineEndpoints/{name}"

    def url(self, path: str) -> str:
        return self.control + path

    # -- tokens ---------------------------------------------------------------------------------

    def token_for(self, who: Principal, resource: str = ARM, *, fresh: bool = False) -> str:
        cached = self._tokens.get((who.login, resource))
        if cached is not None and not fresh:
            return cached
        if who.kind == "user":
            data = {
                "grant_type": "password",
                "client_id": CLI_CLIENT,
                "username": who.login,
                "password": who.secret,
                "scope": f"{resource}/.default",
            }
        else:
            data = {
                "grant_type": "client_credentials",
                "client_id": who.login,
                "client_secret": who.secret,
                "scope": f"{resource}/.default",
            }
        response = self.http.post(f"{self.control}/{self.tenant}/oauth2/v2.0/token", data=data)
        assert response.status_code == 200, response.text
        token = self.ledger.add(f"access token of {who.name}", response.json()["access_token"])
        self._tokens[(who.login, resource)] = token
        return token

    def headers(self, who: Principal | None = None, resource: str = ARM) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token_for(who or self.admin, resource)}"}

    # -- generic calls --------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        who: Principal | None = None,
        token: str | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else self.headers(who)
        if json is None and method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
        return self.http.request(
            method,
            self.url(path),
            headers=headers,
            json=json,
            params=API if params is None else params,
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.call(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response

    def wait_operation(self, response: httpx.Response, *, timeout: float = 120.0) -> str:
        """Follow Azure-AsyncOperation (or Location) to the end; the final status."""
        url = response.headers.get("Azure-AsyncOperation")
        if url is None:
            location = response.headers.get("Location")
            if location is None:
                return "Succeeded"
            deadline = time.monotonic() + timeout
            while True:
                reply = self.http.get(location, headers=self.headers())
                if reply.status_code != 202:
                    return "Succeeded" if reply.status_code < 300 else f"HTTP {reply.status_code}"
                assert time.monotonic() < deadline, f"{location} still running"
                time.sleep(0.1)
        deadline = time.monotonic() + timeout
        while True:
            document = self.http.get(url, headers=self.headers()).json()
            if document["status"] in TERMINAL:
                return str(document["status"])
            assert time.monotonic() < deadline, f"{url} still {document['status']}"
            time.sleep(0.1)

    # -- directory ------------------------------------------------------------------------------

    def user(self, name: str) -> Principal:
        upn = f"{name}@security.test"
        password = self.ledger.add(f"password of {name}", f"Pw-{name}-{uuid.uuid4().hex[:16]}!")
        body = {
            "accountEnabled": True,
            "displayName": name,
            "userPrincipalName": upn,
            "passwordProfile": {"password": password},
        }
        created = self.ok("POST", "/v1.0/users", json=body, params={}).json()
        return Principal(name, created["id"], "user", upn, password)

    def app(self, name: str) -> Principal:
        app = self.ok("POST", "/v1.0/applications", json={"displayName": name}, params={}).json()
        secret = self.ok(
            "POST", f"/v1.0/applications/{app['id']}/addPassword", json={}, params={}
        ).json()["secretText"]
        self.ledger.add(f"client secret of {name}", secret)
        sp = self.ok(
            "GET", "/v1.0/servicePrincipals", params={"$filter": f"appId eq '{app['appId']}'"}
        ).json()["value"][0]
        return Principal(name, sp["id"], "app", app["appId"], secret)

    def group(self, name: str, members: Iterable[Principal]) -> str:
        body = {
            "displayName": name,
            "mailEnabled": False,
            "mailNickname": name,
            "securityEnabled": True,
        }
        group = self.ok("POST", "/v1.0/groups", json=body, params={}).json()["id"]
        for member in members:
            self.ok(
                "POST",
                f"/v1.0/groups/{group}/members/$ref",
                json={
                    "@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member.oid}"
                },
                params={},
            )
        return str(group)

    def set_enabled(self, who: Principal, enabled: bool) -> None:
        collection = "users" if who.kind == "user" else "servicePrincipals"
        self.ok(
            "PATCH",
            f"/v1.0/{collection}/{who.oid}",
            json={"accountEnabled": enabled},
            params={},
        )

    # -- RBAC -----------------------------------------------------------------------------------

    def custom_role(self, file_name: str, assignable_scope: str) -> str:
        """Create one of the seed's custom roles (examples/roles/) assignable at a scope; its id."""
        import json

        body = json.loads((ROLES / file_name).read_text())
        body["AssignableScopes"] = [assignable_scope]
        role_id = str(uuid.uuid4())
        self.ok(
            "PUT",
            f"{assignable_scope}/providers/Microsoft.Authorization/roleDefinitions/{role_id}",
            json=body,
            params=AUTHZ_API,
        )
        return role_id

    def assign(self, principal_oid: str, role: str, scope: str, kind: str = "User") -> str:
        role_id = ROLE_IDS.get(role, role)
        assignment = str(uuid.uuid4())
        body = {
            "properties": {
                "roleDefinitionId": (
                    f"/subscriptions/{self.subscription}/providers/Microsoft.Authorization"
                    f"/roleDefinitions/{role_id}"
                ),
                "principalId": principal_oid,
                "principalType": kind,
            }
        }
        self.ok(
            "PUT",
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{assignment}",
            json=body,
            params=AUTHZ_API,
        )
        return assignment

    def unassign(self, scope: str, assignment: str) -> None:
        self.ok(
            "DELETE",
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{assignment}",
            params=AUTHZ_API,
        )

    # -- workspaces, endpoints, deployments -----------------------------------------------------

    def create_workspace(self, name: str) -> str:
        self.ok("PUT", self.workspace_id(name), json={"location": "local", "properties": {}})
        return self.workspace_id(name)

    def endpoint(
        self,
        name: str,
        auth_mode: str = "Key",
        *,
        workspace: str | None = None,
        identity: str | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"location": "local", "properties": {"authMode": auth_mode}}
        if identity:
            body["identity"] = {"type": identity}
        response = self.ok("PUT", self.endpoint_id(name, workspace), json=body)
        if wait:
            assert self.wait_operation(response) == "Succeeded"
        return dict(self.ok("GET", self.endpoint_id(name, workspace)).json())

    def keys(self, name: str, workspace: str | None = None) -> dict[str, str]:
        keys = self.ok("POST", f"{self.endpoint_id(name, workspace)}/listKeys").json()
        self.ledger.add(f"primary key of {name}", keys["primaryKey"])
        self.ledger.add(f"secondary key of {name}", keys["secondaryKey"])
        return dict(keys)

    def aml_token(self, name: str, workspace: str | None = None) -> str:
        body = self.ok("POST", f"{self.endpoint_id(name, workspace)}/token").json()
        return self.ledger.add(f"aml_token of {name}", body["accessToken"])

    def upload_code(self, name: str, archive: bytes, workspace: str | None = None) -> str:
        ws = self.workspace_id(workspace)
        digest = hashlib.sha256(archive).hexdigest()
        reply = self.http.put(
            self.url(f"{ws}/blobs/sha256:{digest}"),
            params=API,
            headers=self.headers(),
            content=archive,
        )
        assert reply.status_code in (200, 201), reply.text
        body = {"properties": {"codeUri": f"sha256:{digest}"}}
        return str(self.ok("PUT", f"{ws}/codes/{name}/versions/1", json=body).json()["id"])

    def echo_code(self, workspace: str | None = None) -> str:
        return self.upload_code("echo", tarball(ECHO), workspace)

    def deployment_body(
        self,
        code_id: str,
        *,
        instances: int = 1,
        env: dict[str, str] | None = None,
        max_concurrent: int = 8,
        request_timeout: str = "PT5S",
        max_queue_wait: str = "PT0.5S",
        liveness_period: str = "PT10S",
    ) -> dict[str, Any]:
        return {
            "location": "local",
            "sku": {"name": "Default", "capacity": instances},
            "properties": {
                "endpointComputeType": "Managed",
                "codeConfiguration": {"codeId": code_id, "scoringScript": "score.py"},
                "instanceType": "Standard_DS3_v2",
                "environmentVariables": {"WORKER_COUNT": "4", **(env or {})},
                "requestSettings": {
                    "maxConcurrentRequestsPerInstance": max_concurrent,
                    "requestTimeout": request_timeout,
                    "maxQueueWait": max_queue_wait,
                },
                "readinessProbe": {"initialDelay": "PT0S", "period": "PT1S"},
                "livenessProbe": {
                    "initialDelay": "PT0S",
                    "period": liveness_period,
                    "failureThreshold": 3,
                },
            },
        }

    def deploy(
        self,
        endpoint: str,
        name: str,
        code_id: str,
        *,
        workspace: str | None = None,
        traffic: bool = True,
        wait: bool = True,
        **settings: Any,
    ) -> httpx.Response:
        path = f"{self.endpoint_id(endpoint, workspace)}/deployments/{name}"
        response = self.ok("PUT", path, json=self.deployment_body(code_id, **settings))
        if wait:
            status = self.wait_operation(response, timeout=180)
            assert status == "Succeeded", self.logs(endpoint, name, workspace)
            if traffic:
                self.set_traffic(endpoint, {name: 100}, workspace)
        return response

    def set_traffic(
        self, endpoint: str, traffic: dict[str, int], workspace: str | None = None
    ) -> None:
        response = self.ok(
            "PATCH",
            self.endpoint_id(endpoint, workspace),
            json={"properties": {"traffic": traffic}},
        )
        assert self.wait_operation(response) == "Succeeded"

    def logs(self, endpoint: str, deployment: str, workspace: str | None = None) -> str:
        path = f"{self.endpoint_id(endpoint, workspace)}/deployments/{deployment}/getLogs"
        reply = self.call("POST", path, json={"tail": 50})
        return str(reply.json().get("content", reply.text))

    def state(self, path: str) -> str | None:
        reply = self.call("GET", path)
        if reply.status_code == 404:
            return None
        return str(reply.json()["properties"]["provisioningState"])

    # -- the data plane -------------------------------------------------------------------------

    def score_url(self, endpoint: str) -> str:
        return f"{self.gateway}/endpoints/{endpoint}/score"

    def score(
        self, endpoint: str, credential: str | None, body: Any = None, **headers: str
    ) -> httpx.Response:
        sent = {"Authorization": f"Bearer {credential}"} if credential else {}
        sent.update(headers)
        return self.http.post(self.score_url(endpoint), json=body or {"ping": 1}, headers=sent)

    def wait_scoring(self, endpoint: str, credential: str, *, timeout: float = 30.0) -> None:
        """Until the gateway's routing table has the endpoint's deployment (change feed)."""
        wait_until(
            lambda: self.score(endpoint, credential).status_code == 200,
            timeout=timeout,
            interval=0.1,
        )


@dataclass
class Budget:
    """A loop bound in both count and time (every load loop in these suites has one)."""

    count: int
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def __iter__(self) -> Iterator[int]:
        for index in range(self.count):
            if time.monotonic() - self.started > self.seconds:
                return
            yield index


def load_mode() -> str:
    """``ci`` (default, short) or ``full`` (1,000 connections, 10-minute soak)."""
    mode = os.environ.get("PROPYLON_LOAD_MODE", "ci").strip().lower()
    assert mode in ("ci", "full"), f"PROPYLON_LOAD_MODE must be ci or full, not {mode!r}"
    return mode


def signing_keys(data_dir: Path) -> list[Any]:
    """The server's own signing keys, opened from its store with its master key (as the server
    does): for tokens that are validly signed but carry the wrong claims."""
    from propylon.identity.keystore import KeyStore
    from propylon.store import Database, MasterKey, Sealer

    db = Database.connect(f"sqlite:///{data_dir / 'propylon.db'}")
    try:
        sealer = Sealer(MasterKey.load_or_create(data_dir / "master.key", None).material)
        keys = KeyStore(db, sealer).load()
    finally:
        db.dispose()
    return sorted(keys, key=lambda key: key.not_before_use, reverse=True)


def forge(claims: dict[str, Any], key: Any, **headers: Any) -> str:
    """An RS256 token over ``claims`` signed with a server key (``kid``/``x5t`` filled in)."""
    import jwt

    header = {"typ": "JWT", "kid": key.kid, "x5t": key.x5t, **headers}
    return str(jwt.encode(claims, key.private_key, algorithm="RS256", headers=header))


def access_claims(
    issuer: str, tenant: str, oid: str, audience: str, *, lifetime: int = 600, **extra: Any
) -> dict[str, Any]:
    """The claims of an app-only access token of the built-in issuer (tokens.py's shape)."""
    now = int(time.time())
    return {
        "aud": audience,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "tid": tenant,
        "oid": oid,
        "sub": oid,
        "idtyp": "app",
        "ver": "2.0",
        "appid": str(uuid.uuid4()),
        "uti": uuid.uuid4().hex,
        **extra,
    }
