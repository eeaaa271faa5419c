"""Identity: the built-in OpenID Connect provider, its directory, and token validation.

Token core (framework-free): :mod:`~propylon.identity.keys` (signing keys and rotation),
:mod:`~propylon.identity.tokens` (access, ID and aml_tokens),
:mod:`~propylon.identity.jwks` (where validators find public keys),
:mod:`~propylon.identity.trust` (trusted issuers, accepted tokens, reasons for refusal) and
:mod:`~propylon.identity.validation` (validating bearer tokens).

Provider (framework-free, store-backed): :mod:`~propylon.identity.keystore` (keys at rest),
:mod:`~propylon.identity.directory` (users, groups, applications, managed identities),
:mod:`~propylon.identity.oauth2` (the token endpoint, RFC 6749) with
:mod:`~propylon.identity.client_auth` (RFC 6749 §2.3, RFC 7523),
:mod:`~propylon.identity.scopes`, :mod:`~propylon.identity.refresh_tokens`,
:mod:`~propylon.identity.device_flow` (RFC 8628), :mod:`~propylon.identity.throttle`,
:mod:`~propylon.identity.audit`, :mod:`~propylon.identity.managed_identity` (instances'
token endpoint), :mod:`~propylon.identity.trusted_issuers` (configuration) and
:mod:`~propylon.identity.provider` (assembly into a server).

HTTP adapters (FastAPI, imported by the server only): :mod:`~propylon.identity.routes`,
:mod:`~propylon.identity.graph`, :mod:`~propylon.identity.device_page`.
"""

from propylon.identity.audit import SignInAudit, SignInEvent
from propylon.identity.client_auth import ClientAuthenticator, ClientAuthMethod
from propylon.identity.device_flow import DeviceFlow
from propylon.identity.directory import Directory, DirectoryObject, ObjectKind
from propylon.identity.jwks import (
    JwksSource,
    KeyLookup,
    RemoteJwks,
    StaticJwks,
    VerificationKey,
    parse_jwks,
)
from propylon.identity.keys import KeyRing, KeyRingChanges, KeyState, SigningKey, jwk_thumbprint
from propylon.identity.keystore import KeyStore
from propylon.identity.managed_identity import IdentityEnv, MiBroker, identity_env_for
from propylon.identity.oauth2 import TokenEndpoint, TokenRequest
from propylon.identity.provider import IdentityProvider, KnownResources, install_identity
from propylon.identity.refresh_tokens import RefreshTokens
from propylon.identity.scopes import ScopeRequest, parse_scope
from propylon.identity.throttle import SignInLimit, SignInThrottle
from propylon.identity.tokens import (
    ENDPOINT_TOKEN_TYPE,
    ENDPOINT_TOKEN_USE,
    GROUPS_OVERAGE_LIMIT,
    EndpointToken,
    IssuedToken,
    IssuerUrl,
    PrincipalClaims,
    PrincipalKind,
    TokenIssuer,
    endpoint_audience,
)
from propylon.identity.trust import (
    ClaimMapping,
    InvalidToken,
    RejectReason,
    TrustedIssuer,
    ValidatedEndpointToken,
    ValidatedToken,
)
from propylon.identity.trusted_issuers import load_trusted_issuers
from propylon.identity.validation import TokenValidator

__all__ = [
    "ENDPOINT_TOKEN_TYPE",
    "ENDPOINT_TOKEN_USE",
    "GROUPS_OVERAGE_LIMIT",
    "ClaimMapping",
    "ClientAuthMethod",
    "ClientAuthenticator",
    "DeviceFlow",
    "Directory",
    "DirectoryObject",
    "EndpointToken",
    "IdentityEnv",
    "IdentityProvider",
    "InvalidToken",
    "IssuedToken",
    "IssuerUrl",
    "JwksSource",
    "KeyLookup",
    "KeyRing",
    "KeyRingChanges",
    "KeyState",
    "KeyStore",
    "KnownResources",
    "MiBroker",
    "ObjectKind",
    "PrincipalClaims",
    "PrincipalKind",
    "RefreshTokens",
    "RejectReason",
    "RemoteJwks",
    "ScopeRequest",
    "SignInAudit",
    "SignInEvent",
    "SignInLimit",
    "SignInThrottle",
    "SigningKey",
    "StaticJwks",
    "TokenEndpoint",
    "TokenIssuer",
    "TokenRequest",
    "TokenValidator",
    "TrustedIssuer",
    "ValidatedEndpointToken",
    "ValidatedToken",
    "VerificationKey",
    "endpoint_audience",
    "identity_env_for",
    "install_identity",
    "jwk_thumbprint",
    "load_trusted_issuers",
    "parse_jwks",
    "parse_scope",
]
