"""Role definitions: the data, the built-in catalog, the JSON shapes, custom-role validation.

A role definition is a list of permission entries, each with ``actions``, ``notActions``,
``dataActions`` and ``notDataActions`` (reference §1.1, ``role-definitions.md``). Three JSON shapes
exist for the same thing and all are read here:

* the raw ARM resource ``PUT …/roleDefinitions/{guid}``: ``{"id", "name", "type",
  "properties": {"roleName", "description", "type", "permissions", "assignableScopes"}}``;
* the flat CLI shape (``az role definition list``): the same keys at top level, ``roleType``;
* the PowerShell shape (``New-AzRoleDefinition``, and the seed's ``custom-role-*.json``):
  ``Name``, ``Id``, ``IsCustom``, ``Description``, ``Actions``, ``NotActions``, ``DataActions``,
  ``NotDataActions``, ``AssignableScopes``.

The built-in catalog is pinned to the snapshot of reference §2 (Contributor's ``notActions`` as
of 2025-01; the list grows over time, reference §2 notes). "Built-in roles have the same role ID
across clouds" (reference §1.1), so the GUIDs are the real ones.

Example::

    >>> role = role_from_json({"Name": "Scorer", "IsCustom": True, "Actions": ["*/read"],
    ...                        "AssignableScopes": ["/subscriptions/s"]})
    >>> validate_custom_role(role)
    >>> role_to_arm(role)["properties"]["roleName"]
    'Scorer'
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from propylon.authz.actions import validate_action_pattern
from propylon.authz.scopes import ROOT, ScopeLevel, extension_scope, parse_scope
from propylon.errors import BadRequest

__all__ = [
    "BUILTIN_ROLES",
    "BUILTIN_ROLES_BY_NAME",
    "ROLE_DEFINITION_TYPE",
    "Permission",
    "RoleDefinition",
    "RoleType",
    "builtin_role",
    "is_assignable_at",
    "role_definition_guid",
    "role_definition_resource_id",
    "role_from_arm",
    "role_from_json",
    "role_from_powershell",
    "role_to_arm",
    "validate_custom_role",
]

RoleType = Literal["BuiltInRole", "CustomRole"]
ROLE_DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"

# custom-roles.md limits (reference §1.1).
MAX_ROLE_NAME = 512
MAX_DESCRIPTION = 2048
_READ_ONLY_PROPERTIES = ("createdOn", "updatedOn", "createdBy", "updatedBy")
# Names roles with no Id in their PowerShell JSON deterministically (uuid5 of the lower-cased
# name), so re-importing the same file names the same role.
_ROLE_NAMESPACE = uuid.UUID("6f1d3c52-8a57-4e1b-9a8e-7c0d2f4b9e10")


def _strings(values: Iterable[str] | None) -> tuple[str, ...]:
    return tuple(values or ())


@dataclass(frozen=True, slots=True)
class Permission:
    """One permission entry. ``not_actions`` subtracts only from this entry's ``actions``
    ("NotActions is not a deny rule", reference §1.3); data fields likewise."""

    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from callers but store tuples, so a Permission stays hashable.
        for name in ("actions", "not_actions", "data_actions", "not_data_actions"):
            object.__setattr__(self, name, _strings(getattr(self, name)))

    def to_json(self) -> dict[str, list[str]]:
        """The ARM shape ``{"actions", "notActions", "dataActions", "notDataActions"}``."""
        return {
            "actions": list(self.actions),
            "notActions": list(self.not_actions),
            "dataActions": list(self.data_actions),
            "notDataActions": list(self.not_data_actions),
        }


@dataclass(frozen=True, slots=True)
class RoleDefinition:
    """A role: ``id`` is the GUID (ARM ``name``), ``role_name`` the display name.

    ``extra`` carries the read-only ARM properties (``createdOn``, ``updatedOn``, ``createdBy``,
    ``updatedBy``) from :func:`role_from_arm` to :func:`role_to_arm`; it takes no part in equality.
    """

    id: str
    role_name: str
    description: str = ""
    role_type: RoleType = "CustomRole"
    permissions: tuple[Permission, ...] = ()
    assignable_scopes: tuple[str, ...] = (ROOT,)
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "permissions", tuple(self.permissions))
        object.__setattr__(self, "assignable_scopes", _strings(self.assignable_scopes))

    @property
    def is_custom(self) -> bool:
        return self.role_type == "CustomRole"


def role_definition_resource_id(role_id: str, scope: str = ROOT) -> str:
    """The resource id ``{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}``.

    ``scope="/"`` gives the tenant-level id ``/providers/Microsoft.Authorization/…``.
    """
    prefix = "" if scope in {"", ROOT} else scope.rstrip("/")
    return f"{prefix}/providers/{ROLE_DEFINITION_TYPE}/{role_id}"


def role_definition_guid(role_definition_id: str) -> str:
    """The lower-case GUID of a role definition given as a GUID or a full resource id.

    Role assignments carry ``roleDefinitionId`` as a full id whose scope prefix varies
    (subscription or tenant), so the engine keys roles by GUID alone.
    """
    value = role_definition_id.strip()
    if value.startswith("/"):
        _, value = extension_scope(value, target="roleDefinitionId")
    return value.lower()


def _bad(message: str, target: str, code: str = "InvalidRoleDefinition") -> BadRequest:
    return BadRequest(message, code=code, target=target)


def _list_of_strings(body: Mapping[str, Any], key: str, target: str) -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(f"'{target}' must be a list of strings.", target)
    return tuple(value)


def _optional_string(body: Mapping[str, Any], key: str, target: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"'{target}' must be a string.", target)
    return value


def _permission_from_arm(entry: object, target: str) -> Permission:
    if not isinstance(entry, Mapping):
        raise _bad(f"'{target}' must be an object.", target)
    return Permission(
        actions=_list_of_strings(entry, "actions", f"{target}.actions"),
        not_actions=_list_of_strings(entry, "notActions", f"{target}.notActions"),
        data_actions=_list_of_strings(entry, "dataActions", f"{target}.dataActions"),
        not_data_actions=_list_of_strings(entry, "notDataActions", f"{target}.notDataActions"),
    )


def role_from_arm(body: Mapping[str, Any], *, role_id: str | None = None) -> RoleDefinition:
    """Read the raw ARM resource (``properties`` envelope) or the flat CLI shape.

    ``role_id`` (the GUID from the URL of a ``PUT``) wins over ``name`` in the body. Fields are
    not validated beyond their JSON types; call :func:`validate_custom_role` for that.
    """
    if not isinstance(body, Mapping):
        raise _bad("The role definition must be a JSON object.", "properties")
    if "properties" in body:
        props = body["properties"]
        if not isinstance(props, Mapping):
            raise _bad("'properties' must be an object.", "properties")
        prefix = "properties."
        role_type = _optional_string(props, "type", "properties.type")
    else:
        props = body
        prefix = ""
        role_type = _optional_string(props, "roleType", "roleType")
    guid = role_id or _optional_string(body, "name", "name")
    if not guid:
        raw_id = _optional_string(body, "id", "id")
        guid = role_definition_guid(raw_id) if raw_id else None
    if role_type not in {None, "BuiltInRole", "CustomRole"}:
        raise _bad(
            f"'{prefix}type' must be 'BuiltInRole' or 'CustomRole', not {role_type!r}.",
            f"{prefix}type",
        )
    entries = props.get("permissions")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _bad(f"'{prefix}permissions' must be a list.", f"{prefix}permissions")
    name = _optional_string(props, "roleName", f"{prefix}roleName") or ""
    return RoleDefinition(
        id=(guid or _derived_guid(name)).lower(),
        role_name=name,
        description=_optional_string(props, "description", f"{prefix}description") or "",
        role_type="BuiltInRole" if role_type == "BuiltInRole" else "CustomRole",
        permissions=tuple(
            _permission_from_arm(entry, f"{prefix}permissions[{i}]")
            for i, entry in enumerate(entries)
        ),
        assignable_scopes=_list_of_strings(props, "assignableScopes", f"{prefix}assignableScopes"),
        extra={key: props[key] for key in _READ_ONLY_PROPERTIES if key in props},
    )


def role_from_powershell(body: Mapping[str, Any], *, role_id: str | None = None) -> RoleDefinition:
    """Read the PowerShell shape (``Name``, ``IsCustom``, ``Actions``, …, ``AssignableScopes``).

    The GUID is ``role_id``, else ``Id`` from the body, else derived from the name (uuid5), so
    importing the same file twice names the same role.
    """
    if not isinstance(body, Mapping):
        raise _bad("The role definition must be a JSON object.", "Name")
    is_custom = body.get("IsCustom", True)
    if not isinstance(is_custom, bool):
        raise _bad("'IsCustom' must be true or false.", "IsCustom")
    name = _optional_string(body, "Name", "Name") or ""
    guid = role_id or _optional_string(body, "Id", "Id") or _derived_guid(name)
    return RoleDefinition(
        id=guid.lower(),
        role_name=name,
        description=_optional_string(body, "Description", "Description") or "",
        role_type="CustomRole" if is_custom else "BuiltInRole",
        permissions=(
            Permission(
                actions=_list_of_strings(body, "Actions", "Actions"),
                not_actions=_list_of_strings(body, "NotActions", "NotActions"),
                data_actions=_list_of_strings(body, "DataActions", "DataActions"),
                not_data_actions=_list_of_strings(body, "NotDataActions", "NotDataActions"),
            ),
        ),
        assignable_scopes=_list_of_strings(body, "AssignableScopes", "AssignableScopes"),
    )


def role_from_json(body: Mapping[str, Any], *, role_id: str | None = None) -> RoleDefinition:
    """Read any of the three shapes, as ``az role definition create --role-definition`` does."""
    if isinstance(body, Mapping) and ("Name" in body or "IsCustom" in body or "Actions" in body):
        return role_from_powershell(body, role_id=role_id)
    return role_from_arm(body, role_id=role_id)


def role_to_arm(role: RoleDefinition, *, scope: str = ROOT) -> dict[str, Any]:
    """The raw ARM resource; ``scope`` is where it is read from (``/`` for tenant level)."""
    return {
        "id": role_definition_resource_id(role.id, scope),
        "name": role.id,
        "type": ROLE_DEFINITION_TYPE,
        "properties": {
            "roleName": role.role_name,
            "description": role.description,
            "type": role.role_type,
            "permissions": [p.to_json() for p in role.permissions],
            "assignableScopes": list(role.assignable_scopes),
            **role.extra,
        },
    }


def _derived_guid(name: str) -> str:
    return str(uuid.uuid5(_ROLE_NAMESPACE, name.strip().lower()))


def validate_custom_role(role: RoleDefinition, *, field_prefix: str = "properties.") -> None:
    """Apply ``custom-roles.md`` limits (reference §1.1, §1.2); raise :class:`BadRequest` naming
    the field (``properties.roleName``, ``properties.permissions[0].actions[1]``, …).

    * ``roleName`` required, at most 512 characters; ``description`` at most 2048;
    * ``id`` a GUID that is not a built-in role's;
    * at least one assignable scope, each a valid scope, no root ``/``, no wildcard, at most one
      management group; a role with data actions may not be assignable at a management group;
    * every action pattern non-empty with at most one ``*`` (``InvalidActionOrNotAction``).
    """
    p = field_prefix
    if not role.role_name.strip():
        raise _bad(f"'{p}roleName' is required.", f"{p}roleName")
    if len(role.role_name) > MAX_ROLE_NAME:
        raise _bad(f"'{p}roleName' is longer than {MAX_ROLE_NAME} characters.", f"{p}roleName")
    if len(role.description) > MAX_DESCRIPTION:
        raise _bad(
            f"'{p}description' is longer than {MAX_DESCRIPTION} characters.", f"{p}description"
        )
    try:
        uuid.UUID(role.id)
    except ValueError:
        raise _bad(f"The role definition id '{role.id}' is not a GUID.", "name") from None
    if role.id.lower() in _BUILTIN_IDS:
        raise _bad(f"The role definition id '{role.id}' belongs to a built-in role.", "name")
    if role.role_type != "CustomRole":
        raise _bad(f"'{p}type' must be 'CustomRole'.", f"{p}type")
    if not role.permissions:
        raise _bad(f"'{p}permissions' must hold at least one entry.", f"{p}permissions")
    has_data_actions = False
    for i, permission in enumerate(role.permissions):
        for key, patterns in (
            ("actions", permission.actions),
            ("notActions", permission.not_actions),
            ("dataActions", permission.data_actions),
            ("notDataActions", permission.not_data_actions),
        ):
            for j, pattern in enumerate(patterns):
                validate_action_pattern(pattern, target=f"{p}permissions[{i}].{key}[{j}]")
        has_data_actions = has_data_actions or bool(permission.data_actions)
    _validate_assignable_scopes(role.assignable_scopes, has_data_actions, f"{p}assignableScopes")


def _validate_assignable_scopes(scopes: Sequence[str], has_data: bool, target: str) -> None:
    if not scopes:
        raise _bad(f"'{target}' must hold at least one scope.", target)
    management_groups = 0
    for i, scope in enumerate(scopes):
        parsed = parse_scope(scope, target=f"{target}[{i}]")
        if parsed.level is ScopeLevel.ROOT:
            raise _bad(
                f"'{target}[{i}]': a custom role cannot be assignable at the root scope '/'.",
                f"{target}[{i}]",
            )
        if parsed.level is ScopeLevel.MANAGEMENT_GROUP:
            management_groups += 1
            if has_data:
                raise _bad(
                    f"'{target}[{i}]': a role with dataActions cannot be assignable at a "
                    "management group.",
                    f"{target}[{i}]",
                )
    if management_groups > 1:
        raise _bad(f"'{target}' may hold at most one management group.", target)


def is_assignable_at(role: RoleDefinition, scope: str) -> bool:
    """Whether ``role`` may be assigned at ``scope``: within one of its assignable scopes."""
    chain = parse_scope(scope).chain
    return any(parse_scope(s).key in chain for s in role.assignable_scopes)


# --- the built-in catalog (reference §2) ---------------------------------------------------------

_ML = "Microsoft.MachineLearningServices"


def _builtin(
    role_id: str,
    name: str,
    description: str,
    actions: Sequence[str] = (),
    not_actions: Sequence[str] = (),
    data_actions: Sequence[str] = (),
    not_data_actions: Sequence[str] = (),
) -> RoleDefinition:
    return RoleDefinition(
        id=role_id,
        role_name=name,
        description=description,
        role_type="BuiltInRole",
        permissions=(
            Permission(
                actions=tuple(actions),
                not_actions=tuple(not_actions),
                data_actions=tuple(data_actions),
                not_data_actions=tuple(not_data_actions),
            ),
        ),
        assignable_scopes=(ROOT,),
    )


_ML_WORKSPACE_ACTIONS = (
    f"{_ML}/workspaces/*/read",
    f"{_ML}/workspaces/*/action",
    f"{_ML}/workspaces/*/delete",
    f"{_ML}/workspaces/*/write",
)

BUILTIN_ROLES: tuple[RoleDefinition, ...] = (
    _builtin(
        "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Owner",
        "Grants full access to manage all resources, including the ability to assign roles in "
        "Azure RBAC.",
        actions=["*"],
    ),
    _builtin(
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        "Grants full access to manage all resources, but does not allow you to assign roles in "
        "Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        actions=["*"],
        not_actions=[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
    ),
    _builtin(
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Reader",
        "View all resources, but does not allow you to make any changes.",
        actions=["*/read"],
    ),
    _builtin(
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
        "Lets you manage user access to Azure resources.",
        actions=["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
    ),
    _builtin(
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator",
        "Manage access to Azure resources by assigning roles using Azure RBAC. This role does "
        "not allow you to manage access using other ways, such as Azure Policy.",
        actions=[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
    ),
    _builtin(
        "f6c7c914-8db3-469d-8ca1-694a8f32e121",
        "AzureML Data Scientist",
        "Can perform all actions within an Azure Machine Learning workspace, except for creating "
        "or deleting compute resources and modifying the workspace itself.",
        actions=_ML_WORKSPACE_ACTIONS,
        not_actions=[
            f"{_ML}/workspaces/delete",
            f"{_ML}/workspaces/write",
            f"{_ML}/workspaces/computes/*/write",
            f"{_ML}/workspaces/computes/*/delete",
            f"{_ML}/workspaces/computes/listKeys/action",
            f"{_ML}/workspaces/listKeys/action",
            f"{_ML}/workspaces/hubs/write",
            f"{_ML}/workspaces/hubs/delete",
            f"{_ML}/workspaces/featurestores/write",
            f"{_ML}/workspaces/featurestores/delete",
        ],
    ),
    _builtin(
        "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
        "AzureML Compute Operator",
        "Can access and perform CRUD operations on Machine Learning Services managed compute "
        "resources (including Notebook VMs).",
        actions=[f"{_ML}/workspaces/computes/*", f"{_ML}/workspaces/notebooks/vm/*"],
    ),
    _builtin(
        "64702f94-c441-49e6-a78b-ef80e0188fee",
        "Azure AI Developer",
        "Can perform all actions within an Azure AI resource besides managing the resource itself.",
        actions=[
            *_ML_WORKSPACE_ACTIONS,
            f"{_ML}/locations/*/read",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/deployments/*",
        ],
        not_actions=[
            f"{_ML}/workspaces/delete",
            f"{_ML}/workspaces/write",
            f"{_ML}/workspaces/listKeys/action",
            f"{_ML}/workspaces/hubs/write",
            f"{_ML}/workspaces/hubs/delete",
            f"{_ML}/workspaces/featurestores/write",
            f"{_ML}/workspaces/featurestores/delete",
        ],
        data_actions=[
            "Microsoft.CognitiveServices/accounts/OpenAI/*",
            "Microsoft.CognitiveServices/accounts/SpeechServices/*",
            "Microsoft.CognitiveServices/accounts/ContentSafety/*",
        ],
    ),
    _builtin(
        "3afb7f49-54cb-416e-8c09-6dc049efa503",
        "Azure AI Inference Deployment Operator",
        "Can perform all actions required to create a resource deployment within a resource group.",
        actions=[
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Insights/AutoscaleSettings/write",
        ],
    ),
    _builtin(
        "a97b65f3-24c7-4388-baec-2e87135dc908",
        "Cognitive Services User",
        "Lets you read and list keys of Cognitive Services.",
        actions=[
            "Microsoft.CognitiveServices/*/read",
            "Microsoft.CognitiveServices/accounts/listkeys/action",
            "Microsoft.Insights/alertRules/read",
            "Microsoft.Insights/diagnosticSettings/read",
            "Microsoft.Insights/logDefinitions/read",
            "Microsoft.Insights/metricdefinitions/read",
            "Microsoft.Insights/metrics/read",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/operations/read",
            "Microsoft.Resources/subscriptions/operationresults/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ],
        data_actions=["Microsoft.CognitiveServices/*"],
    ),
    _builtin(
        "25fbc0a9-bd7c-42a3-aa1a-3b75d497ee68",
        "Cognitive Services Contributor",
        "Lets you create, read, update, delete and manage keys of Cognitive Services.",
        actions=[
            "Microsoft.Authorization/*/read",
            "Microsoft.CognitiveServices/*",
            "Microsoft.Features/features/read",
            "Microsoft.Features/providers/features/read",
            "Microsoft.Features/providers/features/register/action",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Insights/diagnosticSettings/*",
            "Microsoft.Insights/logDefinitions/read",
            "Microsoft.Insights/metricdefinitions/read",
            "Microsoft.Insights/metrics/read",
            "Microsoft.ResourceHealth/availabilityStatuses/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/deployments/operations/read",
            "Microsoft.Resources/subscriptions/operationresults/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourcegroups/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
        ],
    ),
)

BUILTIN_ROLES_BY_NAME: Mapping[str, RoleDefinition] = {r.role_name: r for r in BUILTIN_ROLES}
_BUILTIN_IDS = frozenset(r.id for r in BUILTIN_ROLES)


def builtin_role(name: str) -> RoleDefinition:
    """A built-in role by display name, case-insensitively (``az role … --role "Reader"``)."""
    for role in BUILTIN_ROLES:
        if role.role_name.lower() == name.lower():
            return role
    raise KeyError(name)
