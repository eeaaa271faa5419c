"""The command sequences of seeds 000 and 003, run verbatim with ``az`` → ``propylon``.

Against one real server: an administrator (the bootstrap service principal) creates people and
roles; the people sign in (device code, as ``az login`` does by default, or user name and
password), create endpoints of each auth mode from YAML, deploy the sample scikit-learn model
with ``--all-traffic``, and score it with ``invoke`` and with ``curl`` and a token or key they
fetched — and the predictions must be the model's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_shell import Shell

from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]
MODEL_1 = REPO / "examples" / "model-1"
ROLES = REPO / "examples" / "roles"
SCORE_ACTION = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"
CONTROL_ROLE = "Custom role for control plane operations - online endpoint"
SCORING_ROLE = "Custom role for scoring - online endpoint"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's files: endpoint and deployment YAML, the request, a freshly trained model."""
    root = tmp_path_factory.mktemp("walkthrough")
    subprocess.run(
        [sys.executable, str(MODEL_1 / "train.py"), "--out", str(root / "model-1")],
        check=True,
        capture_output=True,
    )
    (root / "request.json").write_text((MODEL_1 / "sample-request.json").read_text())
    (root / "sample-request.json").write_text((MODEL_1 / "sample-request.json").read_text())
    return root


def _deployment_yaml(workdir: Path, name: str, endpoint: str) -> Path:
    """The seed's blue-deployment.yml, pointing at the sample model, code and environment."""
    path = workdir / f"{name}-{endpoint}.yml"
    path.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
        f"name: {name}\n"
        f"endpoint_name: {endpoint}\n"
        "model:\n"
        "  path: ./model-1/model/\n"
        "code_configuration:\n"
        f"  code: {MODEL_1 / 'onlinescoring'}/\n"
        "  scoring_script: score.py\n"
        "environment:\n"
        f"  conda_file: {MODEL_1 / 'environment' / 'conda.yaml'}\n"
        "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n"
        "instance_type: Standard_DS3_v2\n"
        "instance_count: 1\n"
    )
    return path


def _expected(workdir: Path) -> list[float]:
    """The model's own predictions for the sample request."""
    import joblib
    import numpy

    model = joblib.load(workdir / "model-1" / "model" / "sklearn_regression_model.pkl")
    data = json.loads((workdir / "sample-request.json").read_text())["data"]
    return [float(x) for x in model.predict(numpy.array(data)).tolist()]


def _close(actual: Any, expected: list[float]) -> bool:
    return (
        isinstance(actual, list)
        and len(actual) == len(expected)
        and all(abs(float(a) - e) < 1e-6 for a, e in zip(actual, expected, strict=True))
    )


def _curl_score(server: RunningServer, uri: str, credential: str, workdir: Path) -> Any:
    """The seed's ``curl --request POST "$scoringUri" --header "Authorization: Bearer …"``."""
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "--cacert",
            str(server.ca_cert),
            "--request",
            "POST",
            uri,
            "--header",
            f"Authorization: Bearer {credential}",
            "--header",
            "Content-Type: application/json",
            "--data",
            "@sample-request.json",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def admin(server: RunningServer, workdir: Path) -> Shell:
    """The IT admin of the seeds: the bootstrap service principal (Owner at /)."""
    shell = Shell(workdir / "admin-config", workdir)
    shell.ok("login", "--data-dir", str(server.data_dir), "--service-principal")
    shell.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    return shell


def _person(admin: Shell, workdir: Path, name: str, password: str) -> tuple[str, str]:
    upn = f"{name}@contoso.local"
    user = admin.json(
        "ad",
        "user",
        "create",
        "--display-name",
        name.title(),
        "--user-principal-name",
        upn,
        "--password",
        password,
    )
    return str(user["id"]), upn


def _workspace_scope(server: RunningServer) -> str:
    info = server.bootstrap
    return (
        f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{info['workspace']}"
    )


def test_seed_000_walkthrough(server: RunningServer, workdir: Path, admin: Shell) -> None:
    password = "Seed-000-pw!"
    user_id, upn = _person(admin, workdir, "dana", password)
    # "the IT admin ... will be able to assign the proper role ... to your Azure identity"
    admin.ok(
        "role",
        "assignment",
        "create",
        "--assignee",
        user_id,
        "--role",
        "AzureML Data Scientist",
        "--scope",
        _workspace_scope(server),
    )
    dana = Shell(workdir / "dana-config", workdir)
    # az login
    accounts = json.loads(dana.device_login(server, upn, password))
    assert accounts[0]["user"] == {"name": upn, "type": "user"}
    dana.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    (workdir / "endpoint.yaml").write_text("name: my-endp1\nauth_mode: aad_token\n")
    deployment = _deployment_yaml(workdir, "blue", "my-endp1")
    (workdir / "deployment.yaml").write_text(deployment.read_text())

    # az ml online-endpoint create -n my-endp1 -f ./endpoint.yaml
    created = dana.json(
        "ml", "online-endpoint", "create", "-n", "my-endp1", "-f", "./endpoint.yaml"
    )
    assert created["auth_mode"] == "aad_token"
    # az ml online-deployment create -n blue -e my-endp1 -f ./deployment.yaml
    blue = dana.json(
        "ml",
        "online-deployment",
        "create",
        "-n",
        "blue",
        "-e",
        "my-endp1",
        "-f",
        "./deployment.yaml",
        "--all-traffic",
    )
    assert blue["provisioning_state"] == "Succeeded"
    # az ml online-endpoint invoke -n my-endp1 -r ./request.json
    predictions = dana.json(
        "ml", "online-endpoint", "invoke", "-n", "my-endp1", "-r", "./request.json"
    )
    assert _close(predictions, _expected(workdir))


def test_seed_003_walkthrough(server: RunningServer, workdir: Path, admin: Shell) -> None:
    info = server.bootstrap
    subscription = info["subscription_id"]
    workspace = _workspace_scope(server)
    for name in ("custom-role-for-control-plane.json", "custom-role-for-scoring.json"):
        text = (ROLES / name).read_text()
        text = text.replace("<subscriptionId>", subscription).replace(
            "<resourceGroupName>", info["resource_group"]
        )
        (workdir / name).write_text(text)

    # --- Create a custom role (optional) ---------------------------------------------------
    for name in ("custom-role-for-control-plane.json", "custom-role-for-scoring.json"):
        admin.ok(
            "role",
            "definition",
            "create",
            "--role-definition",
            name,
            "--subscription",
            subscription,
        )
    table = admin.ok("role", "definition", "list", "--custom-role-only", "-o", "table")
    assert CONTROL_ROLE in table
    assert SCORING_ROLE in table
    assert (
        admin.json("role", "definition", "list", "-n", CONTROL_ROLE)[0]["roleName"] == CONTROL_ROLE
    )
    role_definition_id1 = (
        admin.ok("role", "definition", "list", "-n", CONTROL_ROLE, "--query", "[0].id")
        .strip()
        .strip('"')
    )
    role_definition_id2 = (
        admin.ok("role", "definition", "list", "-n", SCORING_ROLE, "--query", "[0].id")
        .strip()
        .strip('"')
    )
    assert role_definition_id1.endswith(
        admin.json("role", "definition", "list", "-n", CONTROL_ROLE)[0]["name"]
    )
    assert role_definition_id2 != role_definition_id1

    # --- Assign the role to the identity ----------------------------------------------------
    password = "Seed-003-pw!"
    identity_id, upn = _person(admin, workdir, "erin", password)
    for role in ("AzureML Data Scientist", CONTROL_ROLE, SCORING_ROLE):
        admin.ok(
            "role",
            "assignment",
            "create",
            "--assignee",
            identity_id,
            "--role",
            role,
            "--scope",
            workspace,
        )
    listed = admin.json("role", "assignment", "list", "--scope", workspace)
    assert sorted(
        a["roleDefinitionName"] for a in listed if a["principalId"] == identity_id
    ) == sorted(["AzureML Data Scientist", CONTROL_ROLE, SCORING_ROLE])
    check = admin.json(
        "role", "check", "--assignee", upn, "--action", SCORE_ACTION, "--scope", workspace
    )
    assert check["allowed"] is True

    erin = Shell(workdir / "erin-config", workdir)
    erin.ok(
        "login",
        "--server",
        server.control_url,
        "--ca-cert",
        str(server.ca_cert),
        "--tenant",
        info["tenant_id"],
        "-u",
        upn,
        "-p",
        password,
        "--subscription",
        subscription,
    )
    erin.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")

    # --- Get Microsoft Entra token for control plane operations -----------------------------
    control_plane_token = (
        erin.ok(
            "account",
            "get-access-token",
            "--resource",
            "https://management.azure.com",
            "--query",
            "accessToken",
        )
        .strip()
        .strip('"')
    )
    with server.client() as client:
        reply = client.get(
            f"{server.control_url}{workspace}/onlineEndpoints",
            params={"api-version": "2023-04-01"},
            headers={"Authorization": f"Bearer {control_plane_token}"},
        )
    assert reply.status_code == 200

    # --- Create an endpoint ---------------------------------------------------------------
    (workdir / "endpoint.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
        "name: my-endpoint\nauth_mode: aad_token\n"
    )
    erin.ok("ml", "online-endpoint", "create", "-f", "endpoint.yml")
    assert (
        erin.json("ml", "online-endpoint", "show", "-n", "my-endpoint")["auth_mode"] == "aad_token"
    )
    erin.ok("ml", "online-endpoint", "create", "-n", "my-endpoint", "--auth_mode", "aad_token")
    erin.ok("ml", "online-endpoint", "update", "-n", "my-endpoint", "--set", "auth_mode=aad_token")

    # --- Create a deployment --------------------------------------------------------------
    blue = _deployment_yaml(workdir, "blue", "my-endpoint")
    (workdir / "blue-deployment.yml").write_text(blue.read_text())
    erin.ok("ml", "online-deployment", "create", "-f", "blue-deployment.yml", "--all-traffic")

    # --- Get scoring URI; get the key or token; score ---------------------------------------
    scoring_uri = erin.tsv(
        "ml", "online-endpoint", "show", "-n", "my-endpoint", "--query", "scoring_uri"
    )
    data_plane_token = (
        erin.ok(
            "account",
            "get-access-token",
            "--resource",
            "https://ml.azure.com",
            "--query",
            "accessToken",
        )
        .strip()
        .strip('"')
    )
    expected = _expected(workdir)
    assert _close(_curl_score(server, scoring_uri, data_plane_token, workdir), expected)
    invoked = erin.json(
        "ml", "online-endpoint", "invoke", "-n", "my-endpoint", "-r", "request.json"
    )
    assert _close(invoked, expected)

    # Key and aml_token endpoints: get-credentials, then curl with what it gave.
    for endpoint, mode, field in (
        ("my-key-endpoint", "key", "primaryKey"),
        ("my-token-endpoint", "aml_token", "accessToken"),
    ):
        erin.ok("ml", "online-endpoint", "create", "-n", endpoint, "--auth-mode", mode)
        erin.ok(
            "ml",
            "online-deployment",
            "create",
            "-f",
            str(_deployment_yaml(workdir, "blue", endpoint)),
            "--all-traffic",
        )
        credential = erin.tsv(
            "ml",
            "online-endpoint",
            "get-credentials",
            "-n",
            endpoint,
            "-g",
            info["resource_group"],
            "-w",
            info["workspace"],
            "--query",
            field,
        )
        uri = erin.tsv("ml", "online-endpoint", "show", "-n", endpoint, "--query", "scoring_uri")
        assert _close(_curl_score(server, uri, credential, workdir), expected)
        assert _close(
            erin.json("ml", "online-endpoint", "invoke", "-n", endpoint, "-r", "request.json"),
            expected,
        )


def test_a_scorer_cannot_manage_and_is_told_in_one_line(
    server: RunningServer, workdir: Path, admin: Shell
) -> None:
    """The seed's split of duties: a role that only scores does not manage endpoints."""
    info = server.bootstrap
    scope = f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
    role = {  # ARM-shaped this time, inline, as `az role definition create` also takes it
        "properties": {
            "roleName": "Scorer only",
            "description": "Scores online endpoints and nothing else.",
            "permissions": [{"actions": [SCORE_ACTION]}],
            "assignableScopes": [scope],
        }
    }
    admin.ok("role", "definition", "create", "--role-definition", json.dumps(role))
    password = "Scorer-only-pw!"
    identity_id, upn = _person(admin, workdir, "frank", password)
    admin.ok(
        "role",
        "assignment",
        "create",
        "--assignee",
        upn,
        "--role",
        "Scorer only",
        "--scope",
        _workspace_scope(server),
    )
    frank = Shell(workdir / "frank-config", workdir)
    frank.ok(
        "login",
        "--server",
        server.control_url,
        "--ca-cert",
        str(server.ca_cert),
        "--tenant",
        info["tenant_id"],
        "-u",
        upn,
        "-p",
        password,
        "--subscription",
        info["subscription_id"],
    )
    frank.ok("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    line = frank.fails("ml", "online-endpoint", "create", "-n", "franks-endpoint")
    assert line.startswith("propylon: error: (AuthorizationFailed) ")
    # The first call of a create is the workspace GET (for its location, as azure-ai-ml does),
    # which a scoring-only role cannot make either.
    assert (
        "does not have authorization to perform action 'Microsoft.MachineLearningServices/" in line
    )
    assert identity_id in line
