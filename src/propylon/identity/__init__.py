"""Identity: the built-in token issuer (signing keys, rotation, token minting) and token validation.

Token core (framework-free): :mod:`~propylon.identity.keys` (signing keys and rotation),
:mod:`~propylon.identity.tokens` (access tokens and aml_tokens),
:mod:`~propylon.identity.jwks` (where validators find public keys) and
:mod:`~propylon.identity.validation` (validating bearer tokens).
"""

from propylon.identity.jwks import (
    JwksSource,
    KeyLookup,
    RemoteJwks,
    StaticJwks,
    VerificationKey,
    parse_jwks,
)
from propylon.identity.keys import KeyRing, KeyRingChanges, KeyState, SigningKey, jwk_thumbprint
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
from propylon.identity.validation import (
    ClaimMapping,
    InvalidToken,
    RejectReason,
    TokenValidator,
    TrustedIssuer,
    ValidatedEndpointToken,
    ValidatedToken,
)

__all__ = [
    "ENDPOINT_TOKEN_TYPE",
    "ENDPOINT_TOKEN_USE",
    "GROUPS_OVERAGE_LIMIT",
    "ClaimMapping",
    "EndpointToken",
    "InvalidToken",
    "IssuedToken",
    "IssuerUrl",
    "JwksSource",
    "KeyLookup",
    "KeyRing",
    "KeyRingChanges",
    "KeyState",
    "PrincipalClaims",
    "PrincipalKind",
    "RejectReason",
    "RemoteJwks",
    "SigningKey",
    "StaticJwks",
    "TokenIssuer",
    "TokenValidator",
    "TrustedIssuer",
    "ValidatedEndpointToken",
    "ValidatedToken",
    "VerificationKey",
    "endpoint_audience",
    "jwk_thumbprint",
    "parse_jwks",
]
