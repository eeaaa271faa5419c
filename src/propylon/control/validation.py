"""What a request means, checked: every failure is a 400 naming the field and the reason.

Pydantic (:mod:`propylon.control.schemas`) has already checked shapes and types; the rules here are
the service's (reference §1.1, §1.5.4, §1.6): name patterns, traffic that sums to 100 over existing
deployments, mirror traffic ≤ 50 % to one deployment, probe and request-setting ranges. Each
``normalize_*`` returns the ARM object with Azure's defaults filled in, as GET shows it.

Example::

    check_name("my-endpoint", what="endpoint")            # passes
    normalize_traffic({"BLUE": 100}, {"blue": "blue"})    # {'blue': 100}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from propylon.control.durations import format_duration, parse_duration
from propylon.control.schemas import (
    ManagedServiceIdentity,
    ProbeSettingsBody,
    RequestSettingsBody,
    ScaleSettingsBody,
    SkuBody,
)
from propylon.errors import BadRequest

__all__ = [
    "DEFAULT_PROBE",
    "DEFAULT_REQUEST_SETTINGS",
    "MAX_DEPLOYMENTS_PER_ENDPOINT",
    "MAX_INSTANCES",
    "bad_request_from",
    "check_asset_name",
    "check_name",
    "check_resource_group_name",
    "check_workspace_name",
    "identity_type",
    "normalize_capacity",
    "normalize_mirror_traffic",
    "normalize_probe",
    "normalize_request_settings",
    "normalize_scale_settings",
    "normalize_traffic",
]

MAX_INSTANCES = 50  # per deployment (reference §1.6, quota article)
MAX_DEPLOYMENTS_PER_ENDPOINT = 20
MAX_REQUEST_TIMEOUT_SECONDS = 180.0  # managed online endpoints
MAX_MIRROR_PERCENT = 50

DEFAULT_PROBE: dict[str, Any] = {
    "initialDelay": "PT10S",
    "period": "PT10S",
    "timeout": "PT2S",
    "successThreshold": 1,
    "failureThreshold": 30,
}
DEFAULT_REQUEST_SETTINGS: dict[str, Any] = {
    "maxConcurrentRequestsPerInstance": 1,
    "requestTimeout": "PT5S",
    "maxQueueWait": "PT0.5S",
}

# azure-ai-ml EndpointConfigurations: begins with a letter, ends with a letter or digit.
_ENDPOINT_NAME = re.compile(r"[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?")
_WORKSPACE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}")
_RESOURCE_GROUP_NAME = re.compile(r"[-\w.()]{0,89}[-\w()]", re.UNICODE)
_ASSET_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9\-_.]{0,254}")
_IDENTITY_TYPES = {
    "none": "None",
    "systemassigned": "SystemAssigned",
    "userassigned": "UserAssigned",
    "systemassigned,userassigned": "SystemAssigned,UserAssigned",
}


def bad_request_from(errors: Iterable[Mapping[str, Any]]) -> BadRequest:
    """One 400 for pydantic's errors: the first names its field in ``target`` and the message,
    all of them are listed in ``details``. Malformed JSON names ``body`` and the position."""
    details = []
    for problem in errors:
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        kind = problem.get("type", "")
        if kind == "json_invalid":
            reason = (problem.get("ctx") or {}).get("error", "invalid JSON")
            at = f" at character {location[-1]}" if location else ""
            details.append(
                {
                    "code": "InvalidRequestContent",
                    "target": "body",
                    "message": f"The request body is not valid JSON: {reason}{at}.",
                }
            )
            continue
        target = ".".join(location) or "body"
        if kind == "missing":
            message = f"'{target}' is required."
        else:
            reason = str(problem.get("msg", "invalid value")).removeprefix("Value error, ")
            message = f"Invalid value for '{target}': {reason}."
        details.append({"code": "InvalidRequestContent", "target": target, "message": message})
    first = details[0] if details else {"target": "body", "message": "Invalid request body."}
    return BadRequest(
        first["message"], code="InvalidRequestContent", target=first["target"], details=details
    )


def check_name(name: str, *, what: str, target: str = "name") -> None:
    """Endpoint and deployment names: 3–32 characters, a letter first, letters/digits/hyphens."""
    if not 3 <= len(name) <= 32:
        raise BadRequest(
            f"The {what} name {name!r} must be 3 to 32 characters long.",
            code="InvalidResourceName",
            target=target,
        )
    if _ENDPOINT_NAME.fullmatch(name) is None:
        raise BadRequest(
            f"The {what} name {name!r} must begin with a letter, end with a letter or digit, "
            "and contain only letters, digits and hyphens.",
            code="InvalidResourceName",
            target=target,
        )


def check_workspace_name(name: str) -> None:
    if _WORKSPACE_NAME.fullmatch(name) is None:
        raise BadRequest(
            f"The workspace name {name!r} must be 3 to 33 characters: letters, digits, '_' and "
            "'-', beginning with a letter or digit.",
            code="InvalidResourceName",
            target="name",
        )


def check_resource_group_name(name: str) -> None:
    if _RESOURCE_GROUP_NAME.fullmatch(name) is None:
        raise BadRequest(
            f"The resource group name {name!r} must be 1 to 90 characters of letters, digits, "
            "'_', '-', '.', '(' and ')', not ending in '.'.",
            code="InvalidResourceName",
            target="name",
        )


def check_asset_name(value: str, *, what: str) -> None:
    if _ASSET_NAME.fullmatch(value) is None:
        raise BadRequest(
            f"The {what} {value!r} must be 1 to 255 characters of letters, digits, '-', '_' and "
            "'.', beginning with a letter or digit.",
            code="InvalidResourceName",
            target=what.replace(" ", ""),
        )


def identity_type(identity: ManagedServiceIdentity | None) -> str:
    """The canonical spelling of ``identity.type``; an endpoint without one is SystemAssigned."""
    if identity is None:
        return "SystemAssigned"
    key = identity.type.replace(" ", "").replace("_", "").lower()
    found = _IDENTITY_TYPES.get(key)
    if found is None:
        raise BadRequest(
            f"'identity.type' must be one of {', '.join(_IDENTITY_TYPES.values())}, "
            f"not {identity.type!r}.",
            code="InvalidIdentityType",
            target="identity.type",
        )
    if "UserAssigned" in found and not identity.user_assigned_identities:
        raise BadRequest(
            "'identity.userAssignedIdentities' must name at least one identity when "
            "'identity.type' includes UserAssigned.",
            target="identity.userAssignedIdentities",
        )
    return found


def normalize_traffic(
    traffic: Mapping[str, int] | None,
    deployments: Mapping[str, str],
    *,
    target: str = "properties.traffic",
) -> dict[str, int]:
    """Traffic keyed by the deployments' own names; values 0–100 summing to 0 or 100.

    ``deployments`` maps lower-cased names of the endpoint's deployments to their names.
    """
    result: dict[str, int] = {}
    for key, value in (traffic or {}).items():
        name = deployments.get(key.lower())
        if name is None:
            raise BadRequest(
                f"'{target}' names deployment {key!r}, which does not exist in this endpoint; "
                "create the deployment before sending traffic to it.",
                code="InvalidTraffic",
                target=target,
            )
        if not 0 <= value <= 100:
            raise BadRequest(
                f"'{target}.{key}' must be between 0 and 100, not {value}.",
                code="InvalidTraffic",
                target=target,
            )
        result[name] = value
    total = sum(result.values())
    if total not in (0, 100):
        raise BadRequest(
            f"Total traffic has to either be 0 or sum up to 100; '{target}' sums to {total}.",
            code="InvalidTraffic",
            target=target,
        )
    return result


def normalize_mirror_traffic(
    mirror: Mapping[str, int] | None,
    traffic: Mapping[str, int],
    deployments: Mapping[str, str],
    *,
    target: str = "properties.mirrorTraffic",
) -> dict[str, int]:
    """At most 50 % mirrored, to one deployment, which takes no live traffic (reference §1.6)."""
    result: dict[str, int] = {}
    for key, value in (mirror or {}).items():
        name = deployments.get(key.lower())
        if name is None:
            raise BadRequest(
                f"'{target}' names deployment {key!r}, which does not exist in this endpoint.",
                code="InvalidMirrorTraffic",
                target=target,
            )
        if not 0 <= value <= MAX_MIRROR_PERCENT:
            raise BadRequest(
                f"'{target}.{key}' must be between 0 and {MAX_MIRROR_PERCENT}, not {value}.",
                code="InvalidMirrorTraffic",
                target=target,
            )
        if value and traffic.get(name, 0):
            raise BadRequest(
                f"Deployment {name!r} takes live traffic, so it cannot also receive mirrored "
                f"traffic ('{target}').",
                code="InvalidMirrorTraffic",
                target=target,
            )
        result[name] = value
    if len([v for v in result.values() if v]) > 1:
        raise BadRequest(
            f"'{target}' may send traffic to one deployment only.",
            code="InvalidMirrorTraffic",
            target=target,
        )
    return result


def _seconds(value: str | None, default: str, target: str, *, minimum: float) -> str:
    text = value if value is not None else default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise BadRequest(f"'{target}': {exc}.", target=target) from None
    if seconds < minimum:
        raise BadRequest(
            f"'{target}' must be at least {format_duration(minimum)}, not {text!r}.",
            target=target,
        )
    return format_duration(seconds)


def _count(value: int | None, default: int, target: str, *, low: int, high: int) -> int:
    chosen = default if value is None else value
    if not low <= chosen <= high:
        raise BadRequest(
            f"'{target}' must be between {low} and {high}, not {chosen}.", target=target
        )
    return chosen


def normalize_probe(
    body: ProbeSettingsBody | None, *, target: str, liveness: bool
) -> dict[str, Any]:
    given = body or ProbeSettingsBody()
    d = DEFAULT_PROBE
    success = _count(
        given.success_threshold,
        d["successThreshold"],
        f"{target}.successThreshold",
        low=1,
        high=100,
    )
    if liveness and success != 1:
        raise BadRequest(
            f"'{target}.successThreshold' must be 1 for a liveness probe.",
            target=f"{target}.successThreshold",
        )
    return {
        "initialDelay": _seconds(
            given.initial_delay, d["initialDelay"], f"{target}.initialDelay", minimum=0
        ),
        "period": _seconds(given.period, d["period"], f"{target}.period", minimum=1),
        "timeout": _seconds(given.timeout, d["timeout"], f"{target}.timeout", minimum=1),
        "successThreshold": success,
        "failureThreshold": _count(
            given.failure_threshold,
            d["failureThreshold"],
            f"{target}.failureThreshold",
            low=1,
            high=1000,
        ),
    }


def normalize_request_settings(body: RequestSettingsBody | None) -> dict[str, Any]:
    given = body or RequestSettingsBody()
    target = "properties.requestSettings"
    d = DEFAULT_REQUEST_SETTINGS
    timeout = _seconds(
        given.request_timeout, d["requestTimeout"], f"{target}.requestTimeout", minimum=0.001
    )
    if parse_duration(timeout) > MAX_REQUEST_TIMEOUT_SECONDS:
        raise BadRequest(
            f"'{target}.requestTimeout' must be at most "
            f"{format_duration(MAX_REQUEST_TIMEOUT_SECONDS)}, not {given.request_timeout!r}.",
            target=f"{target}.requestTimeout",
        )
    return {
        "maxConcurrentRequestsPerInstance": _count(
            given.max_concurrent_requests_per_instance,
            d["maxConcurrentRequestsPerInstance"],
            f"{target}.maxConcurrentRequestsPerInstance",
            low=1,
            high=1000,
        ),
        "requestTimeout": timeout,
        "maxQueueWait": _seconds(
            given.max_queue_wait, d["maxQueueWait"], f"{target}.maxQueueWait", minimum=0
        ),
    }


def normalize_capacity(sku: SkuBody | None) -> dict[str, Any]:
    """The deployment ``sku``: the client reads ``instance_count`` from ``sku.capacity``."""
    given = sku or SkuBody()
    capacity = _count(given.capacity, 1, "sku.capacity", low=1, high=MAX_INSTANCES)
    result: dict[str, Any] = {"name": given.name or "Default", "capacity": capacity}
    if given.tier:
        result["tier"] = given.tier
    return result


def normalize_scale_settings(body: ScaleSettingsBody | None, capacity: int) -> dict[str, Any]:
    target = "properties.scaleSettings"
    if body is None or body.scale_type == "Default":
        return {"scaleType": "Default"}
    low = _count(body.min_instances, 1, f"{target}.minInstances", low=0, high=MAX_INSTANCES)
    high = _count(
        body.max_instances, max(low, capacity), f"{target}.maxInstances", low=1, high=MAX_INSTANCES
    )
    if low > high:
        raise BadRequest(
            f"'{target}.minInstances' ({low}) must not exceed '{target}.maxInstances' ({high}).",
            target=f"{target}.minInstances",
        )
    return {
        "scaleType": "TargetUtilization",
        "minInstances": low,
        "maxInstances": high,
        "pollingInterval": _seconds(
            body.polling_interval, "PT1S", f"{target}.pollingInterval", minimum=0.1
        ),
        "targetUtilizationPercentage": _count(
            body.target_utilization_percentage,
            70,
            f"{target}.targetUtilizationPercentage",
            low=1,
            high=100,
        ),
    }
