"""Who may do what: every control-plane operation and every scoring mode × every kind of principal,
against one live server, with the expected verdict written by hand from the role definitions.

Principals (all but the first hold their role at the workspace ``default-ws``):

* ``root-owner`` — the bootstrap administrator, Owner at ``/``;
* ``owner``, ``contributor``, ``reader``, ``data-scientist`` — the built-in roles;
* ``custom-control``, ``custom-scoring`` — the two custom roles of seed 003
  (``examples/roles/``): CRUD + token/listKeys/regenerateKeys, and ``onlineEndpoints/*/action``;
* ``group-member`` — a user whose group holds AzureML Data Scientist;
* ``managed-identity`` — the system-assigned identity of endpoint ``mi-host``, holding AzureML Data
  Scientist on endpoint ``ep-aad`` only; its tokens come from its own instance's
  ``IDENTITY_ENDPOINT`` (the scoring code in ``mi_model/`` answers with them);
* ``unassigned`` — a service principal of our tenant without any role;
* ``other-tenant`` — a service principal of another Propylon (tenant B) whose issuer this server
  trusts: authenticated, but it holds nothing here;
* ``untrusted-issuer`` — a service principal of a third Propylon nobody configured.

Verdicts: ``A`` allowed; ``D`` refused with 403 ``AuthorizationFailed`` naming the action and the
scope; ``U`` refused with 401 (not authenticated). Why each ``D`` (reference §2, §2.2):

* Owner at the workspace has ``*`` there but nothing at ``/``, where the directory lives;
* Contributor's notActions remove ``Microsoft.Authorization/*/Write``;
* Reader's ``*/read`` matches no ``/action`` and no write (listKeys is an action: no secrets);
* Data Scientist has only ``Microsoft.MachineLearningServices/workspaces/*`` actions;
* the custom control-plane role names ``onlineEndpoints/{write,delete,read}`` exactly, so the
  ``onlineEndpoints/deployments/*`` actions (ARM's actions for the deployment resource type) and
  ``score/action`` are outside it — the seed's prose "CRUD on an online endpoint" means exactly
  that;
* the custom scoring role's ``onlineEndpoints/*/action`` matches every action below an endpoint
  (token, listKeys, regenerateKeys, deployments/getLogs, score) — ``*`` spans segments — and no
  read or write.

Scoring with a key or an aml_token needs no RBAC (possession of the secret is the
authorization, §2.2): the cell is *allowed* when the principal can obtain the secret
(listKeys / token) and then scores with it; *refused* cells show that the principal's own identity
token does not open a key or aml_token endpoint (401).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from live_platform import (
    AUTHZ_API,
    ML,
    LivePlatform,
    Principal,
    SecretLedger,
    access_claims,
    forge,
    process_tree,
    signing_keys,
    tarball,
)
from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow

ARM = "https://management.azure.com"
EP = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"

OPS = (
    "endpoint.create",
    "endpoint.read",
    "endpoint.update",
    "endpoint.delete",
    "deployment.create",
    "deployment.read",
    "deployment.delete",
    "listKeys",
    "regenerateKeys",
    "token",
    "getLogs",
    "roleDefinition.write",
    "roleAssignment.write",
    "directory.write",
    "score.key",
    "score.aml_token",
    "score.aad_token",
)

# fmt: off
#                      endpoint     deployment   list regen tok  logs rdef rasg dir   score
#                      c  r  u  d   c  r  d      keys                                key aml aad
EXPECTED_ROWS = {
    "root-owner":       "A  A  A  A   A  A  A   A    A    A    A    A    A    A     A   A   A",
    "owner":            "A  A  A  A   A  A  A   A    A    A    A    A    A    D     A   A   A",
    "contributor":      "A  A  A  A   A  A  A   A    A    A    A    D    D    D     A   A   A",
    "reader":           "D  A  D  D   D  A  D   D    D    D    D    D    D    D     D   D   D",
    "data-scientist":   "A  A  A  A   A  A  A   A    A    A    A    D    D    D     A   A   A",
    "custom-control":   "A  A  A  A   D  D  D   A    A    A    D    D    D    D     A   A   D",
    "custom-scoring":   "D  D  D  D   D  D  D   A    A    A    A    D    D    D     A   A   A",
    "group-member":     "A  A  A  A   A  A  A   A    A    A    A    D    D    D     A   A   A",
    "managed-identity": "D  D  D  D   D  D  D   D    D    D    D    D    D    D     D   D   A",
    "unassigned":       "D  D  D  D   D  D  D   D    D    D    D    D    D    D     D   D   D",
    "other-tenant":     "D  D  D  D   D  D  D   D    D    D    D    D    D    D     D   D   D",
    "untrusted-issuer": "U  U  U  U   U  U  U   U    U    U    U    U    U    U     U   U   U",
}
# fmt: on
EXPECTED = {
    (principal, op): verdict
    for principal, row in EXPECTED_ROWS.items()
    for op, verdict in zip(OPS, row.split(), strict=True)
}

# The action each operation needs (what a 403 must name).
ACTIONS = {
    "endpoint.create": f"{EP}/write",
    "endpoint.read": f"{EP}/read",
    "endpoint.update": f"{EP}/write",
    "endpoint.delete": f"{EP}/delete",
    "deployment.create": f"{EP}/deployments/write",
    "deployment.read": f"{EP}/deployments/read",
    "deployment.delete": f"{EP}/deployments/delete",
    "listKeys": f"{EP}/listKeys/action",
    "regenerateKeys": f"{EP}/regenerateKeys/action",
    "token": f"{EP}/token/action",
    "getLogs": f"{EP}/deployments/getLogs/action",
    "roleDefinition.write": "Microsoft.Authorization/roleDefinitions/write",
    "roleAssignment.write": "Microsoft.Authorization/roleAssignments/write",
    "directory.write": "Microsoft.Directory/users/write",
    "score.key": f"{EP}/listKeys/action",
    "score.aml_token": f"{EP}/token/action",
    "score.aad_token": f"{EP}/score/action",
}


@dataclass
class Actor:
    """A principal as the matrix uses it: a name, an object id and a way to get its tokens."""

    name: str
    oid: str
    get_token: Callable[[str], str]
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, resource: str = ARM) -> str:
        if resource not in self._tokens:
            self._tokens[resource] = self.get_token(resource)
        return self._tokens[resource]


@dataclass
class World:
    live: LivePlatform
    actors: dict[str, Actor]
    other: RunningServer
    untrusted: RunningServer
    workspace2: str
    bystander: Principal
    group_id: str
    echo_code: str
    keys: dict[str, str]
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ws(self) -> str:
        return self.live.workspace_id()


def _trust(other: RunningServer) -> str:
    """PROPYLON_TRUSTED_ISSUERS for tenant B: its discovery document, its CA, our audiences."""
    tenant = other.bootstrap["tenant_id"]
    issuer = f"{other.control_url}/{tenant}/v2.0"
    return json.dumps(
        [
            {
                "issuer": issuer,
                "discovery_url": f"{issuer}/.well-known/openid-configuration",
                "tenant_id": tenant,
                "audiences": [ARM, ML],
                "ca_file": other.ca_cert,
            }
        ]
    )


def _mi_token_getter(live: LivePlatform, key: str) -> Callable[[str], str]:
    def get(resource: str) -> str:
        answer = live.score("mi-host", key, {"resource": resource})
        assert answer.status_code == 200, answer.text
        return live.ledger.add("managed identity token", answer.json()["access_token"])

    return get


@pytest.fixture(scope="module")
def ledger() -> SecretLedger:
    return SecretLedger()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, ledger: SecretLedger) -> Iterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    other = RunningServer.start(root / "tenant-b")
    untrusted = RunningServer.start(root / "nobody")
    server = RunningServer.start(root / "data", env={"PROPYLON_TRUSTED_ISSUERS": _trust(other)})
    live = LivePlatform(server, ledger)
    try:
        yield _build_world(live, other, untrusted)
    finally:
        live.close()
        server.stop()
        other.stop()
        untrusted.stop()


def _build_world(live: LivePlatform, other: RunningServer, untrusted: RunningServer) -> World:
    ws = live.workspace_id()
    code = live.echo_code()
    for name, mode in (("ep-key", "Key"), ("ep-aml", "AMLToken"), ("ep-aad", "AADToken")):
        live.endpoint(name, mode)
        live.deploy(name, "blue", code)
    live.endpoint("ep-regen", "Key")
    workspace2 = live.create_workspace("second-ws")
    live.endpoint("ep-w2", "AADToken", workspace="second-ws")
    live.deploy("ep-w2", "blue", live.echo_code("second-ws"), workspace="second-ws")

    mi_host = live.endpoint("mi-host", "Key", identity="SystemAssigned")
    mi_code = live.upload_code("mi", tarball(Path(__file__).parent / "mi_model"))
    live.deploy("mi-host", "blue", mi_code)
    mi_oid = mi_host["identity"]["principalId"]
    mi_key = live.keys("mi-host")["primaryKey"]

    people: dict[str, Principal] = {
        "owner": live.user("owner"),
        "contributor": live.app("contributor"),
        "reader": live.user("reader"),
        "data-scientist": live.app("data-scientist"),
        "custom-control": live.user("custom-control"),
        "custom-scoring": live.app("custom-scoring"),
        "group-member": live.user("group-member"),
        "unassigned": live.app("unassigned"),
    }
    control_role = live.custom_role("custom-role-for-control-plane.json", ws)
    scoring_role = live.custom_role("custom-role-for-scoring.json", ws)
    for name, role in (
        ("owner", "Owner"),
        ("contributor", "Contributor"),
        ("reader", "Reader"),
        ("data-scientist", "AzureML Data Scientist"),
        ("custom-control", control_role),
        ("custom-scoring", scoring_role),
    ):
        who = people[name]
        live.assign(who.oid, role, ws, "User" if who.kind == "user" else "ServicePrincipal")
    group = live.group("scientists", [people["group-member"]])
    live.assign(group, "AzureML Data Scientist", ws, "Group")
    live.assign(mi_oid, "AzureML Data Scientist", live.endpoint_id("ep-aad"), "ServicePrincipal")

    actors = {
        name: Actor(name, who.oid, lambda r, who=who: live.token_for(who, r))
        for name, who in people.items()
    }
    actors["root-owner"] = Actor("root-owner", "", lambda r: live.token_for(live.admin, r))
    actors["managed-identity"] = Actor("managed-identity", mi_oid, _mi_token_getter(live, mi_key))
    for name, server in (("other-tenant", other), ("untrusted-issuer", untrusted)):
        actors[name] = Actor(
            name, "", lambda r, s=server, n=name: live.ledger.add(f"token of {n}", s.token(r))
        )

    keys = live.keys("ep-key")
    world = World(
        live=live,
        actors=actors,
        other=other,
        untrusted=untrusted,
        workspace2=workspace2,
        bystander=live.user("bystander"),
        group_id=group,
        echo_code=code,
        keys=keys,
    )
    # Role changes reach the RBAC cache through the change feed within a second.
    wait_until(
        lambda: (
            live.call("GET", live.endpoint_id("ep-key"), who=people["owner"]).status_code == 200
        ),
        timeout=10,
    )
    for name in ("ep-key", "ep-aml", "ep-aad", "ep-w2"):
        credential = keys["primaryKey"] if name == "ep-key" else None
        if name == "ep-aml":
            credential = live.aml_token("ep-aml")
        elif name in ("ep-aad", "ep-w2"):
            credential = live.token_for(live.admin, ML)
        assert credential is not None
        live.wait_scoring(name, credential)
    return world


# --- the cells -----------------------------------------------------------------------------------


class Attempt:
    """One operation as one actor: a method per operation (``endpoint.create`` →
    :meth:`endpoint_create`), each returning the responses whose status decides the verdict.
    A refused write is followed by the administrator's check that nothing changed."""

    def __init__(self, world: World, actor: Actor, verdict: str) -> None:
        self.world, self.live, self.actor, self.verdict = world, world.live, actor, verdict
        self.name = actor.name
        self.bearer = actor.token(ARM)

    def run(self, op: str) -> list[httpx.Response]:
        responses: list[httpx.Response] = getattr(self, op.replace(".", "_"))()
        return responses

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> httpx.Response:
        return self.live.call(method, path, token=self.bearer, json=body, params=params)

    def ep(self, name: str = "ep-key") -> str:
        return self.live.endpoint_id(name)

    def endpoint_create(self) -> list[httpx.Response]:
        path = self.ep(f"mx-{self.name}-new")
        answer = self.call("PUT", path, {"location": "local", "properties": {"authMode": "Key"}})
        if self.verdict != "A":
            assert self.live.state(path) is None
        return [answer]

    def endpoint_read(self) -> list[httpx.Response]:
        return [self.call("GET", self.ep())]

    def endpoint_update(self) -> list[httpx.Response]:
        with self.world.lock:
            answer = self.call("PATCH", self.ep(), {"tags": {"touched-by": self.name}})
            if answer.status_code == 202:
                self.live.wait_operation(answer)
        tags = self.live.ok("GET", self.ep()).json().get("tags") or {}
        assert (tags.get("touched-by") == self.name) == (self.verdict == "A")
        return [answer]

    def endpoint_delete(self) -> list[httpx.Response]:
        if self.verdict == "A":  # its own endpoint, made for the purpose
            self.live.endpoint(f"mx-{self.name}-del")
            answer = self.call("DELETE", self.ep(f"mx-{self.name}-del"))
            if answer.status_code == 202:
                self.live.wait_operation(answer)
            assert self.live.state(self.ep(f"mx-{self.name}-del")) is None
            return [answer]
        answer = self.call("DELETE", self.ep())
        assert self.live.state(self.ep()) == "Succeeded"
        return [answer]

    def deployment_create(self) -> list[httpx.Response]:
        path = f"{self.ep()}/deployments/c-{self.name}"
        answer = self.call("PUT", path, self.live.deployment_body(self.world.echo_code))
        if answer.status_code in (200, 201):
            assert self.live.wait_operation(answer) == "Succeeded"
            self.live.call("DELETE", path)  # one instance fewer to run
        else:
            assert self.live.state(path) is None
        return [answer]

    def deployment_read(self) -> list[httpx.Response]:
        return [self.call("GET", f"{self.ep()}/deployments/blue")]

    def deployment_delete(self) -> list[httpx.Response]:
        if self.verdict == "A":  # its own deployment, made for the purpose
            path = f"{self.ep()}/deployments/d-{self.name}"
            self.live.deploy("ep-key", f"d-{self.name}", self.world.echo_code, traffic=False)
            answer = self.call("DELETE", path)
            if answer.status_code == 202:
                self.live.wait_operation(answer)
            assert self.live.state(path) is None
            return [answer]
        path = f"{self.ep()}/deployments/blue"
        answer = self.call("DELETE", path)
        assert self.live.state(path) == "Succeeded"
        return [answer]

    def listKeys(self) -> list[httpx.Response]:
        answer = self.call("POST", f"{self.ep()}/listKeys")
        if answer.status_code == 200:
            assert answer.json() == self.world.keys
        return [answer]

    def regenerateKeys(self) -> list[httpx.Response]:
        with self.world.lock:
            path = f"{self.ep('ep-regen')}/regenerateKeys"
            answer = self.call("POST", path, {"keyType": "Secondary"})
            if answer.status_code == 202:
                assert self.live.wait_operation(answer) == "Succeeded"
        return [answer]

    def token(self) -> list[httpx.Response]:
        answer = self.call("POST", f"{self.ep('ep-aml')}/token")
        if answer.status_code == 200:
            self.live.ledger.add("aml_token", answer.json()["accessToken"])
        return [answer]

    def getLogs(self) -> list[httpx.Response]:
        return [self.call("POST", f"{self.ep()}/deployments/blue/getLogs", {})]

    def roleDefinition_write(self) -> list[httpx.Response]:
        ws = self.world.ws
        role = {
            "Name": f"mx-role-{self.name}",
            "IsCustom": True,
            "Actions": [f"{EP}/read"],
            "AssignableScopes": [ws],
        }
        path = f"{ws}/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}"
        return [self.call("PUT", path, role, AUTHZ_API)]

    def roleAssignment_write(self) -> list[httpx.Response]:
        scope = f"{self.world.ws}/onlineEndpoints/scope-of-{self.name}"
        body = {
            "properties": {
                "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{READER}",
                "principalId": self.world.bystander.oid,
                "principalType": "User",
            }
        }
        path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
        return [self.call("PUT", path, body, AUTHZ_API)]

    def directory_write(self) -> list[httpx.Response]:
        password = self.live.ledger.add("password", f"Pw-{uuid.uuid4()}")
        body = {
            "accountEnabled": True,
            "displayName": f"made by {self.name}",
            "userPrincipalName": f"made-by-{self.name}@security.test",
            "passwordProfile": {"password": password},
        }
        return [self.call("POST", "/v1.0/users", body, {})]

    def score_key(self) -> list[httpx.Response]:
        listed = self.call("POST", f"{self.ep()}/listKeys")
        if listed.status_code == 200:
            return [self.live.score("ep-key", listed.json()["primaryKey"])]
        return [listed, self.live.score("ep-key", self.actor.token(ML))]

    def score_aml_token(self) -> list[httpx.Response]:
        minted = self.call("POST", f"{self.ep('ep-aml')}/token")
        if minted.status_code == 200:
            aml = self.live.ledger.add("aml_token", minted.json()["accessToken"])
            return [self.live.score("ep-aml", aml)]
        return [minted, self.live.score("ep-aml", self.actor.token(ML))]

    def score_aad_token(self) -> list[httpx.Response]:
        return [self.live.score("ep-aad", self.actor.token(ML))]


_ALLOWED = {
    "endpoint.create": {200, 201},
    "endpoint.update": {202},
    "endpoint.delete": {202},
    "deployment.create": {200, 201},
    "deployment.delete": {202},
    "regenerateKeys": {202},
    "roleDefinition.write": {201},
    "roleAssignment.write": {201},
    "directory.write": {201},
}


def _assert_verdict(world: World, actor: Actor, op: str, verdict: str) -> None:
    responses = Attempt(world, actor, verdict).run(op)
    decisive = responses[0]
    if verdict == "A":
        assert decisive.status_code in _ALLOWED.get(op, {200}), decisive.text
        return
    if verdict == "U":
        assert decisive.status_code == 401, decisive.text
        assert "www-authenticate" in decisive.headers
    else:
        assert decisive.status_code == 403, decisive.text
        error = decisive.json()["error"]
        assert error["code"] == "AuthorizationFailed"
        assert ACTIONS[op].lower() in error["message"].lower()
        assert " scope '" in error["message"]
    if op in ("score.key", "score.aml_token"):
        # Its own identity token does not open an endpoint of another auth mode.
        scored = responses[1]
        assert scored.status_code == 401, scored.text
        assert scored.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("principal", "op"),
    [(principal, op) for principal in EXPECTED_ROWS for op in OPS],
)
def test_matrix(world: World, principal: str, op: str) -> None:
    _assert_verdict(world, world.actors[principal], op, EXPECTED[(principal, op)])


# --- across boundaries: workspaces, endpoints, tenants -------------------------------------------


def _ep2(world: World, suffix: str = "") -> str:
    return f"{world.live.endpoint_id('ep-w2', 'second-ws')}{suffix}"


def _owner_for_self(world: World, token: str, scope: str) -> httpx.Response:
    """The workspace owner tries to make itself Owner at another scope."""
    body = {
        "properties": {
            "roleDefinitionId": f"/providers/Microsoft.Authorization/roleDefinitions/{OWNER}",
            "principalId": world.actors["owner"].oid,
        }
    }
    path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}"
    return world.live.call("PUT", path, token=token, json=body, params=AUTHZ_API)


CROSS = {
    # A role at workspace W does not reach workspace W2 of the same resource group.
    "data-scientist reads an endpoint of another workspace": (
        "data-scientist",
        lambda w, t: w.live.call("GET", _ep2(w), token=t(ARM)),
        403,
    ),
    "data-scientist lists keys in another workspace": (
        "data-scientist",
        lambda w, t: w.live.call("POST", _ep2(w, "/listKeys"), token=t(ARM)),
        403,
    ),
    "data-scientist creates an endpoint in another workspace": (
        "data-scientist",
        lambda w, t: w.live.call(
            "PUT",
            w.live.endpoint_id("mx-sneaky", "second-ws"),
            token=t(ARM),
            json={"location": "local", "properties": {"authMode": "Key"}},
        ),
        403,
    ),
    "data-scientist scores an endpoint of another workspace": (
        "data-scientist",
        lambda w, t: w.live.score("ep-w2", t(ML)),
        403,
    ),
    "group-member scores an endpoint of another workspace": (
        "group-member",
        lambda w, t: w.live.score("ep-w2", t(ML)),
        403,
    ),
    "owner assigns roles in another workspace": (
        "owner",
        lambda w, t: _owner_for_self(w, t(ARM), w.workspace2),
        403,
    ),
    "owner widens its own role to the resource group": (
        "owner",
        lambda w, t: _owner_for_self(
            w, t(ARM), f"/subscriptions/{w.live.subscription}/resourceGroups/default-rg"
        ),
        403,
    ),
    "root-owner scores the other workspace's endpoint (the endpoint works)": (
        "root-owner",
        lambda w, t: w.live.score("ep-w2", t(ML)),
        200,
    ),
    # A role on one endpoint does not reach its siblings.
    "managed-identity reads the endpoint it holds a role on": (
        "managed-identity",
        lambda w, t: w.live.call("GET", w.live.endpoint_id("ep-aad"), token=t(ARM)),
        200,
    ),
    "managed-identity reads a sibling endpoint": (
        "managed-identity",
        lambda w, t: w.live.call("GET", w.live.endpoint_id("ep-key"), token=t(ARM)),
        403,
    ),
    "managed-identity scores a sibling aad_token endpoint": (
        "managed-identity",
        lambda w, t: w.live.score("ep-w2", t(ML)),
        403,
    ),
    "managed-identity deletes the endpoint that hosts it": (
        "managed-identity",
        lambda w, t: w.live.call("DELETE", w.live.endpoint_id("mi-host"), token=t(ARM)),
        403,
    ),
    # The management token of a principal is no data-plane token and vice versa.
    "data-scientist scores with its management-audience token": (
        "data-scientist",
        lambda w, t: w.live.score("ep-aad", t(ARM)),
        401,
    ),
    "data-scientist manages with its data-plane token": (
        "data-scientist",
        lambda w, t: w.live.call("GET", w.live.endpoint_id("ep-key"), token=t(ML)),
        401,
    ),
    # Tenant B's directory objects are not ours, even through a trusted issuer.
    "other-tenant reads our directory": (
        "other-tenant",
        lambda w, t: w.live.call("GET", "/v1.0/users", token=t(ARM), params={}),
        403,
    ),
}


@pytest.mark.parametrize("case", list(CROSS))
def test_across_boundaries(world: World, case: str) -> None:
    principal, attempt, status = CROSS[case]
    answer = attempt(world, world.actors[principal].token)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert answer.json()["error"]["code"] == "AuthorizationFailed"


def _tenant_b_token(world: World, **claims: Any) -> str:
    """A token that tenant B's issuer really signed (its key, read from its store)."""
    other = world.other
    tenant = other.bootstrap["tenant_id"]
    base = access_claims(f"{other.control_url}/{tenant}/v2.0", tenant, str(uuid.uuid4()), ARM)
    return forge({**base, **claims}, signing_keys(other.data_dir)[0])


def test_another_tenant_cannot_borrow_one_of_our_object_ids(world: World) -> None:
    token = _tenant_b_token(world, oid=world.actors["data-scientist"].oid)
    answer = world.live.call("GET", world.live.endpoint_id("ep-key"), token=token)
    assert answer.status_code in (401, 403), answer.text


def test_another_tenant_cannot_claim_membership_of_our_groups(world: World) -> None:
    token = _tenant_b_token(world, groups=[world.group_id])
    answer = world.live.call("GET", world.live.endpoint_id("ep-key"), token=token)
    assert answer.status_code in (401, 403), answer.text


def test_a_tenant_b_token_for_an_object_id_of_b_is_refused_here(world: World) -> None:
    token = _tenant_b_token(world)
    answer = world.live.call("GET", world.live.endpoint_id("ep-key"), token=token)
    assert answer.status_code == 403
    scored = world.live.score("ep-aad", _tenant_b_token(world, aud=ML))
    assert scored.status_code == 403


def test_a_tenant_b_principal_given_a_role_here_gets_aml_tokens_that_score(world: World) -> None:
    """The legitimate cross-tenant case: a role assignment naming B's principal by its oid."""
    live, oid = world.live, str(uuid.uuid4())
    endpoint = live.endpoint_id("ep-aml")
    token = _tenant_b_token(world, oid=oid)
    assert live.call("POST", f"{endpoint}/token", token=token).status_code == 403
    assignment = live.assign(oid, "AzureML Data Scientist", endpoint)
    try:
        wait_until(
            lambda: live.call("POST", f"{endpoint}/token", token=token).status_code == 200,
            timeout=5,
        )
        minted = live.call("POST", f"{endpoint}/token", token=token).json()["accessToken"]
        live.ledger.add("aml_token of a tenant B principal", minted)
        assert live.score("ep-aml", minted).status_code == 200
    finally:
        live.unassign(endpoint, assignment)


def test_unknown_kids_of_a_trusted_issuer_do_not_hammer_its_key_set(world: World) -> None:
    """§6.3 #4/#6: an unknown ``kid`` triggers at most one rate-limited refresh of the JWKS."""
    other = world.other
    tenant = other.bootstrap["tenant_id"]
    marker = f'"path": "/{tenant}/discovery/v2.0/keys"'

    def fetches() -> int:
        return sum(marker in line for line in other.log_text().splitlines())

    before = fetches()
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = f"{other.control_url}/{tenant}/v2.0"
    for _ in range(20):
        claims = access_claims(issuer, tenant, str(uuid.uuid4()), ARM)
        token = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": uuid.uuid4().hex})
        answer = world.live.call("GET", world.live.endpoint_id("ep-key"), token=token)
        assert answer.status_code == 401
    time.sleep(0.5)
    assert fetches() - before <= 1


def test_zz_no_secret_of_this_module_rests_in_plaintext_or_on_a_command_line(
    world: World, ledger: SecretLedger
) -> None:
    time.sleep(1.5)  # the traffic log flushes once a second
    server = world.live.server
    pids = process_tree(server.process.pid)
    for pid in pids:  # the instances' identity-endpoint secrets, from their environment
        with contextlib.suppress(OSError):
            for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                name, _, value = entry.decode(errors="replace").partition("=")
                if name in ("IDENTITY_HEADER", "MSI_SECRET"):
                    ledger.add(f"{name} of instance {pid}", value)
    assert any(label.startswith("IDENTITY_HEADER") for label in ledger.values.values())
    assert len(ledger.values) > 30
    assert ledger.found_in_files(server.data_dir) == []
    assert ledger.found_on_command_lines(pids) == []
