"""Signing in to the identity provider with MSAL, as ``az login`` does; the one module using MSAL.

The identity provider is Entra-shaped (``{authority}/{tenant}/v2.0/.well-known/openid-
configuration``, ``/oauth2/v2.0/token``, ``/oauth2/v2.0/devicecode``), so MSAL talks to it
unchanged given ``instance_discovery=False`` (reference §5.2.1) and the server's CA. Tokens and
refresh tokens go to MSAL's serialisable cache, which :class:`SignIn` persists in the config
directory (mode 0600) whenever MSAL changed it.

Users sign in through a public client, by default the well-known client id of the Azure CLI
(``PROPYLON_CLIENT_ID`` overrides it). MSAL's answers and exceptions become :mod:`propylon.errors`
here. Example::

    sign_in = SignIn(home, "https://127.0.0.1:8080", tenant_id, ca_cert=".propylon/tls/ca.pem")
    result = sign_in.device_code([ARM_SCOPE], prompt=print)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msal

from propylon.client.profile import ConfigDir
from propylon.errors import PropylonError, ServiceUnavailable, Unauthenticated

__all__ = ["CLI_CLIENT_ID", "SignIn", "TokenResult", "default_client_id"]

#: The Azure CLI's public client id (a well-known value, not a secret); ``az login`` uses it.
CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
_TIMEOUT = 60.0


def default_client_id() -> str:
    return os.environ.get("PROPYLON_CLIENT_ID") or CLI_CLIENT_ID


@dataclass(frozen=True)
class TokenResult:
    """An access token from the identity provider, with the account it was issued to."""

    access_token: str
    expires_on: int
    token_type: str = "Bearer"  # noqa: S105 — a token type, not a secret
    username: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def token(self) -> str:
        """The access token (the name azure-core's ``AccessToken`` gives it)."""
        return self.access_token


@dataclass
class SignIn:
    """MSAL applications for one authority (``{server}/{tenant}``) sharing the on-disk cache."""

    home: ConfigDir
    authority: str
    tenant_id: str
    ca_cert: str | None = None
    client_id: str = field(default_factory=default_client_id)
    _cache: msal.SerializableTokenCache | None = field(default=None, init=False, repr=False)

    @property
    def authority_url(self) -> str:
        return f"{self.authority.rstrip('/')}/{self.tenant_id}"

    def cache(self) -> msal.SerializableTokenCache:
        if self._cache is None:
            cache = msal.SerializableTokenCache()
            text = self.home.load_token_cache()
            if text:
                try:
                    cache.deserialize(text)
                except ValueError:
                    cache = msal.SerializableTokenCache()  # a damaged cache only costs a sign-in
            self._cache = cache
        return self._cache

    def _persist(self) -> None:
        cache = self.cache()
        if cache.has_state_changed:
            self.home.save_token_cache(cache.serialize())
            cache.has_state_changed = False

    def _options(self) -> dict[str, Any]:
        return {
            "authority": self.authority_url,
            "token_cache": self.cache(),
            "instance_discovery": False,
            "http_client": _PinnedTrust(self.ca_cert or True, self.authority),
        }

    def _public(self) -> msal.PublicClientApplication:
        return _call(lambda: msal.PublicClientApplication(self.client_id, **self._options()))

    def _confidential(self, client_id: str, secret: str) -> msal.ConfidentialClientApplication:
        return _call(
            lambda: msal.ConfidentialClientApplication(
                client_id, client_credential=secret, **self._options()
            )
        )

    # -- interactive and non-interactive sign-in ------------------------------------------------

    def device_code(self, scopes: Sequence[str], prompt: Callable[[str], None]) -> TokenResult:
        """RFC 8628: show the verification URI and user code, then wait for the approval."""
        app = self._public()
        flow = _call(lambda: app.initiate_device_flow(scopes=list(scopes)))
        if "user_code" not in flow:
            raise _error(flow, "the identity provider did not start a device-code sign-in")
        prompt(
            flow.get("message")
            or (
                f"To sign in, use a web browser to open the page {flow['verification_uri']} "
                f"and enter the code {flow['user_code']} to authenticate."
            )
        )
        return self._finish(_call(lambda: app.acquire_token_by_device_flow(flow)))

    def username_password(self, username: str, password: str, scopes: Sequence[str]) -> TokenResult:
        app = self._public()
        return self._finish(
            _call(lambda: app.acquire_token_by_username_password(username, password, list(scopes)))
        )

    def client_secret(self, client_id: str, secret: str, scopes: Sequence[str]) -> TokenResult:
        """OAuth 2.0 client credentials (RFC 6749 §4.4) for a service principal."""
        app = self._confidential(client_id, secret)
        return self._finish(_call(lambda: app.acquire_token_for_client(list(scopes))))

    # -- later tokens ---------------------------------------------------------------------------

    def user_token(self, username: str, scopes: Sequence[str]) -> TokenResult:
        """A cached token, or one redeemed with the cached refresh token."""
        app = self._public()
        accounts = _call(lambda: app.get_accounts(username=username))
        if not accounts:
            raise Unauthenticated(
                f"no cached sign-in for {username}; run `propylon login`.", code="NotSignedIn"
            )
        result = _call(lambda: app.acquire_token_silent_with_error(list(scopes), accounts[0]))
        if not result:
            raise Unauthenticated(
                f"the sign-in of {username} has expired; run `propylon login`.",
                code="NotSignedIn",
            )
        return self._finish(result, relogin=True)

    def _finish(self, result: dict[str, Any] | None, *, relogin: bool = False) -> TokenResult:
        self._persist()
        if not result or "access_token" not in result:
            error = _error(result or {}, "the identity provider returned no token")
            if relogin:
                error.message += " Run `propylon login` again."
            raise error
        claims = result.get("id_token_claims") or {}
        expires_in = int(result.get("expires_in", 3600))
        return TokenResult(
            access_token=str(result["access_token"]),
            expires_on=int(time.time()) + expires_in,
            token_type=str(result.get("token_type", "Bearer")),
            username=claims.get("preferred_username") or claims.get("upn"),
            claims=dict(claims),
        )


class _PinnedTrust:
    """MSAL's HTTP client: trusts ``verify`` on every request, and keeps the authority's port.

    * MSAL sets ``verify`` on a ``requests.Session``, but requests lets ``REQUESTS_CA_BUNDLE`` /
      ``CURL_CA_BUNDLE`` override a session's setting (psf/requests#3829), so the server's CA
      would be ignored wherever those variables name the system bundle. Passing it with each
      request wins.
    * MSAL builds the user-realm discovery URL of the password grant from the authority's host
      name alone (``https://{host}/common/userrealm/…``), dropping a port such as ``:8080``; the
      request is sent to the authority's own host and port instead.
    """

    def __init__(self, verify: str | bool, authority: str) -> None:
        import requests  # MSAL's own HTTP stack

        self._session = requests.Session()
        self._verify = verify
        self._authority = urlsplit(authority)

    def _fix(self, url: str) -> str:
        parts = urlsplit(url)
        if self._authority.port and parts.netloc == self._authority.hostname:
            return urlunsplit(parts._replace(netloc=self._authority.netloc))
        return url

    def get(self, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", _TIMEOUT)
        return self._session.get(self._fix(url), verify=self._verify, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", _TIMEOUT)
        return self._session.post(self._fix(url), verify=self._verify, **kwargs)

    def close(self) -> None:
        self._session.close()


def _error(result: dict[str, Any], fallback: str) -> PropylonError:
    code = str(result.get("error") or "AuthenticationFailed")
    description = str(result.get("error_description") or fallback).strip()
    # Entra prefixes descriptions with "AADSTS…:" and appends trace ids on later lines.
    first = description.splitlines()[0] if description else fallback
    return Unauthenticated(first, code=code)


def _call(action: Callable[[], Any]) -> Any:
    """Run an MSAL call, turning its exceptions into :mod:`propylon.errors`."""
    try:
        return action()
    except OSError as exc:
        # requests' exceptions (which MSAL lets through) are OSErrors; no need to import it.
        if "SSL" in type(exc).__name__ or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise PropylonError(
                "cannot verify the identity provider's TLS certificate; pass the server's CA "
                "with --ca-cert (or set PROPYLON_CA_CERT).",
                code="CertificateVerifyFailed",
            ) from None
        raise ServiceUnavailable(
            f"cannot reach the identity provider ({type(exc).__name__}).",
            code="ServiceRequestError",
        ) from None
    except ValueError as exc:
        # MSAL raises ValueError when OIDC discovery fails or the authority is not https.
        text = str(exc).strip()
        message = text.splitlines()[0] if text else "invalid authority"
        raise Unauthenticated(message, code="InvalidAuthority") from None
