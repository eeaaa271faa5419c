"""Client authentication at the token endpoint: RFC 6749 §2.3 and RFC 7523 §2.2/§3.

A client proves who it is with one of (``token_endpoint_auth_methods_supported``):

- ``client_secret_basic`` — HTTP Basic with the form-urlencoded client id and secret
  (RFC 6749 §2.3.1);
- ``client_secret_post`` — ``client_id`` + ``client_secret`` in the form body;
- ``private_key_jwt`` — ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:
  jwt-bearer`` + ``client_assertion``, a JWT signed with the key of a certificate registered on
  the application (RFC 7523 §3; OIDC Core §9), as MSAL's ``CertificateCredential`` sends it:
  header ``PS256`` + ``x5t#S256`` or ``RS256`` + ``x5t``; claims ``iss`` = ``sub`` = client id,
  ``aud`` = the token endpoint, ``exp``, ``jti``;
- ``none`` — public clients (the CLI) that hold no secret.

Using two methods in one request is refused (RFC 6749 §2.3). Keys come only from the
application's registered certificates, never from the assertion's ``x5c``/``jku`` headers.
``jti`` is not checked for replay: MSAL deliberately reuses one assertion for up to ten minutes
(``AutoRefresher``), and Entra accepts that; instead an assertion may live at most an hour.

Failures are ``invalid_client`` with HTTP 401 (RFC 6749 §5.2) and an Entra-style ``AADSTS``
description; a disabled application that authenticated correctly gets ``unauthorized_client``.

Example::

    presented = presented_credentials(form, headers.get("authorization"))
    client = ClientAuthenticator(directory).authenticate(tid, presented, audiences=[url])
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote_plus

import jwt

from propylon.errors import OAuthError
from propylon.identity.directory import Directory, DirectoryObject, ObjectKind

__all__ = [
    "JWT_BEARER_ASSERTION",
    "AuthenticatedClient",
    "ClientAuthMethod",
    "ClientAuthenticator",
    "PresentedCredentials",
    "invalid_client",
    "presented_credentials",
]

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: RFC 7518 RSA signature algorithms; MSAL uses PS256 (with x5t#S256) or RS256 (with x5t).
ASSERTION_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
MAX_ASSERTION_BYTES = 16 * 1024


class ClientAuthMethod(StrEnum):
    NONE = "none"
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 — a method name, not a secret
    CLIENT_SECRET_POST = "client_secret_post"  # noqa: S105 — a method name, not a secret
    PRIVATE_KEY_JWT = "private_key_jwt"


@dataclass(frozen=True)
class PresentedCredentials:
    """What a token request presents to authenticate its client (not yet checked)."""

    client_id: str | None
    method: ClientAuthMethod
    secret: str | None = field(default=None, repr=False)
    assertion: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AuthenticatedClient:
    principal: DirectoryObject
    method: ClientAuthMethod

    @property
    def client_id(self) -> str:
        return self.principal.name


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, status=401)


def presented_credentials(
    form: Mapping[str, str], authorization: str | None
) -> PresentedCredentials:
    """Read the client's credentials from the form and the Authorization header."""
    form_id = form.get("client_id") or None
    secret = form.get("client_secret") or None
    assertion = form.get("client_assertion") or None
    assertion_type = form.get("client_assertion_type") or None
    basic = _basic_credentials(authorization)
    methods = sum(x is not None for x in (basic, secret, assertion))
    if methods > 1:
        raise OAuthError(
            "invalid_request", "The request uses more than one client authentication method."
        )
    if basic is not None:
        basic_id, basic_secret = basic
        if form_id is not None and form_id != basic_id:
            raise OAuthError(
                "invalid_request", "client_id in the body differs from the Basic credentials."
            )
        return PresentedCredentials(
            basic_id, ClientAuthMethod.CLIENT_SECRET_BASIC, secret=basic_secret
        )
    if assertion is not None or assertion_type is not None:
        if assertion_type != JWT_BEARER_ASSERTION:
            raise OAuthError(
                "invalid_request",
                f"AADSTS70002: client_assertion_type must be '{JWT_BEARER_ASSERTION}'.",
            )
        if assertion is None:
            raise OAuthError(
                "invalid_request",
                "AADSTS900144: The request body must contain the parameter 'client_assertion'.",
            )
        return PresentedCredentials(form_id, ClientAuthMethod.PRIVATE_KEY_JWT, assertion=assertion)
    if secret is not None:
        return PresentedCredentials(form_id, ClientAuthMethod.CLIENT_SECRET_POST, secret=secret)
    return PresentedCredentials(form_id, ClientAuthMethod.NONE)


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("The Basic Authorization header is malformed.") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon or not client_id:
        raise invalid_client("The Basic Authorization header is malformed.")
    # RFC 6749 §2.3.1: both parts are application/x-www-form-urlencoded before encoding.
    return unquote_plus(client_id), unquote_plus(secret)


class ClientAuthenticator:
    """Checks presented client credentials against the directory."""

    def __init__(
        self,
        directory: Directory,
        *,
        leeway_s: int = 60,
        max_assertion_lifetime_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.leeway_s = leeway_s
        self.max_assertion_lifetime_s = max_assertion_lifetime_s
        self._clock = clock

    def client_id_of(self, presented: PresentedCredentials) -> str | None:
        """The client id, also when only the assertion's ``sub`` carries it (RFC 7523 §3)."""
        if presented.client_id is not None or presented.assertion is None:
            return presented.client_id
        try:
            claims = jwt.decode(presented.assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and sub else None

    def authenticate(
        self, tenant_id: str, presented: PresentedCredentials, *, audiences: Collection[str]
    ) -> AuthenticatedClient:
        """The authenticated confidential client, or ``invalid_client`` (401).

        ``audiences`` are the values an assertion's ``aud`` may take: this token endpoint's
        URLs and the tenant's issuer (RFC 7523 §3, item 3).
        """
        client_id = self.client_id_of(presented)
        if client_id is None:
            raise OAuthError(
                "invalid_request",
                "AADSTS900144: The request body must contain the parameter 'client_id'.",
            )
        if presented.method is ClientAuthMethod.NONE:
            raise invalid_client(
                "AADSTS7000218: The request body must contain the parameter 'client_assertion' "
                "or 'client_secret'."
            )
        client = self.directory.find_client(tenant_id, client_id)
        if client is not None and client.kind is not ObjectKind.SERVICE_PRINCIPAL:
            client = None  # managed identities sign in only through their instance endpoint
        if presented.method is ClientAuthMethod.PRIVATE_KEY_JWT:
            assert presented.assertion is not None
            self._check_assertion(client, client_id, presented.assertion, audiences)
        elif not self.directory.credentials.verify_client_secret(client, presented.secret or ""):
            raise invalid_client(
                f"AADSTS7000215: Invalid client secret provided for application '{client_id}'."
                if client is not None
                else f"AADSTS700016: Application with identifier '{client_id}' was not found "
                "in the directory."
            )
        assert client is not None
        if not client.enabled:
            raise OAuthError(
                "unauthorized_client", f"AADSTS7000112: Application '{client_id}' is disabled."
            )
        return AuthenticatedClient(client, presented.method)

    def _check_assertion(
        self,
        client: DirectoryObject | None,
        client_id: str,
        assertion: str,
        audiences: Collection[str],
    ) -> None:
        if len(assertion) > MAX_ASSERTION_BYTES:
            raise invalid_client("AADSTS50027: The client assertion is too large.")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise invalid_client("AADSTS50027: The client assertion is not a JWT.") from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGORITHMS:
            raise invalid_client(
                f"AADSTS5002738: The client assertion algorithm {alg!r} is not supported; "
                f"use one of {', '.join(ASSERTION_ALGORITHMS)}."
            )
        if client is None:
            raise invalid_client(
                f"AADSTS700016: Application with identifier '{client_id}' was not found."
            )
        now = self._clock()
        certificates = [
            cert
            for view, cert in self.directory.credentials.certificates_of(client.id)
            if view.end is None or view.end.timestamp() > now
        ]
        matching = [
            c
            for c in certificates
            if c.matches(x5t=header.get("x5t"), x5t_s256=header.get("x5t#S256"))
        ]
        if not matching:
            raise invalid_client(
                "AADSTS700027: The certificate used to sign the client assertion is not "
                f"registered on application '{client_id}' (match by x5t or x5t#S256)."
            )
        try:
            claims = jwt.decode(
                assertion,
                matching[0].public_key,
                algorithms=[alg],
                audience=list(audiences),
                leeway=self.leeway_s,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.InvalidAudienceError:
            raise invalid_client(
                "AADSTS700212: The client assertion's aud must be this token endpoint."
            ) from None
        except jwt.ExpiredSignatureError:
            raise invalid_client("AADSTS700024: The client assertion has expired.") from None
        except jwt.PyJWTError as exc:
            raise invalid_client(
                f"AADSTS700027: The client assertion is invalid ({exc})."
            ) from None
        # RFC 7523 §3 items 1–2: the client is both the issuer and the subject.
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise invalid_client(
                "AADSTS700021: The client assertion's iss and sub must be the client id."
            )
        if float(claims["exp"]) > now + self.max_assertion_lifetime_s + self.leeway_s:
            raise invalid_client(
                "AADSTS700024: The client assertion is valid for too long "
                f"(at most {self.max_assertion_lifetime_s} seconds)."
            )
