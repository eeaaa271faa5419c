"""The token endpoint (RFC 6749 §3.2, §5) and the device authorization endpoint (RFC 8628 §3.1).

Framework-free: the HTTP adapter (:mod:`propylon.identity.routes`) hands in a
:class:`TokenRequest` (the form, the ``Authorization`` header, the caller's address) and renders
the returned body, or the raised :class:`~propylon.errors.OAuthError`, as JSON.

Grants:

- ``client_credentials`` (RFC 6749 §4.4): a confidential client authenticated by secret or
  certificate assertion (:mod:`~propylon.identity.client_auth`) gets an app-only token for
  ``{resource}/.default``;
- ``password`` (RFC 6749 §4.3, Entra's ROPC): a user's UPN and password;
- ``refresh_token`` (RFC 6749 §6): rotated on every use (:mod:`~propylon.identity.
  refresh_tokens`), for any known resource;
- ``urn:ietf:params:oauth:grant-type:device_code`` (RFC 8628 §3.4):
  :mod:`~propylon.identity.device_flow`.

User grants come from public clients (the well-known Azure CLI / PowerShell client ids, or an
application registered with ``isFallbackPublicClient``) or from confidential clients that
authenticate. Responses follow reference §5.2.1: ``token_type``, ``expires_in``,
``ext_expires_in``, ``access_token``, ``scope``; user grants add ``refresh_token`` (with
``offline_access``, or always on v1), ``id_token`` (with ``openid``) and, when MSAL sends
``client_info=1``, ``client_info`` = base64url ``{"uid": oid, "utid": tid}``: without it MSAL
files the account under the ID token's ``sub`` instead of Entra's ``{oid}.{tid}``, which breaks
``az``-style account lookups. App-only responses carry no ``client_info`` — Entra sends none
and MSAL creates no account for them. The v1 endpoint (``/oauth2/token``) also returns
``resource``, ``expires_on`` and ``not_before``, numbers as strings, as Entra v1 does.

Every attempt passes the :class:`~propylon.identity.throttle.SignInThrottle` and lands in the
:class:`~propylon.identity.audit.SignInAudit` (device-code polls that are merely waiting are
not sign-ins and are not logged).

Example::

    endpoint = TokenEndpoint(issuer=issuer, directory=directory, ...)
    body = endpoint.token(TokenRequest(tenant=tid, form={"grant_type": "client_credentials",
        "client_id": app_id, "client_secret": secret, "scope": "https://ml.azure.com/.default"}))
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from propylon.errors import OAuthError
from propylon.identity.audit import SignInAudit, SignInEvent
from propylon.identity.client_auth import (
    AuthenticatedClient,
    ClientAuthenticator,
    ClientAuthMethod,
    PresentedCredentials,
    invalid_client,
    presented_credentials,
)
from propylon.identity.device_flow import DeviceFlow
from propylon.identity.directory import Directory, DirectoryObject, ObjectKind
from propylon.identity.refresh_tokens import RefreshTokens
from propylon.identity.scopes import ScopeRequest, parse_scope
from propylon.identity.throttle import SignInThrottle
from propylon.identity.tokens import IssuedToken, PrincipalClaims, PrincipalKind, TokenIssuer

__all__ = [
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_DEVICE_CODE",
    "GRANT_PASSWORD",
    "GRANT_REFRESH_TOKEN",
    "WELL_KNOWN_PUBLIC_CLIENTS",
    "TokenEndpoint",
    "TokenRequest",
    "claims_for",
    "client_info",
]

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_PASSWORD = "password"  # noqa: S105 — a grant type name
GRANT_REFRESH_TOKEN = "refresh_token"  # noqa: S105 — a grant type name
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"

#: First-party public clients every Entra tenant knows (well-known ids, not secrets):
#: Azure CLI, Azure PowerShell, Visual Studio Code.
WELL_KNOWN_PUBLIC_CLIENTS = frozenset(
    {
        "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        "1950a258-227b-4e31-a9cf-717495945fc2",
        "aebc6443-996d-45c2-90f0-388ff96faa56",
    }
)

ResourceCheck = Callable[[str, str], bool]


@dataclass(frozen=True)
class TokenRequest:
    """A token or device-authorization request as the HTTP adapter read it.

    ``assertion_audiences``: what a client assertion's ``aud`` may be (this endpoint's URLs
    and the tenant's issuer). ``v1``: the request came to ``/oauth2/token``.
    """

    tenant: str
    form: Mapping[str, str] = field(repr=False)
    authorization: str | None = field(default=None, repr=False)
    source_address: str | None = None
    assertion_audiences: tuple[str, ...] = ()
    v1: bool = False
    request_id: str | None = None


@dataclass
class _Attempt:
    """What the audit log learns about one request as it is handled."""

    grant_type: str
    tenant_id: str | None = None
    client_id: str | None = None
    principal_id: str | None = None
    username: str | None = None
    auth_method: str | None = None
    resource: str | None = None


def client_info(oid: str, tenant_id: str) -> str:
    """Entra's ``client_info``: base64url JSON naming the account for MSAL's cache."""
    raw = json.dumps({"uid": oid, "utid": tenant_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def claims_for(
    principal: DirectoryObject, client_id: str | None, groups: frozenset[str]
) -> PrincipalClaims:
    """What a token says about a directory object signed in through ``client_id``."""
    kind = {
        ObjectKind.USER: PrincipalKind.USER,
        ObjectKind.SERVICE_PRINCIPAL: PrincipalKind.APP,
        ObjectKind.MANAGED_IDENTITY: PrincipalKind.MANAGED_IDENTITY,
    }.get(principal.kind)
    if kind is None:
        raise ValueError(f"A {principal.kind} cannot sign in.")
    return PrincipalClaims(
        oid=principal.id,
        kind=kind,
        app_id=client_id,
        display_name=principal.display_name,
        upn=principal.upn,
        group_ids=tuple(sorted(groups)),
        mi_resource_id=principal.resource_id,
    )


def _invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise _invalid_request(
            f"AADSTS900144: The request body must contain the parameter '{name}'."
        )
    return value


class TokenEndpoint:
    """Handles token and device-authorization requests; see the module docstring."""

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        directory: Directory,
        clients: ClientAuthenticator,
        refresh_tokens: RefreshTokens,
        device_flow: DeviceFlow,
        throttle: SignInThrottle,
        audit: SignInAudit,
        is_known_resource: ResourceCheck,
        public_clients: frozenset[str] = WELL_KNOWN_PUBLIC_CLIENTS,
    ) -> None:
        self.issuer = issuer
        self.directory = directory
        self.clients = clients
        self.refresh_tokens = refresh_tokens
        self.device_flow = device_flow
        self.throttle = throttle
        self.audit = audit
        self.is_known_resource = is_known_resource
        self.public_clients = public_clients
        self._grants: dict[str, Callable[[str, TokenRequest, _Attempt], dict[str, Any]]] = {
            GRANT_CLIENT_CREDENTIALS: self._client_credentials,
            GRANT_PASSWORD: self._password,
            GRANT_REFRESH_TOKEN: self._refresh_token,
            GRANT_DEVICE_CODE: self._device_code,
        }

    # -- the two endpoints ----------------------------------------------------------------

    def token(self, request: TokenRequest) -> dict[str, Any]:
        """The RFC 6749 §5.1 response body; raises OAuthError (§5.2) otherwise."""
        grant_type = request.form.get("grant_type", "")
        attempt = _Attempt(grant_type=grant_type)
        try:
            if not grant_type:
                raise _invalid_request(
                    "AADSTS900144: The request body must contain the parameter 'grant_type'."
                )
            grant = self._grants.get(grant_type)
            if grant is None:
                raise OAuthError(
                    "unsupported_grant_type",
                    f"AADSTS70003: The grant type '{grant_type[:100]}' is not supported.",
                )
            attempt.tenant_id = self.tenant_id(request.tenant)
            body = grant(attempt.tenant_id, request, attempt)
        except OAuthError as exc:
            if exc.code not in ("authorization_pending", "slow_down") or exc.status == 429:
                self._audit(request, attempt, exc)
            raise
        self._audit(request, attempt, None)
        return body

    def device_authorization(self, request: TokenRequest) -> dict[str, Any]:
        """RFC 8628 §3.1–3.2: start a device-code sign-in."""
        tenant_id = self.tenant_id(request.tenant)
        presented = presented_credentials(request.form, request.authorization)
        attempt = _Attempt(grant_type="device_authorization", tenant_id=tenant_id)
        client_id = self._client(tenant_id, presented, request, attempt)
        scope = parse_scope(request.form.get("scope"), request.form.get("resource"))
        self._audience(tenant_id, scope)
        return self.device_flow.start(tenant_id, client_id, scope.text)

    def tenant_id(self, segment: str) -> str:
        tenant_id = self.directory.resolve_tenant(segment)
        if tenant_id is None:
            raise _invalid_request(
                f"AADSTS90002: Tenant '{segment[:64]}' not found. Check the tenant id in the "
                "authority URL."
            )
        return tenant_id

    # -- grants ---------------------------------------------------------------------------

    def _client_credentials(
        self, tenant_id: str, request: TokenRequest, attempt: _Attempt
    ) -> dict[str, Any]:
        presented = presented_credentials(request.form, request.authorization)
        scope = parse_scope(request.form.get("scope"), request.form.get("resource"))
        attempt.resource = scope.resource
        client = self._confidential(tenant_id, presented, request, attempt)
        attempt.principal_id = client.principal.id
        if scope.resource is None or not scope.is_default:
            raise OAuthError(
                "invalid_scope",
                "AADSTS1002012: Client credential flows must have a scope value with /.default "
                "suffixed to the resource identifier (application ID URI).",
            )
        audience = self._audience(tenant_id, scope)
        principal = claims_for(
            client.principal, client.client_id, self.directory.groups_of(client.principal.id)
        )
        issued = self.issuer.issue_access_token(tenant_id, principal, audience)
        return self._body(issued, scope, audience, user=False, v1=request.v1)

    def _password(self, tenant_id: str, request: TokenRequest, attempt: _Attempt) -> dict[str, Any]:
        presented = presented_credentials(request.form, request.authorization)
        client_id = self._client(tenant_id, presented, request, attempt)
        username = _required(request.form, "username")
        password = _required(request.form, "password")
        attempt.username = username[:256]
        scope = parse_scope(request.form.get("scope"), request.form.get("resource"))
        attempt.resource = scope.resource
        account = f"user:{username.lower()}"
        self.throttle.check(account=account, address=request.source_address)
        user = self.directory.find_user(tenant_id, username)
        valid = self.directory.credentials.verify_password(user, password)
        self.throttle.record(account=account, address=request.source_address, success=valid)
        if user is None or not valid:
            raise OAuthError(
                "invalid_grant",
                "AADSTS50126: Error validating credentials due to invalid username or password.",
            )
        attempt.principal_id = user.id
        self._check_user(user)
        return self._user_tokens(tenant_id, user, client_id, scope, request)

    def _refresh_token(
        self, tenant_id: str, request: TokenRequest, attempt: _Attempt
    ) -> dict[str, Any]:
        presented = presented_credentials(request.form, request.authorization)
        client_id = self._client(tenant_id, presented, request, attempt)
        token = _required(request.form, "refresh_token")
        try:
            grant = self.refresh_tokens.redeem(token, client_id=client_id, tenant_id=tenant_id)
        except OAuthError:
            self.throttle.record(account=None, address=request.source_address, success=False)
            raise
        attempt.principal_id = grant.principal_id
        user = self._signed_in_user(tenant_id, grant.principal_id)
        scope = parse_scope(request.form.get("scope"), request.form.get("resource"))
        scope = scope.with_resource_of(parse_scope(grant.scope))
        attempt.resource = scope.resource
        self._audience(tenant_id, scope)
        successor = self.refresh_tokens.rotate(grant, scope=scope.text)
        return self._user_tokens(
            tenant_id, user, client_id, scope, request, refresh_token=successor
        )

    def _device_code(
        self, tenant_id: str, request: TokenRequest, attempt: _Attempt
    ) -> dict[str, Any]:
        presented = presented_credentials(request.form, request.authorization)
        client_id = self._client(tenant_id, presented, request, attempt)
        device_code = request.form.get("device_code") or _required(request.form, "code")
        try:
            grant = self.device_flow.redeem(device_code, client_id=client_id, tenant_id=tenant_id)
        except OAuthError as exc:
            if exc.code == "invalid_grant":
                self.throttle.record(account=None, address=request.source_address, success=False)
            raise
        attempt.principal_id = grant.principal_id
        user = self._signed_in_user(tenant_id, grant.principal_id)
        scope = parse_scope(grant.scope)
        attempt.resource = scope.resource
        return self._user_tokens(tenant_id, user, client_id, scope, request)

    # -- clients --------------------------------------------------------------------------

    def _client(
        self,
        tenant_id: str,
        presented: PresentedCredentials,
        request: TokenRequest,
        attempt: _Attempt,
    ) -> str:
        """The client of a user grant: a public client, or a confidential one that
        authenticates."""
        client_id = self.clients.client_id_of(presented)
        attempt.client_id = client_id
        attempt.auth_method = presented.method.value
        if client_id is None:
            raise _invalid_request(
                "AADSTS900144: The request body must contain the parameter 'client_id'."
            )
        if presented.method is not ClientAuthMethod.NONE:
            return self._confidential(tenant_id, presented, request, attempt).client_id
        if not self._is_public(tenant_id, client_id):
            raise invalid_client(
                "AADSTS7000218: The request body must contain the parameter 'client_assertion' "
                "or 'client_secret' (the client is not a public client)."
            )
        return client_id

    def _confidential(
        self,
        tenant_id: str,
        presented: PresentedCredentials,
        request: TokenRequest,
        attempt: _Attempt,
    ) -> AuthenticatedClient:
        client_id = self.clients.client_id_of(presented)
        attempt.client_id = client_id
        attempt.auth_method = presented.method.value
        address = request.source_address
        self.throttle.check(account=client_id, address=address)
        try:
            client = self.clients.authenticate(
                tenant_id, presented, audiences=request.assertion_audiences
            )
        except OAuthError as exc:
            if exc.code == "invalid_client":
                self.throttle.record(account=client_id, address=address, success=False)
            raise
        self.throttle.record(account=client_id, address=address, success=True)
        return client

    def _is_public(self, tenant_id: str, client_id: str) -> bool:
        if client_id.lower() in self.public_clients:
            return True
        app = self.directory.find_client(tenant_id, client_id)
        return app is not None and app.enabled and app.public_client

    # -- users and tokens -----------------------------------------------------------------

    def _signed_in_user(self, tenant_id: str, oid: str) -> DirectoryObject:
        user = self.directory.get(oid, tenant_id=tenant_id)
        if user is None or user.kind is not ObjectKind.USER:
            raise OAuthError(
                "invalid_grant", "AADSTS50034: The user account does not exist in the directory."
            )
        self._check_user(user)
        return user

    @staticmethod
    def _check_user(user: DirectoryObject) -> None:
        if not user.enabled:
            raise OAuthError("invalid_grant", "AADSTS50057: The user account is disabled.")

    def _audience(self, tenant_id: str, scope: ScopeRequest) -> str:
        if scope.resource is None:
            raise OAuthError(
                "invalid_scope",
                "AADSTS70011: The request must name a resource, e.g. scope="
                "'https://ml.azure.com/.default' (or resource= on the v1 endpoint).",
            )
        if not self.is_known_resource(tenant_id, scope.resource):
            raise OAuthError(
                "invalid_scope",
                f"AADSTS500011: The resource principal named {scope.resource[:200]} was not "
                "found in the tenant.",
            )
        return scope.resource

    def _user_tokens(
        self,
        tenant_id: str,
        user: DirectoryObject,
        client_id: str,
        scope: ScopeRequest,
        request: TokenRequest,
        *,
        refresh_token: str | None = None,
    ) -> dict[str, Any]:
        audience = self._audience(tenant_id, scope)
        principal = claims_for(user, client_id, self.directory.groups_of(user.id))
        issued = self.issuer.issue_access_token(
            tenant_id, principal, audience, scopes=scope.delegated_permissions()
        )
        body = self._body(issued, scope, audience, user=True, v1=request.v1)
        if refresh_token is None and (scope.offline_access or request.v1):
            refresh_token = self.refresh_tokens.issue(user.id, tenant_id, client_id, scope.text)
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        if scope.openid:
            body["id_token"] = self.issuer.issue_id_token(
                tenant_id, principal, client_id, nonce=request.form.get("nonce") or None
            )
        if request.form.get("client_info") == "1":
            body["client_info"] = client_info(user.id, tenant_id)
        return body

    @staticmethod
    def _body(
        issued: IssuedToken, scope: ScopeRequest, audience: str, *, user: bool, v1: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": scope.granted(user=user),
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.expires_in,
            "access_token": issued.token,
        }
        if v1:
            body.update(
                expires_in=str(issued.expires_in),
                ext_expires_in=str(issued.expires_in),
                expires_on=str(issued.expires_on),
                not_before=str(issued.claims["nbf"]),
                resource=audience,
            )
        return body

    def _audit(self, request: TokenRequest, attempt: _Attempt, error: OAuthError | None) -> None:
        self.audit.record(
            SignInEvent(
                tenant_id=attempt.tenant_id,
                grant_type=attempt.grant_type[:100],
                client_id=(attempt.client_id or "")[:256] or None,
                success=error is None,
                principal_id=attempt.principal_id,
                username=attempt.username,
                auth_method=attempt.auth_method,
                resource=(attempt.resource or "")[:256] or None,
                source_address=request.source_address,
                error=error.code if error is not None else None,
                reason=error.message if error is not None else None,
                request_id=request.request_id,
            )
        )
