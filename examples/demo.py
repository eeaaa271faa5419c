"""`make demo`: the whole story on the embedded defaults, with the real `propylon` command.

1. a server on ./.propylon (HTTPS, control plane :8080, gateway :8081), reused if it already runs;
2. the administrator signs in; one endpoint per auth mode (key, aml_token, aad_token);
3. the sample scikit-learn model deployed as `blue` on each, and each endpoint invoked;
4. a `green` deployment at 10 % of the key endpoint's traffic, then all of it;
5. a custom scoring role and a new user who can score the aad_token endpoint but not manage it.

Every step prints the command it ran and what came back. Re-running it is safe.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from propylon.testing import RunningServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MODEL_1 = EXAMPLES / "model-1"
DATA_DIR = REPO / ".propylon"
CLI_CONFIG = DATA_DIR / "cli"
WORK = DATA_DIR / "demo"
ENDPOINTS = {"key": "demo-key", "aml_token": "demo-aml-token", "aad_token": "demo-aad-token"}
SCORER = "sam@propylon.local"
SCORER_PASSWORD = "Demo-scorer-pw-1!"  # noqa: S105 - a demo user's password, printed on purpose
SCORING_ROLE = "Custom role for scoring - online endpoint"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def propylon(*args: str, config: Path = CLI_CONFIG, check: bool = True, quiet: bool = False) -> str:
    """Run the CLI as a user would; print the command and a short form of its answer."""
    print(f"$ propylon {shlex.join(args)}", flush=True)
    env = {**os.environ, "PROPYLON_CONFIG_DIR": str(config), "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "propylon", *args],
        cwd=WORK,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout.strip()
    if result.returncode != 0:
        print(f"  -> {result.stderr.strip()}", flush=True)
        if check:
            raise SystemExit(f"demo step failed: propylon {shlex.join(args)}")
        return ""
    shown = output if len(output) < 400 else output[:400] + " …"
    if shown and not quiet:
        print("  -> " + shown.replace("\n", "\n     "), flush=True)
    return output


def ensure_server() -> tuple[dict[str, Any], int | None]:
    """Reuse a healthy server on the default ports, else start one that outlives the demo."""
    bootstrap = DATA_DIR / "bootstrap.json"
    ca = DATA_DIR / "tls" / "ca.pem"
    if bootstrap.exists() and ca.exists():
        try:
            health = httpx.get("https://127.0.0.1:8080/healthz", verify=str(ca), timeout=2)
            health.raise_for_status()
        except httpx.HTTPError:
            pass
        else:
            print("a server is already running on 8080/8081 with ./.propylon: reusing it")
            return json.loads(bootstrap.read_text()), None
    server = RunningServer.start(DATA_DIR, port=8080, gateway_port=8081, detach=True)
    return server.bootstrap, server.process.pid


def train_model() -> None:
    if not (MODEL_1 / "model" / "sklearn_regression_model.pkl").exists():
        say("training the sample model (scikit-learn diabetes regression)")
        subprocess.run([sys.executable, str(MODEL_1 / "train.py")], check=True)


def deployment_yaml(name: str, endpoint: str) -> Path:
    path = WORK / f"{name}-{endpoint}.yml"
    path.write_text(
        (EXAMPLES / "deployments" / f"{name}.yml")
        .read_text()
        .replace("../model-1/", f"{MODEL_1}/")
        .replace("endpoint_name: my-key-endpoint", f"endpoint_name: {endpoint}")
    )
    return path


def exists(kind: str, *args: str) -> bool:
    env = {**os.environ, "PROPYLON_CONFIG_DIR": str(CLI_CONFIG)}
    result = subprocess.run(
        [sys.executable, "-m", "propylon", "ml", kind, "show", *args],
        env=env,
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "sample-request.json").write_text((MODEL_1 / "sample-request.json").read_text())
    train_model()

    say("server up on the embedded defaults")
    info, started_pid = ensure_server()
    print(f"control plane {info['control_plane_url']}  gateway {info['gateway_url']}")
    print(f"bootstrap facts in {DATA_DIR / 'bootstrap.json'} (mode 0600)")

    sign_in_and_deploy()
    invoke_each()
    roll_out_green()
    endpoint_scope = scorer_story(info)
    next_steps(info, endpoint_scope, started_pid)
    return 0


def sign_in_and_deploy() -> None:
    say("the administrator signs in (the bootstrap service principal, Owner at /)")
    propylon("login", "--data-dir", str(DATA_DIR), "--service-principal", "-o", "none")
    propylon("configure", "--defaults", "group=default-rg", "workspace=default-ws")

    say("one endpoint per auth mode, the sample model deployed as blue on each")
    for mode, name in ENDPOINTS.items():
        if not exists("online-endpoint", "-n", name):
            propylon("ml", "online-endpoint", "create", "-n", name, "--auth-mode", mode,
                     "--query", "{name:name,auth_mode:auth_mode,uri:scoring_uri}")  # fmt: skip
        if not exists("online-deployment", "-n", "blue", "-e", name):
            propylon("ml", "online-deployment", "create", "-n", "blue", "-e", name,
                     "-f", str(deployment_yaml("blue", name)), "--all-traffic",
                     "--query", "{name:name,state:provisioning_state}")  # fmt: skip


def invoke_each() -> None:
    say("each endpoint invoked (keys, endpoint tokens and identity tokens fetched as needed)")
    for mode, name in ENDPOINTS.items():
        print(f"[{mode}]")
        propylon("ml", "online-endpoint", "invoke", "-n", name, "-r", "sample-request.json")
    propylon("ml", "online-endpoint", "get-credentials", "-n", ENDPOINTS["aml_token"],
             "--query", "{tokenType:tokenType,expiryTimeUtc:expiryTimeUtc}")  # fmt: skip


def roll_out_green() -> None:
    say("green at 10 % of demo-key's traffic, then all of it")
    key_endpoint = ENDPOINTS["key"]
    if not exists("online-deployment", "-n", "green", "-e", key_endpoint):
        propylon("ml", "online-deployment", "create", "-n", "green", "-e", key_endpoint,
                 "-f", str(deployment_yaml("green", key_endpoint)),
                 "--query", "{name:name,state:provisioning_state}")  # fmt: skip
    propylon("ml", "online-endpoint", "update", "-n", key_endpoint, "--traffic", "blue=90 green=10",
             "--query", "traffic")  # fmt: skip
    propylon("ml", "online-endpoint", "invoke", "-n", key_endpoint, "-r", "sample-request.json")
    propylon("ml", "online-endpoint", "update", "-n", key_endpoint, "--traffic", "green=100",
             "--query", "traffic")  # fmt: skip
    propylon("ml", "online-endpoint", "invoke", "-n", key_endpoint, "-r", "sample-request.json",
             "--deployment-name", "green")  # fmt: skip


def scorer_story(info: dict[str, Any]) -> str:
    say("a custom scoring role and a user who may score but not manage")
    workspace = (
        f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{info['workspace']}"
    )
    role_file = WORK / "custom-role-for-scoring.json"
    role = json.loads((EXAMPLES / "roles" / "custom-role-for-scoring.json").read_text())
    role["AssignableScopes"] = [workspace]
    role_file.write_text(json.dumps(role, indent=2))
    created = propylon("role", "definition", "create", "--role-definition", str(role_file),
                       "--query", "roleName", check=False)  # fmt: skip
    if not created:  # a re-run: the role exists, bring it up to date instead
        propylon("role", "definition", "update", "--role-definition", str(role_file),
                 "--query", "roleName")  # fmt: skip
    user = propylon("ad", "user", "show", "--id", SCORER, "--query", "id", "-o", "tsv", check=False)
    if not user:
        user = propylon("ad", "user", "create", "--display-name", "Sam Scorer",
                        "--user-principal-name", SCORER, "--password", SCORER_PASSWORD,
                        "--query", "id", "-o", "tsv")  # fmt: skip
    endpoint_scope = f"{workspace}/onlineEndpoints/{ENDPOINTS['aad_token']}"
    propylon("role", "assignment", "create", "--assignee", user.strip(), "--role", SCORING_ROLE,
             "--scope", endpoint_scope, "--query", "roleDefinitionName", check=False)  # fmt: skip
    sam = DATA_DIR / "cli-sam"
    propylon("login", "-u", SCORER, "-p", SCORER_PASSWORD, "--data-dir", str(DATA_DIR),
             "-o", "none", config=sam)  # fmt: skip
    propylon("configure", "--defaults", "group=default-rg", "workspace=default-ws", config=sam)
    print("[sam scores the aad_token endpoint, as seed 003 does: a token for ml.azure.com + POST]")
    token = propylon("account", "get-access-token", "--resource", "https://ml.azure.com",
                     "--query", "accessToken", "-o", "tsv", config=sam, quiet=True)  # fmt: skip
    scoring_uri = f"{info['gateway_url']}/endpoints/{ENDPOINTS['aad_token']}/score"
    print(f"$ curl --request POST {scoring_uri} --header 'Authorization: Bearer $TOKEN' "
          "--data @sample-request.json")  # fmt: skip
    answer = httpx.post(
        scoring_uri,
        headers={"Authorization": f"Bearer {token}"},
        json=json.loads((WORK / "sample-request.json").read_text()),
        verify=str(DATA_DIR / "tls" / "ca.pem"),
        timeout=30,
    )
    print(f"  -> {answer.status_code} {answer.text}")
    if answer.status_code != 200:
        raise SystemExit("demo step failed: the scorer could not score")
    print("[sam tries to change it: refused]")
    refused = subprocess.run(
        [sys.executable, "-m", "propylon", "ml", "online-endpoint", "update", "-n",
         ENDPOINTS["aad_token"], "--traffic", "blue=100"],
        env={**os.environ, "PROPYLON_CONFIG_DIR": str(sam)},
        capture_output=True, text=True, check=False, cwd=WORK,
    )  # fmt: skip
    print(f"  -> exit {refused.returncode}: {refused.stderr.strip()}")
    if refused.returncode == 0:
        raise SystemExit("demo step failed: a scorer was allowed to manage the endpoint")
    return endpoint_scope


def next_steps(info: dict[str, Any], endpoint_scope: str, started_pid: int | None) -> None:
    say("what to try next")
    print(f"export PROPYLON_CONFIG_DIR={CLI_CONFIG}    # act as the administrator")
    print("propylon ml online-endpoint list -o table -g default-rg -w default-ws")
    print(f"propylon ml online-deployment get-logs -n blue -e {ENDPOINTS['key']} --lines 20")
    print(f"propylon ml online-endpoint get-logs -n {ENDPOINTS['key']} --traffic --lines 5 -o yaml")
    print(f"propylon role check --assignee {SCORER} --action "
          "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action "
          f"--scope {endpoint_scope}")  # fmt: skip
    print(f"curl --cacert {DATA_DIR / 'tls' / 'ca.pem'} {info['control_plane_url']}/healthz")
    pid = started_pid or _server_pid()
    print(f"\nstop the server: kill {pid}" if pid else "\nstop the server: kill its process")


def _server_pid() -> int | None:
    result = subprocess.run(
        ["pgrep", "-f", f"propylon server --data-dir {DATA_DIR}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    pids = result.stdout.split()
    return int(pids[0]) if pids else None


if __name__ == "__main__":
    sys.exit(main())
