"""What every control-plane route declares: its path templates, caller and conditional headers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from propylon.control.arm import PROVIDER
from propylon.server.access import Caller, current_caller

__all__ = [
    "DEPLOYMENT",
    "ENDPOINT",
    "LOCATION",
    "RESOURCE_GROUP",
    "SUBSCRIPTION",
    "WORKSPACE",
    "CallerDep",
    "IfMatch",
    "IfNoneMatch",
]

SUBSCRIPTION = "/subscriptions/{subscription_id}"
RESOURCE_GROUP = SUBSCRIPTION + "/resourceGroups/{resource_group}"
WORKSPACE = RESOURCE_GROUP + f"/providers/{PROVIDER}/workspaces/{{workspace}}"
ENDPOINT = WORKSPACE + "/onlineEndpoints/{endpoint}"
DEPLOYMENT = ENDPOINT + "/deployments/{deployment}"
LOCATION = SUBSCRIPTION + f"/providers/{PROVIDER}/locations/{{location}}"

CallerDep = Annotated[Caller, Depends(current_caller)]
IfMatch = Annotated[
    str | None, Header(description="Apply only if the resource still has this ETag (else 412).")
]
IfNoneMatch = Annotated[str | None, Header(description="'*' creates only (412 if it exists).")]
