"""``MLClient``: one workspace on a Propylon server, shaped like azure-ai-ml's.

Any object with ``get_token(*scopes)`` is a credential — every azure-identity credential, or
:func:`~propylon.client.credentials.default_credential`. Example::

    from propylon.client import MLClient, ManagedOnlineEndpoint, default_credential

    client = MLClient(default_credential(), subscription_id, "default-rg", "default-ws",
                      server="https://127.0.0.1:8080", ca_cert=".propylon/tls/ca.pem")
    client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="my-endpoint", auth_mode="aad_token")).result()
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from propylon.client.assets import AssetKind, AssetOperations
from propylon.client.cli_credential import CliCredential
from propylon.client.credentials import ca_cert_from_env
from propylon.client.http import Pipeline, TokenCredential, Transport
from propylon.client.online_deployments import OnlineDeploymentOperations
from propylon.client.online_endpoints import OnlineEndpointOperations
from propylon.client.profile import ConfigDir
from propylon.client.workspace import WorkspaceScope
from propylon.errors import Unauthenticated

__all__ = ["MLClient"]


class MLClient:
    """Operations on one workspace: ``online_endpoints``, ``online_deployments``, assets."""

    def __init__(
        self,
        credential: TokenCredential,
        subscription_id: str,
        resource_group: str,
        workspace: str,
        *,
        server: str,
        ca_cert: str | None = None,
        polling_interval: float = 1.0,
        transport: Transport | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.credential = credential
        self.workspace = WorkspaceScope(server, subscription_id, resource_group, workspace)
        self.pipeline = pipeline or Pipeline(
            credential, ca_cert=ca_cert or ca_cert_from_env(), transport=transport
        )
        self.online_endpoints = OnlineEndpointOperations(
            self.pipeline, self.workspace, polling_interval=polling_interval
        )
        self.online_deployments = OnlineDeploymentOperations(
            self.pipeline, self.workspace, self.online_endpoints, polling_interval=polling_interval
        )
        self.models = AssetOperations(self.pipeline, self.workspace, AssetKind.MODEL)
        self.code = AssetOperations(self.pipeline, self.workspace, AssetKind.CODE)
        self.environments = AssetOperations(self.pipeline, self.workspace, AssetKind.ENVIRONMENT)

    @classmethod
    def from_cli(
        cls,
        *,
        resource_group: str | None = None,
        workspace: str | None = None,
        subscription_id: str | None = None,
        config_dir: Path | str | None = None,
        transport: Transport | None = None,
        polling_interval: float = 1.0,
    ) -> MLClient:
        """The workspace the CLI would use: its sign-in, server, CA and defaults."""
        credential = CliCredential(config_dir)
        profile = credential.home.load_profile()
        if profile is None:
            raise Unauthenticated("not signed in: run `propylon login`.", code="NotSignedIn")
        defaults = ConfigDir.from_env(config_dir).defaults()
        subscription = profile.subscription
        return cls(
            credential,
            subscription_id or (subscription.id if subscription else ""),
            resource_group or defaults.get("group", ""),
            workspace or defaults.get("workspace", ""),
            server=profile.server,
            ca_cert=profile.ca_cert,
            transport=transport,
            polling_interval=polling_interval,
        )

    def close(self) -> None:
        self.pipeline.close()

    def __enter__(self) -> MLClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
