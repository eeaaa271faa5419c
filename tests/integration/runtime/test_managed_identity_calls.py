"""A scoring script calls another endpoint as its endpoint's managed identity (issue 6).

The caller's score.py uses the unmodified ``azure.identity.ManagedIdentityCredential`` (App Service
protocol through ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``) to get a token for
``https://ml.azure.com`` and POSTs to an ``aad_token`` endpoint: refused (403) until a role
assignment grants the caller's identity the score action on the target, then served.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

CALLER_SCRIPT = """
import json, os, ssl, urllib.error, urllib.request
from azure.identity import ManagedIdentityCredential

def init():
    pass

def run(raw_data):
    token = ManagedIdentityCredential().get_token("https://ml.azure.com/.default").token
    request = urllib.request.Request(
        os.environ["TARGET_URI"], data=raw_data.encode(), method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return {"status": answer.status, "body": json.loads(answer.read())}
    except urllib.error.HTTPError as refused:
        return {"status": refused.code}
"""


class Cli:
    def __init__(self, config: Path, cwd: Path) -> None:
        self.env = {**os.environ, "PROPYLON_CONFIG_DIR": str(config), "NO_COLOR": "1"}
        self.cwd = cwd

    def json(self, *args: str) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "propylon", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"propylon {' '.join(args)}: {result.stderr}"
        return json.loads(result.stdout) if result.stdout.strip() else None


def deployment_yaml(work: Path, endpoint: str, code: Path, variables: dict[str, str]) -> Path:
    model = work / "model"
    model.mkdir(exist_ok=True)
    (model / "README").write_text("no weights: the scripts here need none\n")
    lines = [
        "name: blue",
        f"endpoint_name: {endpoint}",
        f"model:\n  path: {model}",
        f"code_configuration:\n  code: {code}\n  scoring_script: score.py",
        "environment:\n  image: mcr.microsoft.com/azureml/minimal-py311-inference:latest",
        "instance_type: Standard_DS3_v2",
        "instance_count: 1",
        "environment_variables:",
        *(f"  {key}: {value}" for key, value in variables.items()),
    ]
    path = work / f"{endpoint}.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def cli(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    work = tmp_path_factory.mktemp("mi")
    shell = Cli(work / "config", work)
    shell.json("login", "--data-dir", str(server.data_dir), "--service-principal")
    shell.json("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    return shell


def test_managed_identity_is_refused_until_granted_score(
    server: RunningServer, cli: Cli, tmp_path: Path
) -> None:
    cli.json("ml", "online-endpoint", "create", "-n", "mi-target", "--auth-mode", "aad_token")
    target = deployment_yaml(tmp_path, "mi-target", REPO / "examples" / "echo", {"X": "1"})
    cli.json("ml", "online-deployment", "create", "-f", str(target), "--all-traffic")

    caller_code = tmp_path / "caller"
    caller_code.mkdir()
    (caller_code / "score.py").write_text(CALLER_SCRIPT)
    uri = f"{server.gateway_url}/endpoints/mi-target/score"
    caller_endpoint = cli.json(
        "ml", "online-endpoint", "create", "-n", "mi-caller", "--auth-mode", "key"
    )
    principal = caller_endpoint["identity"]["principal_id"]
    caller = deployment_yaml(tmp_path, "mi-caller", caller_code, {"TARGET_URI": uri})
    cli.json("ml", "online-deployment", "create", "-f", str(caller), "--all-traffic")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"data": [1, 2, 3]}))

    def invoke() -> Any:
        return cli.json("ml", "online-endpoint", "invoke", "-n", "mi-caller", "-r", str(request))

    assert invoke() == {"status": 403}
    cli.json(
        "role", "assignment", "create",
        "--assignee", principal,
        "--role", "AzureML Data Scientist",
        "--scope", f"{server.workspace_id}/onlineEndpoints/mi-target",
    )  # fmt: skip
    granted = wait_until(lambda: (answer := invoke())["status"] == 200 and answer, timeout=30)
    assert granted == {"status": 200, "body": {"data": [1, 2, 3]}}
