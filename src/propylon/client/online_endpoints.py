"""``MLClient.online_endpoints``: create, read, delete, keys and tokens, and scoring.

The wire sequence is azure-ai-ml's (reference §5.1.2): a workspace GET for ``location`` before a
PUT, ``listKeys``/``token`` POSTs with no body, ``regenerateKeys`` as a long-running operation.
``invoke`` works for every auth mode, ``aad_token`` included (which azure-ai-ml cannot do): it
asks the credential for a ``https://ml.azure.com`` token and lets RBAC decide. Example::

    client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name="my-endpoint", auth_mode="aad_token")).result()
    print(client.online_endpoints.invoke("my-endpoint", request_file="sample-request.json"))
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

from propylon.client.entities import (
    EndpointAadToken,
    EndpointAuthKeys,
    EndpointAuthToken,
    ManagedOnlineEndpoint,
)
from propylon.client.http import ARM_SCOPE, ML_SCOPE, Pipeline
from propylon.client.lro import Poller
from propylon.client.workspace import API_VERSION, WorkspaceScope, versioned
from propylon.errors import BadRequest

__all__ = ["MODEL_DEPLOYMENT_HEADER", "OnlineEndpointOperations"]

#: Routes a scoring request to one deployment, bypassing traffic weights (reference §3.3).
MODEL_DEPLOYMENT_HEADER = "azureml-model-deployment"

EndpointCredentials = EndpointAuthKeys | EndpointAuthToken | EndpointAadToken


class OnlineEndpointOperations:
    """Online endpoints of one workspace."""

    def __init__(
        self, pipeline: Pipeline, workspace: WorkspaceScope, *, polling_interval: float = 1.0
    ) -> None:
        self._pipeline = pipeline
        self._ws = workspace
        self._interval = polling_interval
        self._location: str | None = None

    def _params(self) -> dict[str, str]:
        return {"api-version": API_VERSION}

    def _url(self, name: str, *action: str) -> str:
        return self._ws.url("onlineEndpoints", name, *action)

    def workspace_location(self) -> str:
        """The workspace's ``location``, which ARM requires in every PUT (cached)."""
        if self._location is None:
            body = self._pipeline.send(
                "GET", self._ws.url(), scope=ARM_SCOPE, params=self._params()
            ).json()
            self._location = str((body or {}).get("location") or "local")
        return self._location

    def get(self, name: str) -> ManagedOnlineEndpoint:
        reply = self._pipeline.send("GET", self._url(name), scope=ARM_SCOPE, params=self._params())
        return ManagedOnlineEndpoint.from_rest(reply.json())

    def list(self) -> list[ManagedOnlineEndpoint]:
        return [
            ManagedOnlineEndpoint.from_rest(item)
            for item in self._pipeline.collect(
                self._ws.url("onlineEndpoints"), scope=ARM_SCOPE, params=self._params()
            )
        ]

    def begin_create_or_update(
        self, endpoint: ManagedOnlineEndpoint
    ) -> Poller[ManagedOnlineEndpoint]:
        """PUT the endpoint; the poller's result is the endpoint once provisioned.

        0% traffic entries are dropped by the mapping, as azure-ai-ml does (``green=0`` removes
        green from the split, and ``--mirror-traffic green=0`` ends mirroring).
        """
        body = endpoint.to_rest(location=self.workspace_location())
        url = self._url(endpoint.name)
        reply = self._pipeline.send(
            "PUT", url, scope=ARM_SCOPE, params=self._params(), json_body=body
        )
        return Poller(
            self._pipeline,
            "PUT",
            versioned(url),
            reply,
            ManagedOnlineEndpoint.from_rest,
            interval=self._interval,
        )

    def begin_delete(self, name: str) -> Poller[None]:
        url = self._url(name)
        reply = self._pipeline.send("DELETE", url, scope=ARM_SCOPE, params=self._params())
        return Poller(
            self._pipeline, "DELETE", versioned(url), reply, lambda _: None, interval=self._interval
        )

    def get_keys(self, name: str, *, credential: Any = None) -> EndpointCredentials:
        """Keys (``key``), an endpoint token (``aml_token``) or an identity token (``aad_token``).

        For ``aad_token`` the token comes from ``credential`` (default: the client's), for
        ``https://ml.azure.com``, with no call to the control plane beyond reading the endpoint.
        """
        mode = self.auth_mode(name)
        if mode == "key":
            keys = self._post(name, "listKeys")
            return EndpointAuthKeys(str(keys["primaryKey"]), str(keys["secondaryKey"]))
        if mode == "aml_token":
            token = self._post(name, "token")
            return EndpointAuthToken(
                access_token=str(token["accessToken"]),
                expiry_time_utc=int(token.get("expiryTimeUtc", 0)),
                refresh_after_time_utc=int(token.get("refreshAfterTimeUtc", 0)),
                token_type=str(token.get("tokenType") or "Bearer"),
            )
        if credential is not None:
            access = credential.get_token(ML_SCOPE)
            return EndpointAadToken(access.token, int(access.expires_on))
        return EndpointAadToken(*self._pipeline.access(ML_SCOPE))

    def auth_mode(self, name: str) -> str:
        """``key``, ``aml_token`` or ``aad_token``."""
        return self.get(name).auth_mode

    def begin_regenerate_keys(self, name: str, key_type: str = "primary") -> Poller[None]:
        """Replace one key with a fresh random one; the other keeps working meanwhile."""
        if key_type.lower() not in {"primary", "secondary"}:
            raise BadRequest(
                f"key type must be 'primary' or 'secondary', not {key_type!r}.",
                code="InvalidKeyType",
                target="key_type",
            )
        if self.auth_mode(name) != "key":
            raise BadRequest(
                f"Endpoint '{name}' does not use keys for authentication.",
                code="InvalidAuthMode",
            )
        url = self._url(name, "regenerateKeys")
        reply = self._pipeline.send(
            "POST",
            url,
            scope=ARM_SCOPE,
            params=self._params(),
            json_body={"keyType": key_type.capitalize()},
        )
        return Poller(
            self._pipeline, "POST", versioned(url), reply, lambda _: None, interval=self._interval
        )

    def invoke(
        self,
        endpoint_name: str,
        request_file: str | Path | None = None,
        deployment_name: str | None = None,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> str:
        """POST ``request_file`` (or ``body``) to the scoring URI; return the response text."""
        payload = _payload(request_file, body)
        endpoint = self.get(endpoint_name)
        if not endpoint.scoring_uri:
            raise BadRequest(
                f"endpoint {endpoint_name} has no scoring URI yet "
                f"(provisioning state {endpoint.provisioning_state or 'unknown'}).",
                code="EndpointNotReady",
            )
        mode = endpoint.auth_mode
        if mode == "key":
            secret = str(self._post(endpoint_name, "listKeys")["primaryKey"])
        elif mode == "aml_token":
            secret = str(self._post(endpoint_name, "token")["accessToken"])
        else:
            secret = self._pipeline.token(ML_SCOPE)
        request_headers = {"Content-Type": content_type, **(headers or {})}
        if deployment_name:
            request_headers[MODEL_DEPLOYMENT_HEADER] = deployment_name
        reply = self._pipeline.send(
            "POST", endpoint.scoring_uri, bearer=secret, content=payload, headers=request_headers
        )
        return reply.text

    def get_traffic_logs(
        self, name: str, lines: int | None = None
    ) -> builtins.list[dict[str, Any]]:
        """The endpoint's traffic log records (newest last), as the gateway wrote them."""
        params = self._params()
        if lines is not None:
            params["tail"] = str(lines)
        return self._pipeline.collect(
            self._url(name, "trafficLogs"), scope=ARM_SCOPE, params=params
        )

    def _post(self, name: str, action: str) -> dict[str, Any]:
        reply = self._pipeline.send(
            "POST", self._url(name, action), scope=ARM_SCOPE, params=self._params()
        )
        body: dict[str, Any] = reply.json() or {}
        return body


def _payload(request_file: str | Path | None, body: bytes | None) -> bytes:
    if body is not None:
        return body
    if request_file is None:
        raise BadRequest("give a request file (-r/--request-file).", code="MissingArgument")
    try:
        return Path(request_file).expanduser().read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"{request_file}: no such file.", code="FileNotFound") from None
    except OSError as exc:
        raise BadRequest(f"cannot read {request_file}: {exc}", code="FileNotReadable") from None
