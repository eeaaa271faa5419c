"""The account signed in with ``propylon login``, as an azure-core ``TokenCredential``.

The counterpart of azure-identity's ``AzureCliCredential``, reading the CLI's cache directly
instead of running a subprocess: users get tokens redeemed with their cached refresh token,
service principals new client-credentials tokens with their stored secret, and ``--identity``
sign-ins the managed identity of the deployment they run in. When nobody is signed in it raises
``CredentialUnavailableError``, so a ``ChainedTokenCredential`` moves on. Example::

    credential = CliCredential()
    token = credential.get_token("https://ml.azure.com/.default").token
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azure.core.credentials import AccessToken
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

from propylon.client.profile import ConfigDir, Profile
from propylon.client.sign_in import SignIn, TokenResult
from propylon.errors import PropylonError, Unauthenticated

__all__ = ["CliCredential", "managed_identity_token"]


def managed_identity_token(
    scope: str, client_id: str | None = None, credential: ManagedIdentityCredential | None = None
) -> TokenResult:
    """A token of this deployment's managed identity (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``,
    or any other protocol azure-identity knows), with its failures as one propylon error."""
    managed = credential or ManagedIdentityCredential(client_id=client_id)
    try:
        access = managed.get_token(scope)
    except Exception as exc:  # azure-identity raises several kinds; keep the first line
        first = (str(exc).strip().splitlines() or ["no managed identity here"])[0]
        raise PropylonError(
            f"managed identity sign-in failed: {first}", code="ManagedIdentityUnavailable"
        ) from None
    return TokenResult(access.token, int(access.expires_on))


class CliCredential:
    """Tokens for the account of ``propylon login`` (``$PROPYLON_CONFIG_DIR``)."""

    def __init__(self, config_dir: Path | str | None = None) -> None:
        self.home = ConfigDir.from_env(config_dir)
        self._managed: ManagedIdentityCredential | None = None

    def profile(self) -> Profile:
        profile = self.home.load_profile()
        if profile is None:
            raise CredentialUnavailableError(
                message="not signed in: run `propylon login` (or set AZURE_CLIENT_ID, "
                "AZURE_CLIENT_SECRET and AZURE_TENANT_ID)."
            )
        return profile

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        if not scopes:
            raise ValueError("get_token needs at least one scope")
        result = self.token_result(*scopes)
        return AccessToken(result.access_token, result.expires_on)

    def token_result(self, *scopes: str) -> TokenResult:
        """Like :meth:`get_token`, keeping what the identity provider said about the account."""
        profile = self.profile()
        account = profile.account
        if account.type == "managedIdentity":
            if self._managed is None:
                self._managed = ManagedIdentityCredential(client_id=account.client_id)
            return managed_identity_token(scopes[0], credential=self._managed)
        sign_in = SignIn(
            self.home,
            profile.authority,
            profile.tenant_id,
            ca_cert=profile.ca_cert,
            client_id=profile.client_id,
        )
        if account.type == "servicePrincipal":
            secret = self.home.load_secret(account.name, profile.tenant_id)
            if secret is None:
                raise Unauthenticated(
                    f"no stored secret for service principal {account.name}; run "
                    "`propylon login --service-principal` again.",
                    code="NotSignedIn",
                )
            return sign_in.client_secret(account.name, secret, list(scopes))
        return sign_in.user_token(account.name, list(scopes))
