"""Graph routes for applications (with their credentials) and service principals.

Registered by :func:`propylon.identity.graph.router`; see that module for the whole surface and
how it is authorized.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import Body, Request
from fastapi.responses import Response

from propylon.errors import BadRequest, NotFound
from propylon.identity.directory import DirectoryObject, ObjectKind
from propylon.identity.graph_support import (
    ApplicationsDelete,
    ApplicationsRead,
    ApplicationsWrite,
    DirectoryCall,
    JsonBody,
    ServicePrincipalsDelete,
    ServicePrincipalsRead,
    ServicePrincipalsWrite,
    application_json,
    boolean,
    date_time,
    filtered,
    odata_list,
    sp_json,
    string,
)


def _find_application(call: DirectoryCall, app: str) -> DirectoryObject:
    found = call.directory.find_application(call.tenant, app)
    if found is None:
        raise NotFound(
            f"Resource '{app}' does not exist or one of its queried reference-property objects "
            "are not present.",
            code="Request_ResourceNotFound",
        )
    return found


def list_applications(
    request: Request,
    call: ApplicationsRead,
) -> JsonBody:
    apps = filtered(
        call.directory.list_objects(call.tenant, ObjectKind.SERVICE_PRINCIPAL),
        request.query_params.get("$filter"),
        {"appId": lambda o: o.client_id, "displayName": lambda o: o.display_name},
    )
    return odata_list("applications", (application_json(call.directory, a) for a in apps))


def create_application(
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> JsonBody:
    uris = body.get("identifierUris") or []
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise BadRequest("identifierUris must be a list of strings.", code="Request_BadRequest")
    app = call.directory.create_application(
        call.tenant,
        string(body, "displayName") or "",
        public_client=boolean(body, "isFallbackPublicClient") is True,
        identifier_uris=uris,
    )
    return application_json(call.directory, app)


def get_application(
    app: str,
    call: ApplicationsRead,
) -> JsonBody:
    return application_json(call.directory, _find_application(call, app))


def update_application(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> Response:
    found = _find_application(call, app)
    application = dict(found.body.get("application") or {})
    public = boolean(body, "isFallbackPublicClient")
    if public is not None:
        application["isFallbackPublicClient"] = public
    if "identifierUris" in body:
        uris = body["identifierUris"]
        if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
            raise BadRequest("identifierUris must be a list of strings.", code="Request_BadRequest")
        application["identifierUris"] = uris
    application.setdefault("id", found.application_id)
    call.directory.update(
        found.id,
        tenant_id=call.tenant,
        display_name=string(body, "displayName", required=False),
        body={"application": application},
    )
    return Response(status_code=204)


def delete_application(
    app: str,
    call: ApplicationsDelete,
) -> Response:
    call.directory.delete(_find_application(call, app).id, tenant_id=call.tenant)
    return Response(status_code=204)


def add_password(
    app: str,
    call: ApplicationsWrite,
    body: Annotated[JsonBody | None, Body()] = None,
) -> JsonBody:
    found = _find_application(call, app)
    credential = (body or {}).get("passwordCredential") or {}
    if not isinstance(credential, Mapping):
        raise BadRequest("passwordCredential must be an object.", code="Request_BadRequest")
    added = call.directory.credentials.add_secret(
        found.id,
        tenant_id=call.tenant,
        display_name=string(credential, "displayName", required=False),
        end=date_time(credential, "endDateTime"),
    )
    return added.graph()


def add_key(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> JsonBody:
    found = _find_application(call, app)
    credential = body.get("keyCredential")
    if not isinstance(credential, Mapping):
        raise BadRequest("keyCredential is required.", code="Request_BadRequest")
    if (
        credential.get("type", "AsymmetricX509Cert") != "AsymmetricX509Cert"
        or credential.get("usage", "Verify") != "Verify"
    ):
        raise BadRequest(
            "Only keyCredentials of type AsymmetricX509Cert with usage Verify are supported.",
            code="Request_BadRequest",
        )
    added = call.directory.credentials.add_certificate(
        found.id,
        string(credential, "key") or "",
        tenant_id=call.tenant,
        display_name=string(credential, "displayName", required=False),
        end=date_time(credential, "endDateTime"),
    )
    return added.graph()


def remove_credential(
    app: str,
    body: Annotated[JsonBody, Body()],
    call: ApplicationsWrite,
) -> Response:
    found = _find_application(call, app)
    call.directory.credentials.remove(found.id, string(body, "keyId") or "", tenant_id=call.tenant)
    return Response(status_code=204)


# -- service principals ---------------------------------------------------------------------


def _find_sp(call: DirectoryCall, oid: str) -> DirectoryObject:
    return call.directory.require(
        oid,
        tenant_id=call.tenant,
        kinds=[ObjectKind.SERVICE_PRINCIPAL, ObjectKind.MANAGED_IDENTITY],
    )


def list_service_principals(
    request: Request,
    call: ServicePrincipalsRead,
) -> JsonBody:
    principals = [
        *call.directory.list_objects(call.tenant, ObjectKind.SERVICE_PRINCIPAL),
        *call.directory.list_objects(call.tenant, ObjectKind.MANAGED_IDENTITY),
    ]
    selected = filtered(
        principals,
        request.query_params.get("$filter"),
        {
            "appId": lambda o: o.client_id,
            "displayName": lambda o: o.display_name,
            "id": lambda o: o.id,
        },
    )
    return odata_list("servicePrincipals", (sp_json(p) for p in selected))


def create_service_principal(
    body: Annotated[JsonBody, Body()],
    call: ServicePrincipalsWrite,
) -> JsonBody:
    # Applications come with their principal here, so this only confirms it exists.
    app_id = string(body, "appId") or ""
    found = call.directory.find_client(call.tenant, app_id)
    if found is None:
        raise BadRequest(
            f"The appId '{app_id}' of the service principal does not reference a valid "
            "application object.",
            code="Request_BadRequest",
        )
    return sp_json(found)


def get_service_principal(
    oid: str,
    call: ServicePrincipalsRead,
) -> JsonBody:
    return sp_json(_find_sp(call, oid))


def update_service_principal(
    oid: str,
    body: Annotated[JsonBody, Body()],
    call: ServicePrincipalsWrite,
) -> Response:
    found = _find_sp(call, oid)
    call.directory.update(
        found.id,
        tenant_id=call.tenant,
        display_name=string(body, "displayName", required=False),
        enabled=boolean(body, "accountEnabled"),
    )
    return Response(status_code=204)


def delete_service_principal(
    oid: str,
    call: ServicePrincipalsDelete,
) -> Response:
    call.directory.delete(_find_sp(call, oid).id, tenant_id=call.tenant)
    return Response(status_code=204)
