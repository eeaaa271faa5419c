"""Request bodies of the control plane as pydantic models (the source of ``/openapi.json``).

Wire names are ARM's camelCase; fields the service fills in (``provisioningState``, ``scoringUri``,
…) and anything unknown are accepted and ignored, because the official client echoes the body it
last read (reference §5.1.3 item 4). Shapes are checked here; meaning (name rules, traffic sums,
known assets) in :mod:`propylon.control.validation`, which names the field of any 400.

Example::

    body = OnlineEndpointBody.model_validate({"properties": {"authMode": "key"}})
    body.properties.auth_mode   # 'Key'
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = [
    "AssetContainerBody",
    "CodeConfiguration",
    "CodeVersionBody",
    "DeploymentLogsBody",
    "EndpointAuthKeysBody",
    "EndpointPatchBody",
    "EnvironmentVersionBody",
    "ManagedServiceIdentity",
    "ModelVersionBody",
    "OnlineDeploymentBody",
    "OnlineDeploymentPatchBody",
    "OnlineEndpointBody",
    "ProbeSettingsBody",
    "RegenerateKeysBody",
    "RequestSettingsBody",
    "ResourceGroupBody",
    "ScaleSettingsBody",
    "SkuBody",
    "WorkspaceBody",
]


def _one_of(*allowed: str) -> BeforeValidator:
    """Accept any casing of ``allowed`` (ARM enums are case-insensitive) and return its spelling."""
    spelled = {value.lower().replace("_", ""): value for value in allowed}

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            found = spelled.get(value.lower().replace("_", ""))
            if found is not None:
                return found
        raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")

    return BeforeValidator(check)


AuthMode = Annotated[str, _one_of("Key", "AMLToken", "AADToken")]
NetworkAccess = Annotated[str | None, _one_of("Enabled", "Disabled")]
ComputeType = Annotated[str, _one_of("Managed", "Kubernetes", "AzureMLCompute")]
KeyType = Annotated[str, _one_of("Primary", "Secondary")]
ContainerTypeName = Annotated[str | None, _one_of("InferenceServer", "StorageInitializer")]
ScaleType = Annotated[str, _one_of("Default", "TargetUtilization")]
StringMap = dict[str, str]


class ArmModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        protected_namespaces=(),
    )


class SkuBody(ArmModel):
    name: str = "Default"
    tier: str | None = None
    size: str | None = None
    family: str | None = None
    capacity: int | None = None


class ManagedServiceIdentity(ArmModel):
    """``type`` is None, SystemAssigned, UserAssigned or both (checked case-insensitively)."""

    type: str = "SystemAssigned"
    user_assigned_identities: dict[str, dict[str, Any] | None] | None = None


# --- resource groups and workspaces ---------------------------------------------------------


class ResourceGroupBody(ArmModel):
    location: str | None = None
    tags: StringMap | None = None
    managed_by: str | None = None


class WorkspaceProperties(ArmModel):
    model_config = ConfigDict(extra="allow")

    friendly_name: str | None = None
    description: str | None = None
    disable_local_auth: bool | None = Field(
        default=None,
        description="True refuses key and aml_token credentials for every endpoint inside.",
    )
    public_network_access: NetworkAccess = None


class WorkspaceBody(ArmModel):
    location: str | None = None
    tags: StringMap | None = None
    kind: str | None = None
    identity: ManagedServiceIdentity | None = None
    sku: SkuBody | None = None
    properties: WorkspaceProperties = Field(default_factory=WorkspaceProperties)


# --- online endpoints -----------------------------------------------------------------------


class EndpointAuthKeysBody(ArmModel):
    primary_key: str | None = None
    secondary_key: str | None = None


class OnlineEndpointProperties(ArmModel):
    auth_mode: AuthMode
    description: str | None = None
    properties: StringMap | None = None
    keys: EndpointAuthKeysBody | None = Field(
        default=None, description="Create-only initial keys; always returned as null."
    )
    compute: str | None = None
    traffic: dict[str, int] | None = None
    mirror_traffic: dict[str, int] | None = None
    public_network_access: NetworkAccess = None


class OnlineEndpointBody(ArmModel):
    location: str | None = None
    kind: str | None = None
    tags: StringMap | None = None
    identity: ManagedServiceIdentity | None = None
    sku: SkuBody | None = None
    properties: OnlineEndpointProperties


class EndpointPatchProperties(ArmModel):
    auth_mode: AuthMode | None = None
    description: str | None = None
    properties: StringMap | None = None
    traffic: dict[str, int] | None = None
    mirror_traffic: dict[str, int] | None = None
    public_network_access: NetworkAccess = None


class EndpointPatchBody(ArmModel):
    """ARM's ``PartialMinimalTrackedResourceWithIdentity`` plus the mutable properties."""

    tags: StringMap | None = None
    identity: ManagedServiceIdentity | None = None
    properties: EndpointPatchProperties | None = None


class RegenerateKeysBody(ArmModel):
    key_type: KeyType
    key_value: str | None = Field(
        default=None,
        description=(
            "New value of the key. The value the key already has (what azure-ai-ml sends) "
            "asks for a fresh random key."
        ),
    )


# --- online deployments ---------------------------------------------------------------------


class CodeConfiguration(ArmModel):
    code_id: str | None = None
    scoring_script: str


class ProbeSettingsBody(ArmModel):
    failure_threshold: int | None = None
    success_threshold: int | None = None
    timeout: str | None = None
    period: str | None = None
    initial_delay: str | None = None


class RequestSettingsBody(ArmModel):
    max_concurrent_requests_per_instance: int | None = None
    request_timeout: str | None = None
    max_queue_wait: str | None = None


class ScaleSettingsBody(ArmModel):
    scale_type: ScaleType = "Default"
    min_instances: int | None = None
    max_instances: int | None = None
    polling_interval: str | None = None
    target_utilization_percentage: int | None = None


class OnlineDeploymentProperties(ArmModel):
    endpoint_compute_type: ComputeType
    description: str | None = None
    properties: StringMap | None = None
    code_configuration: CodeConfiguration | None = None
    environment_id: str | None = None
    environment_variables: StringMap | None = None
    model: str | None = None
    model_mount_path: str | None = None
    instance_type: str | None = None
    scale_settings: ScaleSettingsBody | None = None
    request_settings: RequestSettingsBody | None = None
    liveness_probe: ProbeSettingsBody | None = None
    readiness_probe: ProbeSettingsBody | None = None
    app_insights_enabled: bool | None = None
    egress_public_network_access: NetworkAccess = None
    data_collector: dict[str, Any] | None = None


class OnlineDeploymentBody(ArmModel):
    location: str | None = None
    kind: str | None = None
    tags: StringMap | None = None
    sku: SkuBody | None = None
    properties: OnlineDeploymentProperties


class OnlineDeploymentPatchBody(ArmModel):
    """ARM's ``PartialMinimalTrackedResourceWithSku``; ``properties`` is merged in as well."""

    tags: StringMap | None = None
    sku: SkuBody | None = None
    properties: dict[str, Any] | None = None


class DeploymentLogsBody(ArmModel):
    container_type: ContainerTypeName = None
    tail: int | None = Field(default=None, ge=0)


# --- assets ---------------------------------------------------------------------------------


class AssetContainerProperties(ArmModel):
    description: str | None = None
    tags: StringMap | None = None
    properties: StringMap | None = None
    is_archived: bool | None = None


class AssetContainerBody(ArmModel):
    properties: AssetContainerProperties = Field(default_factory=AssetContainerProperties)


class AssetVersionProperties(ArmModel):
    description: str | None = None
    tags: StringMap | None = None
    properties: StringMap | None = None
    is_archived: bool | None = None
    is_anonymous: bool | None = None


class ModelVersionProperties(AssetVersionProperties):
    model_uri: str | None = Field(
        default=None, description="sha256:<hex> of an uploaded archive (see PUT …/blobs/)."
    )
    model_type: str | None = None
    flavors: dict[str, Any] | None = None
    stage: str | None = None
    job_name: str | None = None


class ModelVersionBody(ArmModel):
    properties: ModelVersionProperties = Field(default_factory=ModelVersionProperties)


class CodeVersionProperties(AssetVersionProperties):
    code_uri: str = Field(description="sha256:<hex> of an uploaded archive (see PUT …/blobs/).")


class CodeVersionBody(ArmModel):
    properties: CodeVersionProperties


class EnvironmentVersionProperties(AssetVersionProperties):
    image: str | None = None
    conda_file: str | None = Field(default=None, description="The conda YAML itself, as text.")
    os_type: str | None = None
    build: dict[str, Any] | None = None
    inference_config: dict[str, Any] | None = None


class EnvironmentVersionBody(ArmModel):
    properties: EnvironmentVersionProperties = Field(default_factory=EnvironmentVersionProperties)
