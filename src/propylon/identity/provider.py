"""The identity provider of one server process, assembled from the parts of this package.

:func:`install_identity` runs in :func:`propylon.server.app.build_context`: it loads (or on a
fresh data dir creates) the signing keys, builds the issuer, directory, validator, token
endpoint and managed-identity broker, follows the change feed, schedules hourly key
maintenance, and registers the services other parts use:

==========================  ==============================================================
``ctx.services[...]``       what
==========================  ==============================================================
``"identity"``              this :class:`IdentityProvider` (the routes use it)
``"issuer"``                :class:`~propylon.identity.tokens.TokenIssuer`
``"validator"``             :class:`~propylon.identity.validation.TokenValidator`: our issuer
                            plus the trusted external issuers, ``principal_is_active`` =
                            ``directory.is_active``
``"directory"``             :class:`~propylon.identity.directory.Directory` (``groups_of``,
                            ``is_active``)
``"mi_broker"``             :class:`~propylon.identity.managed_identity.MiBroker`
``"identity_env"``          ``identity_env(spec, instance_id) -> dict[str, str]`` for backends
==========================  ==============================================================

Example::

    provider = install_identity(ctx)
    provider.discovery(tenant_id)["token_endpoint"]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from propylon.identity.audit import SignInAudit
from propylon.identity.client_auth import ASSERTION_ALGORITHMS, ClientAuthenticator
from propylon.identity.device_flow import DeviceFlow
from propylon.identity.directory import Directory, ObjectKind
from propylon.identity.jwks import StaticJwks
from propylon.identity.keys import SIGNING_ALGORITHM, KeyRing
from propylon.identity.keystore import KeyStore, ensure_keys, follow_changes, maintain_forever
from propylon.identity.managed_identity import IdentityEnv, MiBroker, identity_env_for
from propylon.identity.oauth2 import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    TokenEndpoint,
)
from propylon.identity.refresh_tokens import RefreshTokens
from propylon.identity.scopes import OIDC_SCOPES
from propylon.identity.throttle import SignInThrottle
from propylon.identity.tokens import IssuerUrl, TokenIssuer
from propylon.identity.trust import TrustedIssuer
from propylon.identity.trusted_issuers import load_trusted_issuers
from propylon.identity.validation import TokenValidator
from propylon.store import utcnow

if TYPE_CHECKING:
    from propylon.server.context import ServerContext

__all__ = ["KNOWN_RESOURCES", "IdentityProvider", "KnownResources", "install_identity"]

#: The resources (token audiences) the built-in issuer mints tokens for, besides registered
#: applications: the Azure ML data plane and Azure Resource Manager (both spellings).
KNOWN_RESOURCES = (
    "https://ml.azure.com",
    "https://management.azure.com",
    "https://management.core.windows.net",
)
COMMON_TENANTS = ("common", "organizations")


class KnownResources:
    """May tokens be minted for a resource? Azure's APIs we serve, or an application registered
    in the tenant (by appId, ``api://{appId}`` or one of its identifier URIs)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def __call__(self, tenant_id: str, resource: str) -> bool:
        wanted = resource.rstrip("/").lower()
        if wanted in KNOWN_RESOURCES:
            return True
        if self.directory.find_client(tenant_id, wanted.removeprefix("api://")) is not None:
            return True
        for app in self.directory.list_objects(tenant_id, ObjectKind.SERVICE_PRINCIPAL):
            application = app.body.get("application")
            uris = application.get("identifierUris", []) if isinstance(application, dict) else []
            if any(str(uri).rstrip("/").lower() == wanted for uri in uris):
                return True
        return False


@dataclass
class IdentityProvider:
    """The built-in OpenID Connect provider's parts, for the HTTP routes."""

    base_url: str
    keyring: KeyRing
    keystore: KeyStore
    urls: IssuerUrl
    issuer: TokenIssuer
    directory: Directory
    validator: TokenValidator
    token_endpoint: TokenEndpoint
    device_flow: DeviceFlow
    mi_broker: MiBroker
    audit: SignInAudit
    throttle: SignInThrottle
    identity_env: IdentityEnv
    is_known_resource: KnownResources
    _maintenance: asyncio.Task[None] | None = field(default=None, repr=False)

    def discovery(self, tenant: str, *, v1: bool = False) -> dict[str, Any]:
        """The OpenID Provider Metadata (OIDC Discovery §3) of one tenant, Entra-shaped.

        ``issuer`` equals the ``iss`` of our tokens (for ``common``: Entra's ``{tenantid}``
        template). The v1 document differs in its endpoint paths only: we mint one token
        format (``ver`` 2.0) whichever endpoint asked.
        """
        base = f"{self.base_url}/{tenant}"
        issuer = self.urls.template if tenant in COMMON_TENANTS else self.urls(tenant)
        oauth = f"{base}/oauth2" if v1 else f"{base}/oauth2/v2.0"
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{oauth}/authorize",
            "token_endpoint": f"{oauth}/token",
            "device_authorization_endpoint": f"{oauth}/devicecode",
            "jwks_uri": f"{base}/discovery/keys" if v1 else f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "client_secret_basic",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "id_token_signing_alg_values_supported": [SIGNING_ALGORITHM],
            "grant_types_supported": [
                GRANT_CLIENT_CREDENTIALS,
                GRANT_PASSWORD,
                GRANT_REFRESH_TOKEN,
                GRANT_DEVICE_CODE,
            ],
            # No browser redirect flows (authorization code, implicit) are served.
            "response_types_supported": [],
            "response_modes_supported": [],
            "subject_types_supported": ["pairwise"],
            "scopes_supported": sorted(OIDC_SCOPES),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "oid",
                "tid",
                "name",
                "preferred_username",
                "upn",
                "groups",
                "idtyp",
                "appid",
                "azp",
                "scp",
                "ver",
            ],
            "tenant_region_scope": None,
            "cloud_instance_name": self.base_url.split("://", 1)[-1],
            "request_uri_parameter_supported": False,
        }

    def jwks(self) -> dict[str, Any]:
        return self.keyring.jwks(utcnow())

    async def start(self) -> None:
        self._maintenance = asyncio.create_task(
            maintain_forever(self.keystore, self.keyring), name="signing-key-maintenance"
        )

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None


def install_identity(ctx: ServerContext) -> IdentityProvider:
    """Build the identity provider for ``ctx`` and register its services (module docstring)."""
    base_url = ctx.control_url
    urls = IssuerUrl(base_url)
    keyring = KeyRing()
    keystore = KeyStore(ctx.db, ctx.sealer)
    ensure_keys(keystore, keyring)
    ctx.feed.subscribe(follow_changes(keystore, keyring))
    issuer = TokenIssuer(keyring, urls)
    directory = Directory(ctx.db, default_tenant=ctx.tenancy.tenant_id)
    ctx.feed.subscribe(directory.on_changes)

    own = TrustedIssuer(
        urls.template, StaticJwks(keyring), audiences=KNOWN_RESOURCES, endpoint_tokens=True
    )
    external = load_trusted_issuers(ctx.settings.data_dir, os.environ)
    validator = TokenValidator([own, *external], principal_is_active=directory.is_active)

    audit = SignInAudit(ctx.settings.logs_dir / "signins.jsonl")
    throttle = SignInThrottle()
    device_flow = DeviceFlow(ctx.db, verification_uri=f"{base_url}/device")
    is_known_resource = KnownResources(directory)
    token_endpoint = TokenEndpoint(
        issuer=issuer,
        directory=directory,
        clients=ClientAuthenticator(directory),
        refresh_tokens=RefreshTokens(ctx.db),
        device_flow=device_flow,
        throttle=throttle,
        audit=audit,
        is_known_resource=is_known_resource,
    )
    mi_broker = MiBroker(
        endpoint_url=f"{base_url}/msi/token",
        issuer=issuer,
        directory=directory,
        is_known_resource=is_known_resource,
        audit=audit,
        throttle=throttle,
    )
    identity_env = identity_env_for(mi_broker, ca_cert=str(ctx.tls.ca_cert) if ctx.tls else None)
    provider = IdentityProvider(
        base_url=base_url,
        keyring=keyring,
        keystore=keystore,
        urls=urls,
        issuer=issuer,
        directory=directory,
        validator=validator,
        token_endpoint=token_endpoint,
        device_flow=device_flow,
        mi_broker=mi_broker,
        audit=audit,
        throttle=throttle,
        identity_env=identity_env,
        is_known_resource=is_known_resource,
    )
    ctx.services.update(
        identity=provider,
        issuer=issuer,
        validator=validator,
        directory=directory,
        mi_broker=mi_broker,
        identity_env=identity_env,
    )
    ctx.on_startup.append(provider.start)
    ctx.on_shutdown.append(provider.stop)
    return provider
