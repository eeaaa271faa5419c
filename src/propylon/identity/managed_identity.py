"""Managed identity for deployment instances: the App Service token protocol (reference §4.3).

Scoring code runs ``ManagedIdentityCredential().get_token("https://ml.azure.com/.default")``
unchanged. MSAL (inside azure-identity) sees ``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER`` and sends

    GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=https://ml.azure.com
        [&client_id=…|&principal_id=…|&object_id=…|&mi_res_id=…]
    X-IDENTITY-HEADER: {IDENTITY_HEADER}

and needs ``access_token`` + ``expires_on`` (epoch seconds) back, with ``resource``,
``token_type`` and ``client_id`` (reference §5.2.4). The Azure ML flavour (``MSI_ENDPOINT`` +
``MSI_SECRET``, ``api-version=2017-09-01``, header ``secret``, selector ``clientid``) is served
by the same handler; azure-identity prefers the App Service variables when both are set.

Each instance gets its own header secret from :meth:`MiBroker.register` (the runtime calls it
through :func:`identity_env` when it starts an instance, and :meth:`MiBroker.unregister` when
the instance stops). Secrets live only in this process's memory — a restarted server issues
new ones to the instances it starts — and are looked up by their SHA-256 and compared in
constant time. The secret also stands in for App Service's SSRF defence: a request that
cannot read the instance's environment cannot name it. As IMDS does, requests that came
through a proxy (``X-Forwarded-For``) are refused.

A secret opens exactly the identity registered for its instance: selecting any other
identity is refused, and so is a disabled or deleted one.

Example::

    endpoint_url, secret = broker.register("blue-0", spec.identity)
    body = broker.token(secret=secret, params={"api-version": "2019-08-01",
                                               "resource": "https://ml.azure.com"})
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from propylon.errors import OAuthError
from propylon.identity.audit import SignInAudit, SignInEvent
from propylon.identity.directory import Directory, ObjectKind
from propylon.identity.oauth2 import claims_for
from propylon.identity.throttle import SignInThrottle
from propylon.identity.tokens import TokenIssuer
from propylon.runtime.base import DeploymentSpec, IdentitySpec

__all__ = [
    "APP_SERVICE_API_VERSION",
    "AZURE_ML_API_VERSION",
    "IdentityEnv",
    "MiBroker",
    "identity_env_for",
]

APP_SERVICE_API_VERSION = "2019-08-01"
AZURE_ML_API_VERSION = "2017-09-01"
_SELECTORS = ("client_id", "clientid", "principal_id", "object_id", "mi_res_id")

IdentityEnv = Callable[[DeploymentSpec, str], dict[str, str]]


@dataclass(frozen=True)
class _Registration:
    instance_id: str
    identity: IdentitySpec
    digest: bytes = field(repr=False)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


def _error(status: int, code: str, message: str) -> OAuthError:
    return OAuthError(code, message, status=status)


class MiBroker:
    """Issues managed-identity tokens to registered instances; see the module docstring."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        issuer: TokenIssuer,
        directory: Directory,
        is_known_resource: Callable[[str, str], bool],
        audit: SignInAudit | None = None,
        throttle: SignInThrottle | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.issuer = issuer
        self.directory = directory
        self.is_known_resource = is_known_resource
        self.audit = audit
        self.throttle = throttle
        self._lock = threading.Lock()
        self._by_digest: dict[bytes, _Registration] = {}
        self._by_instance: dict[str, bytes] = {}

    def register(self, instance_id: str, identity: IdentitySpec) -> tuple[str, str]:
        """A fresh header secret for ``instance_id`` (replacing any earlier one)."""
        secret = secrets.token_urlsafe(32)
        digest = _digest(secret)
        with self._lock:
            previous = self._by_instance.pop(instance_id, None)
            if previous is not None:
                self._by_digest.pop(previous, None)
            self._by_digest[digest] = _Registration(instance_id, identity, digest)
            self._by_instance[instance_id] = digest
        return self.endpoint_url, secret

    def unregister(self, instance_id: str) -> None:
        with self._lock:
            digest = self._by_instance.pop(instance_id, None)
            if digest is not None:
                self._by_digest.pop(digest, None)

    @property
    def instances(self) -> frozenset[str]:
        return frozenset(self._by_instance)

    def token(
        self,
        *,
        secret: str | None,
        params: Mapping[str, str],
        source_address: str | None = None,
        forwarded: bool = False,
    ) -> dict[str, Any]:
        """Answer one token request; raises OAuthError with the HTTP status otherwise."""
        registration: _Registration | None = None
        resource = params.get("resource") or None
        try:
            if forwarded:
                raise _error(
                    400,
                    "invalid_request",
                    "Requests through a proxy (X-Forwarded-For) are refused.",
                )
            if self.throttle is not None:
                self.throttle.check(account=None, address=source_address)
            registration = self._authenticate(secret, source_address)
            api_version = params.get("api-version")
            if api_version not in (APP_SERVICE_API_VERSION, AZURE_ML_API_VERSION):
                raise _error(
                    400,
                    "invalid_request",
                    f"api-version must be {APP_SERVICE_API_VERSION} (or {AZURE_ML_API_VERSION} "
                    "for the MSI_ENDPOINT protocol).",
                )
            if resource is None:
                raise _error(400, "invalid_request", "The 'resource' parameter is required.")
            body = self._issue(registration.identity, params, resource)
        except OAuthError as exc:
            self._audit(registration, resource, source_address, exc)
            raise
        self._audit(registration, resource, source_address, None)
        return body

    def _authenticate(self, secret: str | None, source_address: str | None) -> _Registration:
        if not secret:
            raise _error(
                401, "invalid_request", "The X-IDENTITY-HEADER (or secret) header is required."
            )
        digest = _digest(secret)
        with self._lock:
            registration = self._by_digest.get(digest)
        if registration is None or not hmac.compare_digest(registration.digest, digest):
            if self.throttle is not None:
                self.throttle.record(account=None, address=source_address, success=False)
            raise _error(401, "invalid_client", "The identity header is not valid.")
        return registration

    def _issue(
        self, identity: IdentitySpec, params: Mapping[str, str], resource: str
    ) -> dict[str, Any]:
        principal = self.directory.get(identity.principal_id, tenant_id=identity.tenant_id)
        if principal is None or principal.kind is not ObjectKind.MANAGED_IDENTITY:
            raise _error(400, "invalid_request", "The instance's managed identity was not found.")
        selected = [name for name in _SELECTORS if params.get(name)]
        if len(selected) > 1:
            raise _error(
                400,
                "invalid_request",
                "Only one of client_id, principal_id/object_id and mi_res_id may be given.",
            )
        if selected:
            wanted = params[selected[0]].strip().lower()
            own = {
                "client_id": identity.client_id,
                "clientid": identity.client_id,
                "principal_id": identity.principal_id,
                "object_id": identity.principal_id,
                "mi_res_id": principal.resource_id or "",
            }[selected[0]]
            if wanted.rstrip("/") != own.lower().rstrip("/"):
                raise _error(
                    400,
                    "invalid_request",
                    f"The identity selected by {selected[0]} is not assigned to this instance.",
                )
        if not principal.enabled:
            raise _error(400, "invalid_request", "The managed identity is disabled.")
        if not self.is_known_resource(identity.tenant_id, resource):
            raise _error(
                400,
                "invalid_scope",
                f"AADSTS500011: The resource principal named {resource[:200]} was not found.",
            )
        claims = claims_for(principal, identity.client_id, self.directory.groups_of(principal.id))
        issued = self.issuer.issue_access_token(identity.tenant_id, claims, resource)
        return {
            "access_token": issued.token,
            "expires_on": str(issued.expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }

    def _audit(
        self,
        registration: _Registration | None,
        resource: str | None,
        source_address: str | None,
        error: OAuthError | None,
    ) -> None:
        if self.audit is None:
            return
        identity = registration.identity if registration is not None else None
        self.audit.record(
            SignInEvent(
                tenant_id=identity.tenant_id if identity else None,
                grant_type="managed_identity",
                client_id=identity.client_id if identity else None,
                success=error is None,
                principal_id=identity.principal_id if identity else None,
                auth_method="instance_header",
                resource=(resource or "")[:256] or None,
                source_address=source_address,
                error=error.code if error is not None else None,
                reason=error.message if error is not None else None,
            )
        )


def identity_env_for(broker: MiBroker, *, ca_cert: str | None) -> IdentityEnv:
    """The ``identity_env`` hook for runtime backends: environment variables of one instance.

    With TLS on, instances trust the server's CA (``REQUESTS_CA_BUNDLE``, ``SSL_CERT_FILE``) so
    they can reach the identity endpoint and other endpoints. With an identity, they get the
    App Service variables (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``), the Azure ML ones
    (``MSI_ENDPOINT``/``MSI_SECRET``) and ``DEFAULT_IDENTITY_CLIENT_ID``, as on Azure ML.
    """

    def identity_env(spec: DeploymentSpec, instance_id: str) -> dict[str, str]:
        env: dict[str, str] = {}
        if ca_cert is not None:
            env["REQUESTS_CA_BUNDLE"] = ca_cert
            env["SSL_CERT_FILE"] = ca_cert
        if spec.identity is None:
            return env
        url, secret = broker.register(instance_id, spec.identity)
        env.update(
            IDENTITY_ENDPOINT=url,
            IDENTITY_HEADER=secret,
            MSI_ENDPOINT=url,
            MSI_SECRET=secret,
            DEFAULT_IDENTITY_CLIENT_ID=spec.identity.client_id,
        )
        return env

    return identity_env
