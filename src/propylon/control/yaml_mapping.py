"""CLI v2 YAML (``endpoint.yml``, ``deployment.yml``) ↔ the ARM REST bodies (reference §2).

One mapping, shared by the CLI, the Python client and the tests, so that ``create -f`` and
``show`` speak exactly what the control plane stores. The YAML side is snake_case with Azure's
units (probe seconds, request milliseconds, ``instance_count``); the REST side is camelCase with
ISO 8601 durations and ``sku.capacity``. Asset fields must already be references
(``azureml:<name>:<version>`` or an ARM id): uploading local paths is the client's job.

Example::

    >>> endpoint_to_rest({"name": "my-endpoint", "auth_mode": "aad_token"}, location="local")
    {'location': 'local', 'tags': {}, 'identity': {'type': 'SystemAssigned'}, 'properties': {'authMode': 'AADToken', 'properties': {}, 'traffic': {}, 'mirrorTraffic': {}}}
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from propylon.control.durations import format_duration, parse_duration
from propylon.errors import BadRequest

__all__ = [
    "deployment_from_rest",
    "deployment_to_rest",
    "endpoint_from_rest",
    "endpoint_to_rest",
]

_AUTH_TO_REST = {"key": "Key", "aml_token": "AMLToken", "aad_token": "AADToken"}
_AUTH_FROM_REST = {value.lower(): key for key, value in _AUTH_TO_REST.items()}
_IDENTITY_TO_REST = {
    "system_assigned": "SystemAssigned",
    "user_assigned": "UserAssigned",
    "system_assigned,user_assigned": "SystemAssigned,UserAssigned",
    "none": "None",
}
_IDENTITY_FROM_REST = {value.lower(): key for key, value in _IDENTITY_TO_REST.items()}
_COMPUTE = {"managed": "Managed", "kubernetes": "Kubernetes"}
_SCALE = {"default": "Default", "target_utilization": "TargetUtilization"}
_PROBE_FIELDS = (
    ("initial_delay", "initialDelay"),
    ("period", "period"),
    ("timeout", "timeout"),
)


def _enum(value: Any, table: Mapping[str, str], field: str) -> str:
    key = str(value).strip().lower().replace(" ", "")
    found = table.get(key) or table.get(key.replace("-", "_"))
    if found is None:
        raise BadRequest(
            f"'{field}' must be one of {', '.join(table)}, not {value!r}.",
            code="InvalidYaml",
            target=field,
        )
    return found


def _network(value: Any) -> str:
    return "Disabled" if str(value).lower() == "disabled" else "Enabled"


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _reference(value: Any, field: str) -> str:
    if isinstance(value, Mapping):
        raise BadRequest(
            f"'{field}' is inline; register it (or let the CLI upload it) and refer to it as "
            "azureml:<name>:<version>.",
            code="InvalidYaml",
            target=field,
        )
    text = str(value)
    return text.removeprefix("azureml:") if text.startswith("azureml:/") else text


def _shown(asset_id: str | None) -> str | None:
    """How ``az ml`` shows an asset id (``azureml:/subscriptions/…``); references stay as given."""
    if asset_id and asset_id.startswith("/"):
        return f"azureml:{asset_id}"
    return asset_id


def _compact(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


# --- endpoints ------------------------------------------------------------------------------


def endpoint_to_rest(document: Mapping[str, Any], *, location: str) -> dict[str, Any]:
    """The PUT body of an ``endpoint.yml`` (zero traffic entries dropped, as azure-ai-ml does)."""
    identity_doc = document.get("identity") or {"type": "system_assigned"}
    identity: dict[str, Any] = {
        "type": _enum(
            identity_doc.get("type", "system_assigned"), _IDENTITY_TO_REST, "identity.type"
        )
    }
    assigned = identity_doc.get("user_assigned_identities") or []
    if assigned:
        identity["userAssignedIdentities"] = {
            str(item["resource_id"] if isinstance(item, Mapping) else item): {} for item in assigned
        }
    properties: dict[str, Any] = {
        "authMode": _enum(document.get("auth_mode", "key"), _AUTH_TO_REST, "auth_mode"),
        "description": document.get("description"),
        "properties": dict(document.get("properties") or {}),
        "traffic": {str(k): int(v) for k, v in (document.get("traffic") or {}).items() if int(v)},
        "mirrorTraffic": {
            str(k): int(v) for k, v in (document.get("mirror_traffic") or {}).items() if int(v)
        },
    }
    if document.get("public_network_access") is not None:
        properties["publicNetworkAccess"] = _network(document["public_network_access"])
    if document.get("compute"):
        properties["compute"] = str(document["compute"]).removeprefix("azureml:")
    return {
        "location": location,
        "tags": dict(document.get("tags") or {}),
        "identity": identity,
        "properties": _compact(properties),
    }


def endpoint_from_rest(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``show`` document of an endpoint body (snake_case, as ``az ml`` prints it)."""
    properties = body.get("properties") or {}
    identity = body.get("identity") or {}
    system = body.get("systemData") or {}
    shown_identity: dict[str, Any] | None = None
    if identity:
        shown_identity = _compact(
            {
                "type": _IDENTITY_FROM_REST.get(str(identity.get("type", "")).lower()),
                "principal_id": identity.get("principalId"),
                "tenant_id": identity.get("tenantId"),
            }
        )
        assigned = identity.get("userAssignedIdentities") or {}
        if assigned:
            shown_identity["user_assigned_identities"] = [
                _compact(
                    {
                        "resource_id": key,
                        "principal_id": (value or {}).get("principalId"),
                        "client_id": (value or {}).get("clientId"),
                    }
                )
                for key, value in assigned.items()
            ]
    merged = dict(properties.get("properties") or {})
    for key in ("createdBy", "createdAt", "lastModifiedAt"):
        if system.get(key):
            merged[key] = system[key]
    return _compact(
        {
            "name": body.get("name"),
            "id": body.get("id"),
            "location": body.get("location"),
            "kind": body.get("kind"),
            "auth_mode": _AUTH_FROM_REST.get(str(properties.get("authMode", "")).lower()),
            "description": properties.get("description"),
            "tags": dict(body.get("tags") or {}),
            "traffic": dict(properties.get("traffic") or {}),
            "mirror_traffic": dict(properties.get("mirrorTraffic") or {}),
            "identity": shown_identity,
            "public_network_access": (properties.get("publicNetworkAccess") or "").lower() or None,
            "provisioning_state": properties.get("provisioningState"),
            "scoring_uri": properties.get("scoringUri"),
            "openapi_uri": properties.get("swaggerUri"),
            "properties": merged,
        }
    )


# --- deployments ----------------------------------------------------------------------------


def _probe_to_rest(probe: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        rest: format_duration(float(probe[yml])) for yml, rest in _PROBE_FIELDS if yml in probe
    }
    for yml, rest in (
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        if yml in probe:
            result[rest] = int(probe[yml])
    return result


def _probe_from_rest(probe: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        yml: _seconds(parse_duration(probe[rest])) for yml, rest in _PROBE_FIELDS if rest in probe
    }
    for yml, rest in (
        ("success_threshold", "successThreshold"),
        ("failure_threshold", "failureThreshold"),
    ):
        if rest in probe:
            result[yml] = probe[rest]
    return result


def _request_settings_to_rest(settings: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "request_timeout_ms" in settings:
        result["requestTimeout"] = format_duration(int(settings["request_timeout_ms"]) / 1000)
    if "max_queue_wait_ms" in settings:
        result["maxQueueWait"] = format_duration(int(settings["max_queue_wait_ms"]) / 1000)
    if "max_concurrent_requests_per_instance" in settings:
        result["maxConcurrentRequestsPerInstance"] = int(
            settings["max_concurrent_requests_per_instance"]
        )
    return result


def _request_settings_from_rest(settings: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if "requestTimeout" in settings:
        result["request_timeout_ms"] = round(parse_duration(settings["requestTimeout"]) * 1000)
    if "maxQueueWait" in settings:
        result["max_queue_wait_ms"] = round(parse_duration(settings["maxQueueWait"]) * 1000)
    if "maxConcurrentRequestsPerInstance" in settings:
        result["max_concurrent_requests_per_instance"] = settings[
            "maxConcurrentRequestsPerInstance"
        ]
    return result


def _scale_to_rest(settings: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "scaleType": _enum(settings.get("type", "default"), _SCALE, "scale_settings.type")
    }
    for yml, rest in (
        ("min_instances", "minInstances"),
        ("max_instances", "maxInstances"),
        ("target_utilization_percentage", "targetUtilizationPercentage"),
    ):
        if yml in settings:
            result[rest] = int(settings[yml])
    if "polling_interval" in settings:
        result["pollingInterval"] = format_duration(float(settings["polling_interval"]))
    return result


def _scale_from_rest(settings: Mapping[str, Any]) -> dict[str, Any]:
    kind = {v.lower(): k for k, v in _SCALE.items()}.get(
        str(settings.get("scaleType", "Default")).lower(), "default"
    )
    result: dict[str, Any] = {"type": kind}
    for yml, rest in (
        ("min_instances", "minInstances"),
        ("max_instances", "maxInstances"),
        ("target_utilization_percentage", "targetUtilizationPercentage"),
    ):
        if rest in settings:
            result[yml] = settings[rest]
    if "pollingInterval" in settings:
        result["polling_interval"] = _seconds(parse_duration(settings["pollingInterval"]))
    return result


def deployment_to_rest(document: Mapping[str, Any], *, location: str) -> dict[str, Any]:
    """The PUT body of a ``deployment.yml`` whose model, code and environment are references."""
    properties: dict[str, Any] = {
        "endpointComputeType": _enum(document.get("type", "managed"), _COMPUTE, "type"),
        "description": document.get("description"),
        "properties": {str(k): str(v) for k, v in (document.get("properties") or {}).items()},
        "environmentVariables": {
            str(k): str(v) for k, v in (document.get("environment_variables") or {}).items()
        },
        "instanceType": document.get("instance_type"),
        "appInsightsEnabled": bool(document.get("app_insights_enabled", False)),
        "modelMountPath": document.get("model_mount_path"),
    }
    if document.get("model") is not None:
        properties["model"] = _reference(document["model"], "model")
    if document.get("environment") is not None:
        properties["environmentId"] = _reference(document["environment"], "environment")
    code = document.get("code_configuration")
    if code:
        properties["codeConfiguration"] = _compact(
            {
                "codeId": _reference(code["code"], "code_configuration.code")
                if code.get("code")
                else None,
                "scoringScript": code.get("scoring_script"),
            }
        )
    if document.get("request_settings"):
        properties["requestSettings"] = _request_settings_to_rest(document["request_settings"])
    for yml, rest in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe")):
        if document.get(yml):
            properties[rest] = _probe_to_rest(document[yml])
    if document.get("scale_settings"):
        properties["scaleSettings"] = _scale_to_rest(document["scale_settings"])
    if document.get("egress_public_network_access") is not None:
        properties["egressPublicNetworkAccess"] = _network(document["egress_public_network_access"])
    return {
        "location": location,
        "tags": dict(document.get("tags") or {}),
        "sku": {"name": "Default", "capacity": int(document.get("instance_count") or 1)},
        "properties": _compact(properties),
    }


def deployment_from_rest(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``show`` document of a deployment body (snake_case, as ``az ml`` prints it)."""
    properties = body.get("properties") or {}
    resource_id = str(body.get("id") or "")
    parts = resource_id.split("/")
    endpoint_name = parts[-3] if len(parts) >= 3 and parts[-2].lower() == "deployments" else None
    code = properties.get("codeConfiguration") or {}
    compute = str(properties.get("endpointComputeType", "Managed")).lower()
    document: dict[str, Any] = {
        "name": body.get("name"),
        "id": resource_id or None,
        "endpoint_name": endpoint_name,
        "type": compute,
        "description": properties.get("description"),
        "tags": dict(body.get("tags") or {}),
        "properties": dict(properties.get("properties") or {}),
        "model": _shown(properties.get("model")),
        "environment": _shown(properties.get("environmentId")),
        "environment_variables": dict(properties.get("environmentVariables") or {}),
        "instance_type": properties.get("instanceType"),
        "instance_count": (body.get("sku") or {}).get("capacity"),
        "app_insights_enabled": properties.get("appInsightsEnabled"),
        "egress_public_network_access": (properties.get("egressPublicNetworkAccess") or "").lower()
        or None,
        "provisioning_state": properties.get("provisioningState"),
        "model_mount_path": properties.get("modelMountPath"),
    }
    if code:
        document["code_configuration"] = _compact(
            {"code": _shown(code.get("codeId")), "scoring_script": code.get("scoringScript")}
        )
    if properties.get("requestSettings"):
        document["request_settings"] = _request_settings_from_rest(properties["requestSettings"])
    for yml, rest in (("liveness_probe", "livenessProbe"), ("readiness_probe", "readinessProbe")):
        if properties.get(rest):
            document[yml] = _probe_from_rest(properties[rest])
    if properties.get("scaleSettings"):
        document["scale_settings"] = _scale_from_rest(properties["scaleSettings"])
    return _compact(document)
