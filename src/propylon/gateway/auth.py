"""Who may score an endpoint: the credential its ``authMode`` asks for, then RBAC for tokens.

The credential arrives as ``Authorization: Bearer <credential>`` (reference §3.2) or, for the
model-inference routes' key clients, as ``api-key: <credential>``. By the endpoint's mode:

============  ===================================================================================
``Key``       the primary or the secondary key, compared with :func:`hmac.compare_digest`; keys
              come from the routing table, so a regenerated key stops working as soon as the
              change feed delivers the new one. Identity in the traffic log: ``key``.
``AMLToken``  :meth:`AccessControl.validate_endpoint_token`: signature, expiry, and audience
              and uid bound to *this* endpoint, so a token of a deleted endpoint does not open a
              new one of the same name. Identity: the ``oid`` that requested the token.
``AADToken``  :meth:`AccessControl.authenticate` with the data-plane audience
              ``https://ml.azure.com``, then :meth:`AccessControl.allowed` for
              ``…/onlineEndpoints/score/action`` on the endpoint's scope.
              Identity: ``oid`` and ``appid``.
============  ===================================================================================

Status codes — Propylon separates the two failures that Azure folds into 401 (reference §5.6):

* **401** with ``WWW-Authenticate: Bearer realm="<endpoint>"`` (RFC 6750 §3) when the request
  does not prove who it is: no credential, a malformed ``Authorization`` header, a wrong or
  regenerated key, a key or token of another endpoint, a credential of another mode (a key on a
  token endpoint, a token on a key endpoint, an aml_token where an identity token is required), an
  expired or forged token, or key / aml_token in a workspace with ``disableLocalAuth``. The
  challenge carries ``error="invalid_token"`` when a credential was presented (§3.1).
* **403** ``AuthorizationFailed``, naming the action and the scope, when a valid identity token's
  principal lacks the score action on the endpoint.

Token verdicts (including refusals by RBAC) are cached per endpoint and token until the token
expires, at most five minutes, and dropped whole on every change-feed batch, so a deleted role
assignment or a disabled principal takes effect within a second. Keys and tokens are compared
and cached only in memory; they are never logged or put into an error message.

Example::

    auth = Authenticator(lookup=lambda: ctx.services.get("access"))
    identity = auth.check(endpoint, authorization=b"Bearer ...", api_key=None)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from propylon.errors import Forbidden, Unauthenticated
from propylon.gateway.table import AuthMode, Endpoint

if TYPE_CHECKING:  # propylon.server imports the gateway; the protocol is only a type here
    from propylon.server.access import AccessControl

__all__ = ["KEY_IDENTITY", "SCORE_ACTION", "Authenticator", "Identity"]

SCORE_ACTION: Final = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/score/action"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who called, as the traffic log records it (``AuthType``, ``IdentityData``)."""

    auth_type: AuthMode
    oid: str | None = None
    appid: str | None = None
    tid: str | None = None

    @property
    def identity_data(self) -> str:
        return "key" if self.auth_type is AuthMode.KEY else (self.oid or "")


KEY_IDENTITY: Final = Identity(AuthMode.KEY)


@dataclass(frozen=True, slots=True)
class _Verdict:
    identity: Identity
    allowed: bool
    until: float


class Authenticator:
    """Checks a request's credential against an endpoint; see the module docstring."""

    def __init__(
        self,
        access: AccessControl | None = None,
        *,
        lookup: Callable[[], AccessControl | None] | None = None,
        cache_size: int = 10_000,
        max_cache_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # ``lookup`` finds the service when it is first needed (the server wires it after us).
        self._lookup = lookup or (lambda: access)
        self._cache: dict[tuple[str, str | None, AuthMode, bytes], _Verdict] = {}
        self._cache_size = cache_size
        self._max_cache_s = max_cache_s
        self._clock = clock

    def forget(self) -> None:
        """Drop every cached verdict (the change feed calls this on each batch)."""
        self._cache = {}

    def check(
        self,
        endpoint: Endpoint,
        authorization: bytes | None,
        api_key: bytes | None,
        *,
        mode: AuthMode | None = None,
    ) -> Identity:
        """The caller's identity, or Unauthenticated (401) / Forbidden (403)."""
        mode = mode or endpoint.auth_mode
        bearer = _bearer(endpoint, authorization) if authorization is not None else None
        if bearer is None and not api_key:
            raise _challenge(endpoint, "The request carries no credential.", presented=False)
        if mode is not AuthMode.AAD_TOKEN and endpoint.local_auth_disabled:
            raise _challenge(
                endpoint,
                "Key and aml_token authentication are disabled in this workspace "
                "(disableLocalAuth); use a Microsoft Entra (aad_token) token.",
            )
        if mode is AuthMode.KEY:
            if _matches_a_key(endpoint.keys, bearer) or _matches_a_key(endpoint.keys, api_key):
                return KEY_IDENTITY
            raise _challenge(endpoint, "The key is not valid for this endpoint.", code=_KEY_CODE)
        token = bearer or api_key
        assert token is not None  # one of them is set, checked above
        cache_key = (endpoint.id, endpoint.uid, mode, token)
        verdict = self._cache.get(cache_key)
        if verdict is None or verdict.until <= self._clock():
            verdict = self._verify(endpoint, mode, token)
            if len(self._cache) >= self._cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[cache_key] = verdict
        if not verdict.allowed:
            raise Forbidden(
                f"The principal '{verdict.identity.oid}' lacks the action '{SCORE_ACTION}' "
                f"on the scope '{endpoint.arm_id}'.",
                code="AuthorizationFailed",
            )
        return verdict.identity

    def _verify(self, endpoint: Endpoint, mode: AuthMode, token: bytes) -> _Verdict:
        from propylon.server.access import DATA_PLANE_AUDIENCES  # see TYPE_CHECKING above

        access = self._lookup()
        if access is None:
            raise _challenge(endpoint, "Token authentication is not configured on this server.")
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise _challenge(endpoint, "The token is not valid.") from None
        try:
            if mode is AuthMode.AML_TOKEN:
                access.validate_endpoint_token(text, endpoint.arm_id, endpoint_uid=endpoint.uid)
                claims = _claims_of(text)
                identity = Identity(mode, oid=_str(claims.get("oid")), tid=_str(claims.get("tid")))
                allowed = True
            else:
                caller = access.authenticate(text, audiences=DATA_PLANE_AUDIENCES)
                claims = caller.claims
                identity = Identity(mode, oid=caller.oid, appid=caller.appid, tid=caller.tid)
                allowed = access.allowed(caller, SCORE_ACTION, endpoint.arm_id)
        except Unauthenticated as exc:
            raise _challenge(endpoint, exc.message) from None
        now = self._clock()
        expires = claims.get("exp")
        until = now + self._max_cache_s
        if isinstance(expires, int | float):
            until = min(until, float(expires))
        return _Verdict(identity, allowed, until)


_KEY_CODE: Final = "key_auth_access_denied"  # the code Azure's gateway answers (reference §5.2)


def _bearer(endpoint: Endpoint, authorization: bytes) -> bytes:
    scheme, _, credential = authorization.partition(b" ")
    credential = credential.strip()
    if scheme.lower() != b"bearer" or not credential:
        raise _challenge(endpoint, "The Authorization header must be 'Bearer <credential>'.")
    return credential


def _matches_a_key(keys: tuple[bytes, ...], presented: bytes | None) -> bool:
    if not presented:
        return False
    matched = False
    for key in keys:  # every key is compared, so timing does not tell which one matched
        matched |= hmac.compare_digest(presented, key)
    return matched


def _challenge(
    endpoint: Endpoint, message: str, *, presented: bool = True, code: str | None = None
) -> Unauthenticated:
    realm = f'Bearer realm="{endpoint.name}"'
    challenge = f'{realm}, error="invalid_token"' if presented else realm
    return Unauthenticated(message, challenge=challenge, code=code or "AuthenticationFailed")


def _claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT that has *already been validated* (for the traffic log only)."""
    try:
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
