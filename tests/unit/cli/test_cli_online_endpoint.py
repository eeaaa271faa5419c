"""`ml online-endpoint` commands: YAML → REST through the control plane's mapping, LROs, scoring
with every auth mode, and az's output conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fake_propylon import GATEWAY, WS_ID, FakeServer, Run, output_json
from propylon.client.profile import Profile

REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}


@pytest.fixture
def endpoint_yml(tmp_path: Path) -> Path:
    path = tmp_path / "endpoint.yml"
    path.write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
        "name: my-endpoint\n"
        "auth_mode: aad_token\n"
        "tags:\n  team: ml\n"
    )
    return path


@pytest.fixture
def request_json(tmp_path: Path) -> Path:
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))
    return path


def test_create_from_yaml_puts_the_mapped_body_and_prints_the_endpoint(
    run: Run, signed_in: Profile, fake: FakeServer, endpoint_yml: Path
) -> None:
    result = run("ml", "online-endpoint", "create", "-f", str(endpoint_yml))
    shown = output_json(result)
    assert shown["name"] == "my-endpoint"
    assert shown["auth_mode"] == "aad_token"
    assert shown["provisioning_state"] == "Succeeded"
    assert shown["scoring_uri"] == f"{GATEWAY}/endpoints/my-endpoint/score"
    [put] = fake.sent("PUT", "/onlineEndpoints/my-endpoint")
    assert put.url.path == f"{WS_ID}/onlineEndpoints/my-endpoint"
    assert "api-version" in put.url.params
    body = fake.body_of(put)
    assert body["location"] == "local"  # from the workspace GET, as azure-ai-ml does
    assert body["properties"]["authMode"] == "AADToken"
    assert body["tags"] == {"team": "ml"}
    # The operation was polled to its end and reported on stderr (not a terminal here).
    assert len(fake.sent("GET", "/operations/")) == 2
    assert "Creating endpoint my-endpoint: Succeeded" in result.stderr


def test_create_with_options_only_and_the_seed_underscore_flag(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    result = run("ml", "online-endpoint", "create", "-n", "ep2", "--auth_mode", "aml_token")
    assert output_json(result)["auth_mode"] == "aml_token"


def test_no_wait_returns_without_polling(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    result = run("ml", "online-endpoint", "create", "-n", "ep3", "--no-wait")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert fake.sent("GET", "/operations/") == []


def test_show_query_scoring_uri(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    fake.put_endpoint("my-endpoint")
    result = run("ml", "online-endpoint", "show", "-n", "my-endpoint", "--query", "scoring_uri")
    assert json.loads(result.stdout) == f"{GATEWAY}/endpoints/my-endpoint/score"
    tsv = run(
        "ml",
        "online-endpoint",
        "show",
        "-n",
        "my-endpoint",
        "--query",
        "provisioning_state",
        "-o",
        "tsv",
    )
    assert tsv.stdout == "Succeeded\n"


def test_explicit_group_and_workspace_override_defaults(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    result = run("ml", "online-endpoint", "list", "-g", "other-rg", "-w", "other-ws")
    assert result.exit_code == 1  # the fake only has the default workspace
    [request] = fake.requests
    assert "/resourceGroups/other-rg/" in request.url.path
    assert "/workspaces/other-ws/" in request.url.path


def test_list_as_table(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    fake.put_endpoint("ep-a")
    fake.put_endpoint("ep-b", "AMLToken")
    lines = run("ml", "online-endpoint", "list", "-o", "table").stdout.splitlines()
    assert lines[0].split() == [
        "Name",
        "Kind",
        "Auth",
        "Mode",
        "Provisioning",
        "State",
        "Scoring",
        "Uri",
    ]
    assert [line.split()[0] for line in lines[2:]] == ["ep-a", "ep-b"]
    assert "aml_token" in lines[3]


def test_get_credentials_for_each_auth_mode(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    fake.put_endpoint("k", "Key")
    fake.put_endpoint("a", "AMLToken")
    fake.put_endpoint("d", "AADToken")
    primary = run(
        "ml", "online-endpoint", "get-credentials", "-n", "k", "-o", "tsv", "--query", "primaryKey"
    )
    assert primary.stdout == "pk-1\n"
    token = output_json(run("ml", "online-endpoint", "get-credentials", "-n", "a"))
    assert token["accessToken"] == "aml-token-for-a"
    assert token["refreshAfterTimeUtc"] < token["expiryTimeUtc"]
    aad = output_json(run("ml", "online-endpoint", "get-credentials", "-n", "d"))
    assert aad["accessToken"] == "token:https://ml.azure.com/.default"
    assert set(aad) == {"accessToken", "expiryTimeUtc"}


@pytest.mark.parametrize("mode", ["Key", "AMLToken", "AADToken"])
def test_invoke_works_for_every_auth_mode(
    run: Run, signed_in: Profile, fake: FakeServer, request_json: Path, mode: str
) -> None:
    fake.put_endpoint("ep", mode)
    result = run("ml", "online-endpoint", "invoke", "-n", "ep", "-r", str(request_json))
    assert output_json(result) == [55.0, 55.0]
    [score] = fake.sent("POST", "/endpoints/ep/score")
    assert json.loads(score.content) == REQUEST
    assert score.headers["content-type"] == "application/json"


def test_invoke_targets_a_deployment(
    run: Run, signed_in: Profile, fake: FakeServer, request_json: Path
) -> None:
    fake.put_endpoint("ep")
    run(
        "ml",
        "online-endpoint",
        "invoke",
        "-n",
        "ep",
        "-r",
        str(request_json),
        "--deployment-name",
        "green",
    )
    [score] = fake.sent("POST", "/score")
    assert score.headers["azureml-model-deployment"] == "green"


def test_update_traffic_and_mirror_traffic(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    fake.put_endpoint("ep")
    run(
        "ml",
        "online-endpoint",
        "update",
        "-n",
        "ep",
        "--traffic",
        "blue=90 green=10",
        "--mirror-traffic",
        "green=0",
    )
    [put] = fake.sent("PUT", "/onlineEndpoints/ep")
    properties = fake.body_of(put)["properties"]
    assert properties["traffic"] == {"blue": 90, "green": 10}
    assert properties["mirrorTraffic"] == {}
    assert properties["authMode"] == "Key"  # the rest of the endpoint is kept


def test_update_set_auth_mode(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    fake.put_endpoint("ep")
    shown = output_json(
        run("ml", "online-endpoint", "update", "-n", "ep", "--set", "auth_mode=aad_token")
    )
    assert shown["auth_mode"] == "aad_token"


def test_regenerate_keys_changes_only_the_chosen_key(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    fake.put_endpoint("ep")
    assert (
        run(
            "ml", "online-endpoint", "regenerate-keys", "-n", "ep", "--key-type", "secondary"
        ).exit_code
        == 0
    )
    [post] = fake.sent("POST", "/regenerateKeys")
    assert fake.body_of(post) == {"keyType": "Secondary"}
    keys = output_json(run("ml", "online-endpoint", "get-credentials", "-n", "ep"))
    assert keys["primaryKey"] == "pk-1"
    assert keys["secondaryKey"] != "sk-1"


def test_regenerate_keys_of_a_token_endpoint_is_refused(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    fake.put_endpoint("ep", "AADToken")
    result = run("ml", "online-endpoint", "regenerate-keys", "-n", "ep")
    assert result.stderr == (
        "propylon: error: (InvalidAuthMode) Endpoint 'ep' does not use keys for authentication.\n"
    )


def test_delete_needs_yes_without_a_terminal(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    fake.put_endpoint("ep")
    refused = run("ml", "online-endpoint", "delete", "-n", "ep")
    assert refused.exit_code == 1
    assert "Pass --yes" in refused.stderr
    assert run("ml", "online-endpoint", "delete", "-n", "ep", "--yes").exit_code == 0
    assert fake.sent("DELETE", "/onlineEndpoints/ep")
    gone = run("ml", "online-endpoint", "show", "-n", "ep")
    assert gone.stderr == "propylon: error: (ResourceNotFound) Could not find online endpoint ep\n"


def test_missing_group_default_is_one_clear_line(
    run: Run, signed_in: Profile, home: object
) -> None:
    from propylon.client.profile import ConfigDir

    assert isinstance(home, ConfigDir)
    home.set_defaults({"group": ""})
    result = run("ml", "online-endpoint", "list")
    assert result.exit_code == 1
    assert result.stderr.startswith("propylon: error: (MissingArgument) no resource group given")
