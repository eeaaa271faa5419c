"""A default credential chain for Propylon, built from azure-identity's own credentials.

:func:`default_credential` is what ``DefaultAzureCredential`` would be if it knew where the
identity provider lives: it tries, in order,

1. ``EnvironmentCredential`` (``AZURE_TENANT_ID`` + ``AZURE_CLIENT_ID`` + ``AZURE_CLIENT_SECRET``
   or a certificate) against Propylon's authority, with instance discovery off (reference
   §5.2.1–5.2.2);
2. :class:`~propylon.client.cli_credential.CliCredential`, the account of ``propylon login``;
3. ``ManagedIdentityCredential`` — inside a deployment, ``IDENTITY_ENDPOINT`` and
   ``IDENTITY_HEADER`` point it at the server (reference §5.2.4).

The authority is ``authority``, else ``AZURE_AUTHORITY_HOST``, else the one the CLI signed in
to; the CA is ``ca_cert``, else ``PROPYLON_CA_CERT``/``REQUESTS_CA_BUNDLE``, else the CLI's.
Example::

    credential = default_credential()
    client = MLClient(credential, sub, "default-rg", "default-ws", server=server)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from azure.identity import ChainedTokenCredential, EnvironmentCredential, ManagedIdentityCredential

from propylon.client.cli_credential import CliCredential
from propylon.client.profile import ConfigDir

__all__ = ["ca_cert_from_env", "default_credential"]


def ca_cert_from_env() -> str | None:
    """The CA bundle named by ``PROPYLON_CA_CERT``, else ``REQUESTS_CA_BUNDLE``."""
    return os.environ.get("PROPYLON_CA_CERT") or os.environ.get("REQUESTS_CA_BUNDLE") or None


def default_credential(
    *,
    authority: str | None = None,
    ca_cert: str | None = None,
    config_dir: Path | str | None = None,
    managed_identity_client_id: str | None = None,
    exclude_environment_credential: bool = False,
    exclude_cli_credential: bool = False,
    exclude_managed_identity_credential: bool = False,
) -> ChainedTokenCredential:
    """Environment variables, then the CLI's sign-in, then the managed identity."""
    profile = ConfigDir.from_env(config_dir).load_profile()
    authority = (
        authority
        or os.environ.get("AZURE_AUTHORITY_HOST")
        or (profile.authority if profile else None)
    )
    ca_cert = ca_cert or ca_cert_from_env() or (profile.ca_cert if profile else None)
    transport_options: dict[str, Any] = {"connection_verify": ca_cert} if ca_cert else {}
    chain: list[Any] = []
    if not exclude_environment_credential:
        options: dict[str, Any] = {"disable_instance_discovery": True, **transport_options}
        if authority:
            options["authority"] = authority
        chain.append(EnvironmentCredential(**options))
    if not exclude_cli_credential:
        chain.append(CliCredential(config_dir))
    if not exclude_managed_identity_credential:
        chain.append(
            ManagedIdentityCredential(
                client_id=managed_identity_client_id or os.environ.get("AZURE_CLIENT_ID"),
                **transport_options,
            )
        )
    if not chain:
        raise ValueError("default_credential: every credential was excluded")
    return ChainedTokenCredential(*chain)
