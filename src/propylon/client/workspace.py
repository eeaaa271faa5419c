"""Where a workspace's resources live: ARM ids and the control-plane URLs built from them.

Example::

    >>> ws = WorkspaceScope("https://127.0.0.1:8080", "sub", "rg", "ws")
    >>> ws.url("onlineEndpoints", "my-endpoint")
    'https://127.0.0.1:8080/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws/onlineEndpoints/my-endpoint'
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from propylon.errors import BadRequest

__all__ = ["API_VERSION", "WorkspaceScope", "versioned"]

#: The api-version the client sends; the server accepts any (reference §1.2).
API_VERSION = "2024-04-01"


@dataclass(frozen=True)
class WorkspaceScope:
    """A workspace on a Propylon server."""

    server: str
    subscription_id: str
    resource_group: str
    workspace: str

    def __post_init__(self) -> None:
        for flag, value in (
            ("--subscription", self.subscription_id),
            ("--resource-group/-g", self.resource_group),
            ("--workspace-name/-w", self.workspace),
        ):
            if not value:
                raise BadRequest(
                    f"no {flag.split('/')[0].lstrip('-').replace('-', ' ')} given: pass {flag} "
                    "or set a default with `propylon configure --defaults group=… workspace=…`.",
                    code="MissingArgument",
                )

    @property
    def subscription_scope(self) -> str:
        return f"/subscriptions/{self.subscription_id}"

    @property
    def resource_group_scope(self) -> str:
        return f"{self.subscription_scope}/resourceGroups/{self.resource_group}"

    @property
    def id(self) -> str:
        return (
            f"{self.resource_group_scope}/providers/Microsoft.MachineLearningServices"
            f"/workspaces/{self.workspace}"
        )

    def resource_id(self, *segments: str) -> str:
        return "/".join((self.id, *segments))

    def url(self, *segments: str) -> str:
        """The control-plane URL of a resource under the workspace (names are URL-quoted)."""
        path = "/".join((self.id, *(quote(s, safe="") for s in segments)))
        return self.server.rstrip("/") + path

    def asset_id(self, kind: str, name: str, version: str) -> str:
        """``…/workspaces/{ws}/{models|codes|environments}/{name}/versions/{version}``."""
        return self.resource_id(kind, name, "versions", version)


def versioned(url: str) -> str:
    """``url`` with the client's ``api-version`` (for polling the resource itself)."""
    return f"{url}?api-version={API_VERSION}"
