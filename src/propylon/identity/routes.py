"""HTTP routes of the identity provider (FastAPI adapter; the protocol code is framework-free).

==========================================================  ======================================
route                                                       what
==========================================================  ======================================
``GET  /{tenant}/v2.0/.well-known/openid-configuration``    OIDC discovery (v2 endpoints)
``GET  /{tenant}/.well-known/openid-configuration``         OIDC discovery (v1 endpoints)
``GET  /{tenant}/discovery/v2.0/keys``, ``…/discovery/keys``  JWKS
``POST /{tenant}/oauth2/v2.0/token``, ``…/oauth2/token``    token endpoint (v2 scope=, v1 resource=)
``POST /{tenant}/oauth2/v2.0/devicecode``, ``…/devicecode`` device authorization (RFC 8628)
``GET  /{tenant}/oauth2/v2.0/authorize``, ``…/authorize``   400: no browser redirect flows
``GET  /common/userrealm/{username}``                       MSAL's home-realm probe: ``Managed``
``GET|POST /device``                                        the device-code sign-in page
``GET  /msi/token``                                         managed identity for instances
``/v1.0/...``                                                directory REST (:mod:`.graph`)
``/subscriptions/…/Microsoft.ManagedIdentity/…``            user-assigned identities (ARM)
==========================================================  ======================================

``{tenant}`` is a tenant id of this server, or ``common``/``organizations`` (the default
tenant). Token-endpoint and MSI errors are RFC 6749 §5.2 bodies (``error``,
``error_description``, plus Entra's ``error_codes``, ``timestamp``, ``trace_id``,
``correlation_id``), never ARM bodies; token responses are ``Cache-Control: no-store``
(RFC 6749 §5.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from propylon.errors import OAuthError, PropylonError
from propylon.identity import device_page, graph, user_assigned_identities
from propylon.identity.oauth2 import TokenRequest
from propylon.identity.provider import COMMON_TENANTS, IdentityProvider

__all__ = ["oauth_error_response", "provider_of", "router"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 64 * 1024
_AADSTS = re.compile(r"AADSTS(\d+)")


def provider_of(request: Request) -> IdentityProvider:
    provider: IdentityProvider = request.app.state.ctx.services["identity"]
    return provider


def oauth_error_response(request: Request, error: PropylonError, **extra: Any) -> JSONResponse:
    """An RFC 6749 §5.2 body (with Entra's diagnostics) for any error at an OAuth endpoint."""
    if isinstance(error, OAuthError):
        body: dict[str, Any] = error.oauth_body()
    else:
        code = "temporarily_unavailable" if error.status == 503 else "server_error"
        body = {"error": code, "error_description": error.message}
    request_id = getattr(request.state, "request_id", None)
    codes = [int(c) for c in _AADSTS.findall(body["error_description"])]
    body.update(
        error_codes=codes,
        timestamp=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        trace_id=request_id,
        correlation_id=request.headers.get("client-request-id") or request_id,
        **extra,
    )
    return JSONResponse(body, status_code=error.status, headers={**_NO_STORE, **error.headers})


def router() -> APIRouter:
    routes = APIRouter(tags=["identity"])
    routes.add_api_route(
        "/{tenant}/v2.0/.well-known/openid-configuration", _discovery_v2, methods=["GET"]
    )
    routes.add_api_route(
        "/{tenant}/.well-known/openid-configuration", _discovery_v1, methods=["GET"]
    )
    for path in ("/{tenant}/discovery/v2.0/keys", "/{tenant}/discovery/keys"):
        routes.add_api_route(path, _keys, methods=["GET"])
    routes.add_api_route("/{tenant}/oauth2/v2.0/token", _token_v2, methods=["POST"])
    routes.add_api_route("/{tenant}/oauth2/token", _token_v1, methods=["POST"])
    routes.add_api_route("/{tenant}/oauth2/v2.0/devicecode", _devicecode_v2, methods=["POST"])
    routes.add_api_route("/{tenant}/oauth2/devicecode", _devicecode_v1, methods=["POST"])
    for path in ("/{tenant}/oauth2/v2.0/authorize", "/{tenant}/oauth2/authorize"):
        routes.add_api_route(path, _authorize, methods=["GET", "POST"])
    routes.add_api_route("/common/userrealm/{username}", _user_realm, methods=["GET"])
    routes.add_api_route("/msi/token", _msi_token, methods=["GET"])
    routes.include_router(device_page.router())
    routes.include_router(graph.router())
    routes.include_router(user_assigned_identities.router())
    return routes


# -- discovery ------------------------------------------------------------------------------


def _tenant_or_error(request: Request, tenant: str) -> str | JSONResponse:
    provider = provider_of(request)
    resolved = provider.directory.resolve_tenant(tenant)
    if resolved is None:
        error = OAuthError(
            "invalid_tenant",
            f"AADSTS90002: Tenant '{tenant[:64]}' not found. Check the tenant id in the "
            "authority URL.",
        )
        return oauth_error_response(request, error)
    return tenant.lower() if tenant.lower() in COMMON_TENANTS else resolved


def _discovery(request: Request, tenant: str, *, v1: bool) -> Response:
    resolved = _tenant_or_error(request, tenant)
    if isinstance(resolved, Response):
        return resolved
    return JSONResponse(provider_of(request).discovery(resolved, v1=v1))


def _discovery_v2(request: Request, tenant: str) -> Response:
    return _discovery(request, tenant, v1=False)


def _discovery_v1(request: Request, tenant: str) -> Response:
    return _discovery(request, tenant, v1=True)


def _keys(request: Request, tenant: str) -> Response:
    resolved = _tenant_or_error(request, tenant)
    if isinstance(resolved, Response):
        return resolved
    # Relying parties cache keys (Entra guidance: up to 24 h); keep HTTP caches short so a new
    # pending key is seen soon after rotation.
    return JSONResponse(
        provider_of(request).jwks(), headers={"Cache-Control": "public, max-age=300"}
    )


# -- token and device authorization ---------------------------------------------------------


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request",
            "AADSTS900561: The endpoint only accepts POST requests with "
            "Content-Type application/x-www-form-urlencoded.",
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > _MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "The request body is too large.")
    form = await request.form()
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise OAuthError("invalid_request", f"The parameter '{name}' must be a string.")
        if name in values:
            # RFC 6749 §3.2: parameters must not be included more than once.
            raise OAuthError("invalid_request", f"The parameter '{name}' is repeated.")
        values[name] = value
    return values


async def _oauth(
    request: Request,
    tenant: str,
    *,
    v1: bool,
    handle: Callable[[IdentityProvider], Callable[[TokenRequest], dict[str, Any]]],
) -> Response:
    provider = provider_of(request)
    try:
        form = await _read_form(request)
        resolved = provider.directory.resolve_tenant(tenant)
        base = provider.base_url
        audiences = {
            f"{base}/{segment}/oauth2/v2.0/token" for segment in (tenant, resolved or tenant)
        } | {f"{base}/{segment}/oauth2/token" for segment in (tenant, resolved or tenant)}
        if resolved is not None:
            audiences.add(provider.urls(resolved))
        token_request = TokenRequest(
            tenant=tenant,
            form=form,
            authorization=request.headers.get("authorization"),
            source_address=request.client.host if request.client else None,
            assertion_audiences=tuple(sorted(audiences)),
            v1=v1,
            request_id=getattr(request.state, "request_id", None),
        )
        # Sign-ins verify scrypt hashes (~50 ms of CPU) and touch the store: off the loop.
        body = await run_in_threadpool(handle(provider), token_request)
    except PropylonError as exc:
        return oauth_error_response(request, exc)
    return JSONResponse(body, headers=_NO_STORE)


async def _token_v2(request: Request, tenant: str) -> Response:
    return await _oauth(request, tenant, v1=False, handle=lambda p: p.token_endpoint.token)


async def _token_v1(request: Request, tenant: str) -> Response:
    return await _oauth(request, tenant, v1=True, handle=lambda p: p.token_endpoint.token)


async def _devicecode_v2(request: Request, tenant: str) -> Response:
    return await _oauth(
        request, tenant, v1=False, handle=lambda p: p.token_endpoint.device_authorization
    )


async def _devicecode_v1(request: Request, tenant: str) -> Response:
    return await _oauth(
        request, tenant, v1=True, handle=lambda p: p.token_endpoint.device_authorization
    )


def _authorize(request: Request, tenant: str) -> Response:
    error = OAuthError(
        "unsupported_response_type",
        "This identity provider serves no browser redirect flows (authorization code, "
        "implicit). Sign in with the device code flow (`propylon login`) or a client "
        "credential.",
    )
    return oauth_error_response(request, error)


def _user_realm(request: Request, username: str) -> Response:
    # MSAL asks before a password grant whether the user is federated (WS-Trust); ours are
    # all cloud ("Managed") accounts.
    domain = username.rpartition("@")[2]
    return JSONResponse(
        {
            "ver": "1.0",
            "account_type": "Managed",
            "domain_name": domain,
            "cloud_instance_name": provider_of(request).base_url.split("://", 1)[-1],
            "cloud_audience_urn": "urn:federation:MicrosoftOnline",
        }
    )


# -- managed identity -----------------------------------------------------------------------


async def _msi_token(request: Request) -> Response:
    provider = provider_of(request)
    headers = request.headers
    secret = headers.get("x-identity-header") or headers.get("secret")
    params = dict(request.query_params)
    try:
        body = await run_in_threadpool(
            lambda: provider.mi_broker.token(
                secret=secret,
                params=params,
                source_address=request.client.host if request.client else None,
                forwarded="x-forwarded-for" in headers,
            )
        )
    except PropylonError as exc:
        # App Service's error shape (MSAL reads statusCode and message) beside OAuth's.
        return oauth_error_response(request, exc, statusCode=exc.status, message=exc.message)
    return JSONResponse(body, headers=_NO_STORE)
