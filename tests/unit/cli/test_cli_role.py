"""`role` commands send ARM-shaped RBAC calls; the seed's PowerShell-shaped JSON is accepted."""

from __future__ import annotations

import json
from pathlib import Path

from fake_propylon import ALICE, SUBSCRIPTION, WS_ID, FakeServer, Run, output_json
from propylon.client.profile import Profile

SCORING_ROLE = {
    "Name": "Custom role for scoring - online endpoint",
    "IsCustom": True,
    "Description": "Can score against online endpoints.",
    "Actions": ["Microsoft.MachineLearningServices/workspaces/onlineEndpoints/*/action"],
    "NotActions": [],
    "AssignableScopes": [f"/subscriptions/{SUBSCRIPTION}/resourcegroups/default-rg"],
}


def test_powershell_shaped_definition_is_put_in_arm_shape_at_its_assignable_scope(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "custom-role-for-scoring.json"
    path.write_text(json.dumps(SCORING_ROLE))
    created = output_json(run("role", "definition", "create", "--role-definition", str(path)))
    assert created["roleName"] == SCORING_ROLE["Name"]
    assert created["roleType"] == "CustomRole"
    [put] = fake.sent("PUT", "/roleDefinitions/")
    assert put.url.path.startswith(f"/subscriptions/{SUBSCRIPTION}/resourcegroups/default-rg/")
    assert put.url.params["api-version"] == "2022-04-01"
    assert fake.body_of(put)["properties"] == {
        "roleName": SCORING_ROLE["Name"],
        "description": SCORING_ROLE["Description"],
        "type": "CustomRole",
        "permissions": [
            {
                "actions": SCORING_ROLE["Actions"],
                "notActions": [],
                "dataActions": [],
                "notDataActions": [],
            }
        ],
        "assignableScopes": SCORING_ROLE["AssignableScopes"],
    }


def test_creating_a_role_twice_is_a_conflict(run: Run, signed_in: Profile, tmp_path: Path) -> None:
    path = tmp_path / "role.json"
    path.write_text(json.dumps(SCORING_ROLE))
    assert run("role", "definition", "create", "--role-definition", str(path)).exit_code == 0
    again = run("role", "definition", "create", "--role-definition", f"@{path}")
    assert again.exit_code == 1
    assert "(RoleDefinitionWithSameNameExists)" in again.stderr


def test_seed_listing_queries(run: Run, signed_in: Profile, tmp_path: Path) -> None:
    path = tmp_path / "role.json"
    path.write_text(json.dumps(SCORING_ROLE))
    run("role", "definition", "create", "--role-definition", str(path))
    table = run("role", "definition", "list", "--custom-role-only", "-o", "table")
    assert table.stdout.splitlines()[0].split() == ["Name", "Type", "Description"]
    assert SCORING_ROLE["Name"] in table.stdout
    role_id = run(
        "role", "definition", "list", "-n", SCORING_ROLE["Name"], "--query", "[0].id"
    ).stdout
    assert role_id.startswith('"/subscriptions/')
    assert role_id.strip().strip('"').endswith(json.loads(role_id).rsplit("/", 1)[-1])


def test_assignment_by_upn_resolves_the_object_id_and_type(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    created = output_json(
        run(
            "role",
            "assignment",
            "create",
            "--assignee",
            "alice@contoso.test",
            "--role",
            "AzureML Data Scientist",
            "--scope",
            WS_ID,
        )
    )
    assert created["principalId"] == ALICE
    assert created["roleDefinitionName"] == "AzureML Data Scientist"
    [put] = fake.sent("PUT", "/roleAssignments/")
    assert put.url.path.startswith(WS_ID + "/providers/Microsoft.Authorization/roleAssignments/")
    assert fake.body_of(put)["properties"] == {
        "roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/"
        "f6c7c914-8db3-469d-8ca1-694a8f32e121",
        "principalId": ALICE,
        "principalType": "User",
    }
    listed = output_json(run("role", "assignment", "list", "--scope", WS_ID))
    assert [a["principalId"] for a in listed] == [ALICE]
    assert run("role", "assignment", "delete", "--assignee", ALICE, "--scope", WS_ID).exit_code == 0
    assert output_json(run("role", "assignment", "list", "--scope", WS_ID)) == []


def test_unknown_role_is_one_line(run: Run, signed_in: Profile) -> None:
    result = run(
        "role", "assignment", "create", "--assignee", ALICE, "--role", "Nope", "--scope", WS_ID
    )
    assert result.exit_code == 1
    assert result.stderr == "propylon: error: (RoleDefinitionNotFound) Role 'Nope' doesn't exist.\n"


def test_role_check_prints_the_decision(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    action = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"
    decision = output_json(
        run(
            "role",
            "check",
            "--assignee",
            "alice@contoso.test",
            "--action",
            action,
            "--scope",
            WS_ID,
        )
    )
    assert decision["allowed"] is True
    assert "AzureML Data Scientist" in decision["reason"]
    [post] = fake.sent("POST", "/checkAccess")
    assert fake.body_of(post) == {"principalId": ALICE, "action": action}


def test_update_keeps_the_role_id_and_delete_removes_it(
    run: Run, signed_in: Profile, fake: FakeServer, tmp_path: Path
) -> None:
    path = tmp_path / "role.json"
    path.write_text(json.dumps(SCORING_ROLE))
    created = output_json(run("role", "definition", "create", "--role-definition", str(path)))
    changed = {**SCORING_ROLE, "Description": "Scores, and nothing else."}
    path.write_text(json.dumps(changed))
    updated = output_json(run("role", "definition", "update", "--role-definition", str(path)))
    assert updated["name"] == created["name"]
    assert updated["description"] == "Scores, and nothing else."
    assert run("role", "definition", "delete", "-n", SCORING_ROLE["Name"]).exit_code == 0
    listed = output_json(run("role", "definition", "list", "--custom-role-only"))
    assert listed == []
