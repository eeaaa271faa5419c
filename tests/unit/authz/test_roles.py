"""Role definitions: the built-in catalog, JSON shapes, custom-role validation.

Reference §1.1 (property names and limits), §1.2 (one wildcard), §2 (built-in role JSON).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from propylon.authz import (
    BUILTIN_ROLES,
    BUILTIN_ROLES_BY_NAME,
    Permission,
    RoleDefinition,
    builtin_role,
    is_assignable_at,
    role_definition_guid,
    role_definition_resource_id,
    role_from_arm,
    role_from_json,
    role_from_powershell,
    role_to_arm,
    validate_custom_role,
)
from propylon.errors import BadRequest

from . import seed_roles

ML = "Microsoft.MachineLearningServices"
RG = f"/subscriptions/{seed_roles.SUBSCRIPTION_ID}/resourcegroups/{seed_roles.RESOURCE_GROUP}"

EXPECTED_GUIDS = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
    "AzureML Compute Operator": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
    "Azure AI Developer": "64702f94-c441-49e6-a78b-ef80e0188fee",
    "Azure AI Inference Deployment Operator": "3afb7f49-54cb-416e-8c09-6dc049efa503",
    "Cognitive Services User": "a97b65f3-24c7-4388-baec-2e87135dc908",
    "Cognitive Services Contributor": "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68",
}


def test_builtin_catalog_has_the_real_guids() -> None:
    assert {r.role_name: r.id for r in BUILTIN_ROLES} == EXPECTED_GUIDS


def test_builtins_are_builtin_and_assignable_everywhere() -> None:
    for role in BUILTIN_ROLES:
        assert role.role_type == "BuiltInRole"
        assert not role.is_custom
        assert role.assignable_scopes == ("/",)


def test_data_scientist_permissions_are_exactly_the_reference_list() -> None:
    (permission,) = BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].permissions
    assert permission.actions == (
        f"{ML}/workspaces/*/read",
        f"{ML}/workspaces/*/action",
        f"{ML}/workspaces/*/delete",
        f"{ML}/workspaces/*/write",
    )
    assert len(permission.not_actions) == 10
    assert f"{ML}/workspaces/listKeys/action" in permission.not_actions
    assert permission.data_actions == ()


def test_contributor_pins_the_2025_01_not_actions() -> None:
    (permission,) = BUILTIN_ROLES_BY_NAME["Contributor"].permissions
    assert permission.actions == ("*",)
    assert len(permission.not_actions) == 11
    assert permission.not_actions[:2] == (
        "Microsoft.Authorization/*/Delete",
        "Microsoft.Authorization/*/Write",
    )


def test_only_cognitive_services_user_and_ai_developer_have_data_actions() -> None:
    with_data = {r.role_name for r in BUILTIN_ROLES if any(p.data_actions for p in r.permissions)}
    assert with_data == {"Cognitive Services User", "Azure AI Developer"}


def test_builtin_role_lookup_is_case_insensitive() -> None:
    assert builtin_role("reader") is BUILTIN_ROLES_BY_NAME["Reader"]
    with pytest.raises(KeyError):
        builtin_role("Janitor")


def test_seed_control_plane_role_reads_from_powershell_json() -> None:
    role = role_from_powershell(seed_roles.load(seed_roles.CONTROL_PLANE_ROLE_JSON))
    assert role.role_name == "Custom role for control plane operations - online endpoint"
    assert role.role_type == "CustomRole"
    assert role.description == "Can CRUD against online endpoints."
    (permission,) = role.permissions
    assert len(permission.actions) == 6
    assert permission.not_actions == ()
    assert role.assignable_scopes == (RG,)
    validate_custom_role(role)


def test_seed_scoring_role_reads_and_validates() -> None:
    role = role_from_json(seed_roles.load(seed_roles.SCORING_ROLE_JSON))
    assert role.permissions[0].actions == (f"{ML}/workspaces/onlineEndpoints/*/action",)
    validate_custom_role(role)


def test_powershell_role_without_id_gets_a_stable_guid_from_its_name() -> None:
    body = seed_roles.load(seed_roles.SCORING_ROLE_JSON)
    first, second = role_from_powershell(body), role_from_powershell(dict(body))
    assert first.id == second.id
    assert role_from_powershell(body, role_id="ABC").id == "abc"
    assert role_from_powershell({**body, "Id": "11111111-2222-3333-4444-555555555555"}).id == (
        "11111111-2222-3333-4444-555555555555"
    )


def test_seed_file_with_unfilled_placeholders_still_parses_as_opaque_names() -> None:
    """Names in scopes are opaque: '<subscriptionId>' is a name like any other, so the file as
    published loads; filling in the placeholders is the user's job."""
    role = role_from_powershell(json.loads(seed_roles.SCORING_ROLE_JSON))
    validate_custom_role(role)
    assert role.assignable_scopes == (
        "/subscriptions/<subscriptionId>/resourcegroups/<resourceGroupName>",
    )


def test_arm_round_trip_preserves_everything() -> None:
    for role in BUILTIN_ROLES:
        body = role_to_arm(role)
        assert body["type"] == "Microsoft.Authorization/roleDefinitions"
        assert body["name"] == role.id
        assert body["id"] == f"/providers/Microsoft.Authorization/roleDefinitions/{role.id}"
        assert role_from_arm(body) == role


def test_arm_shape_has_properties_envelope() -> None:
    body = role_to_arm(BUILTIN_ROLES_BY_NAME["Reader"], scope=f"{RG}/")
    assert body["id"] == f"{RG}/providers/Microsoft.Authorization/roleDefinitions/{body['name']}"
    assert body["properties"] == {
        "roleName": "Reader",
        "description": BUILTIN_ROLES_BY_NAME["Reader"].description,
        "type": "BuiltInRole",
        "permissions": [
            {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}
        ],
        "assignableScopes": ["/"],
    }


def test_flat_cli_shape_is_read_too() -> None:
    body = {
        "id": role_definition_resource_id(EXPECTED_GUIDS["Reader"], "/subscriptions/s"),
        "roleName": "Reader",
        "roleType": "BuiltInRole",
        "permissions": [{"actions": ["*/read"]}],
        "assignableScopes": ["/"],
    }
    role = role_from_json(body)
    assert role.id == EXPECTED_GUIDS["Reader"]
    assert role.role_type == "BuiltInRole"
    assert role.permissions == (Permission(actions=("*/read",)),)


def test_url_guid_wins_over_body_name() -> None:
    body = role_to_arm(BUILTIN_ROLES_BY_NAME["Reader"])
    assert role_from_arm(body, role_id="AAAAAAAA-0000-0000-0000-000000000000").id == (
        "aaaaaaaa-0000-0000-0000-000000000000"
    )


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"properties": []}, "properties"),
        ({"properties": {"permissions": {}}}, "properties.permissions"),
        ({"properties": {"permissions": [7]}}, "properties.permissions[0]"),
        ({"properties": {"permissions": [{"actions": "x"}]}}, "properties.permissions[0].actions"),
        ({"properties": {"roleName": 5}}, "properties.roleName"),
        ({"properties": {"type": "Weird"}}, "properties.type"),
        ({"properties": {"assignableScopes": [1]}}, "properties.assignableScopes"),
        ({"Name": "x", "IsCustom": "yes"}, "IsCustom"),
        ({"Name": "x", "Actions": "*"}, "Actions"),
    ],
)
def test_wrong_json_types_name_the_field(body: dict[str, Any], target: str) -> None:
    with pytest.raises(BadRequest) as raised:
        role_from_json(body)
    assert raised.value.target == target


def test_role_definition_guid_accepts_guid_or_full_id() -> None:
    guid = EXPECTED_GUIDS["Owner"]
    assert role_definition_guid(guid.upper()) == guid
    assert role_definition_guid(role_definition_resource_id(guid, "/subscriptions/s")) == guid
    assert role_definition_guid(role_definition_resource_id(guid)) == guid


def _custom(**changes: Any) -> RoleDefinition:
    role = RoleDefinition(
        id="0b9f1c2e-3d4a-4b5c-8d6e-7f8091a2b3c4",
        role_name="Endpoint scorer",
        description="Scores endpoints.",
        permissions=(Permission(actions=(f"{ML}/workspaces/onlineEndpoints/score/action",)),),
        assignable_scopes=(RG,),
    )
    return replace(role, **changes)


def test_a_well_formed_custom_role_passes() -> None:
    validate_custom_role(_custom())


@pytest.mark.parametrize(
    ("changes", "target", "code"),
    [
        ({"role_name": ""}, "properties.roleName", "InvalidRoleDefinition"),
        ({"role_name": "   "}, "properties.roleName", "InvalidRoleDefinition"),
        ({"role_name": "x" * 513}, "properties.roleName", "InvalidRoleDefinition"),
        ({"description": "x" * 2049}, "properties.description", "InvalidRoleDefinition"),
        ({"assignable_scopes": ()}, "properties.assignableScopes", "InvalidRoleDefinition"),
        ({"assignable_scopes": ("/",)}, "properties.assignableScopes[0]", "InvalidRoleDefinition"),
        ({"assignable_scopes": (RG, "rg")}, "properties.assignableScopes[1]", "InvalidScope"),
        ({"assignable_scopes": (f"{RG}/*",)}, "properties.assignableScopes[0]", "InvalidScope"),
        (
            {
                "assignable_scopes": (
                    "/providers/Microsoft.Management/managementGroups/a",
                    "/providers/Microsoft.Management/managementGroups/b",
                )
            },
            "properties.assignableScopes",
            "InvalidRoleDefinition",
        ),
        (
            {
                "permissions": (Permission(data_actions=("Microsoft.CognitiveServices/*",)),),
                "assignable_scopes": ("/providers/Microsoft.Management/managementGroups/a",),
            },
            "properties.assignableScopes[0]",
            "InvalidRoleDefinition",
        ),
        ({"permissions": ()}, "properties.permissions", "InvalidRoleDefinition"),
        ({"id": "not-a-guid"}, "name", "InvalidRoleDefinition"),
        ({"id": EXPECTED_GUIDS["Owner"]}, "name", "InvalidRoleDefinition"),
        ({"role_type": "BuiltInRole"}, "properties.type", "InvalidRoleDefinition"),
        (
            {
                "permissions": (
                    Permission(actions=("*/read", "Microsoft.CostManagement/*/query/*")),
                )
            },
            "properties.permissions[0].actions[1]",
            "InvalidActionOrNotAction",
        ),
        (
            {"permissions": (Permission(), Permission(not_data_actions=("a/*/b/*",)))},
            "properties.permissions[1].notDataActions[0]",
            "InvalidActionOrNotAction",
        ),
        (
            {"permissions": (Permission(not_actions=("",)),)},
            "properties.permissions[0].notActions[0]",
            "InvalidActionOrNotAction",
        ),
    ],
)
def test_invalid_custom_roles_are_bad_requests_naming_the_field(
    changes: dict[str, Any], target: str, code: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        validate_custom_role(_custom(**changes))
    assert raised.value.target == target
    assert raised.value.code == code
    assert raised.value.status == 400


def test_powershell_validation_can_name_powershell_fields() -> None:
    role = _custom(role_name="")
    with pytest.raises(BadRequest) as raised:
        validate_custom_role(role, field_prefix="")
    assert raised.value.target == "roleName"


def test_assignable_at_means_within_one_of_the_assignable_scopes() -> None:
    role = _custom()
    assert is_assignable_at(role, f"{RG}/providers/{ML}/workspaces/ws")
    assert is_assignable_at(role, RG.upper())
    assert not is_assignable_at(role, f"/subscriptions/{seed_roles.SUBSCRIPTION_ID}")
    assert is_assignable_at(BUILTIN_ROLES_BY_NAME["Owner"], "/subscriptions/x")


def test_read_only_arm_properties_survive_a_round_trip_without_affecting_equality() -> None:
    body = role_to_arm(BUILTIN_ROLES_BY_NAME["Reader"])
    body["properties"]["createdOn"] = "2015-02-02T21:55:09.8806423Z"
    role = role_from_arm(body)
    assert role == BUILTIN_ROLES_BY_NAME["Reader"]
    assert role_to_arm(role)["properties"]["createdOn"] == "2015-02-02T21:55:09.8806423Z"
