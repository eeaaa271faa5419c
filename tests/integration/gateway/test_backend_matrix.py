"""One gateway matrix, run against each runtime backend: ``local`` processes and Ray Serve.

For each backend a module-scoped fixture seeds endpoints and deployment rows (what the control
plane writes) into the store of an in-process gateway, then deploys the echo model through the
backend's own ``apply()``: the instance sets the gateway routes to are the ones that backend
publishes (local ``http://127.0.0.1:<port>`` processes, or Ray Serve's proxy and a route per
application), never addresses written by the test. Every test below then runs unchanged for both.

============  ===========  ===================================================================
endpoint      auth mode    deployments (traffic %; echo model switches; request timeout)
============  ===========  ===================================================================
``mx-key``    key          ``blue`` 90, ``green`` 10, ``dark`` 0 (reached by header only)
``mx-slow``   key          ``blue`` 100, ``run()`` sleeps 1 s, ``requestTimeout`` 0.3 s
``mx-fail``   key          ``blue`` 100, ``ECHO_FAIL=run`` (the inference server answers 500)
``mx-aml``    aml_token    ``blue`` 100
``mx-aad``    aad_token    ``blue`` 100; ``CALLER`` may score, ``STRANGER`` has no role
============  ===========  ===================================================================

Ray replicas ask for ``Standard_DS1_v2`` (0.125 CPU each) so that the seven fit the 2-CPU head.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from gateway_harness import ECHO, InProcessGateway

from propylon.runtime import (
    DeploymentSpec,
    DeploymentState,
    LocalBackend,
    ProbeSettings,
    RequestSettings,
    instance_set_id,
)
from propylon.runtime.ray import RayBackend
from propylon.runtime.ray_cluster import LocalRayHead
from propylon.testing import wait_until

pytestmark = pytest.mark.slow

RAY_MISSING = LocalRayHead.unavailable()
BACKENDS = [
    pytest.param("local"),
    pytest.param(
        "ray",
        marks=pytest.mark.skipif(
            RAY_MISSING is not None, reason=f"Ray half of the backend matrix: {RAY_MISSING}"
        ),
    ),
]

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CALLER = "0b5f9d87-9d1c-4f0e-8d59-7e1f3a9d2c11"
STRANGER = "6d1e0b42-3a4f-4c5e-9b8d-2f1a7c6e5d40"
# Quick probes (local instances are probed; a Ray replica's readiness deadline is derived).
PROBE = ProbeSettings(initial_delay=0.5, period=1.0, timeout=5.0, failure_threshold=60)
SPLIT = {"blue": 90, "green": 10}
# The gateway draws each request: 10 % of 400 draws has σ = 1.5 pp, so ±5 pp is 3.3 σ (a false
# failure about once in a thousand runs per backend).
SPLIT_REQUESTS = 400


@dataclass(frozen=True)
class Endpoint:
    auth_mode: str
    traffic: dict[str, int]
    keys: tuple[str, str] | None = None


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    name: str
    env: dict[str, str] = field(default_factory=dict)
    request_timeout_ms: int = 5000


ENDPOINTS = {
    "mx-key": Endpoint("Key", {**SPLIT, "dark": 0}, ("key-1", "key-2")),
    "mx-slow": Endpoint("Key", {"blue": 100}, ("slow-1", "slow-2")),
    "mx-fail": Endpoint("Key", {"blue": 100}, ("fail-1", "fail-2")),
    "mx-aml": Endpoint("AMLToken", {"blue": 100}),
    "mx-aad": Endpoint("AADToken", {"blue": 100}),
}
DEPLOYMENTS = [
    Deployment("mx-key", "blue"),
    Deployment("mx-key", "green"),
    Deployment("mx-key", "dark"),
    Deployment("mx-slow", "blue", {"ECHO_SLEEP_SECONDS": "1"}, request_timeout_ms=300),
    Deployment("mx-fail", "blue", {"ECHO_FAIL": "run"}),
    Deployment("mx-aml", "blue"),
    Deployment("mx-aad", "blue"),
]


@dataclass
class Deployed:
    """The gateway in front of one backend's deployments, and the credentials of the matrix."""

    backend_name: str
    gateway: InProcessGateway
    credentials: dict[str, str]
    instance_urls: dict[str, list[str]]  # deployment id → what the backend published

    def score(self, endpoint: str, credential: str | None = None, **headers: str) -> httpx.Response:
        """POST a small JSON body to ``/score``; ``credential`` by name or as it is sent;
        ``headers`` with ``_`` for ``-`` (``azureml_model_deployment="dark"``)."""
        if credential is not None:
            credential = self.credentials.get(credential, credential)
            headers["authorization"] = f"Bearer {credential}"
        with httpx.Client(timeout=30, trust_env=False) as client:
            return client.post(
                f"{self.gateway.url}/endpoints/{endpoint}/score",
                headers={key.replace("_", "-"): value for key, value in headers.items()},
                json={"data": [[1, 2, 3]]},
            )


def spec_of(gateway: InProcessGateway, row: Deployment) -> DeploymentSpec:
    endpoint_id = gateway.seed.endpoint_id(row.endpoint)
    return DeploymentSpec(
        deployment_id=f"{endpoint_id}/deployments/{row.name}",
        endpoint_id=endpoint_id,
        endpoint_name=row.endpoint,
        name=row.name,
        code_dir=ECHO,
        scoring_script="score.py",
        model_dir=None,
        environment_variables=dict(row.env),
        instance_type="Standard_DS1_v2",
        liveness=PROBE,
        readiness=PROBE,
        requests=RequestSettings(request_timeout_ms=row.request_timeout_ms),
    )


def seed(gateway: InProcessGateway) -> dict[str, str]:
    """Endpoints, keys and deployment rows, as the control plane writes them; credentials."""
    seeder, access = gateway.seed, gateway.access
    ids = {
        name: seeder.endpoint(name, auth_mode=e.auth_mode, traffic=e.traffic, keys=e.keys)
        for name, e in ENDPOINTS.items()
    }
    for row in DEPLOYMENTS:
        # The row only: no instance is listed until the backend publishes its own.
        seeder.deployment(
            row.endpoint, row.name, request_timeout=f"PT{row.request_timeout_ms / 1000:g}S"
        )
    access.grant_score(CALLER, ids["mx-aad"])
    return {
        "aml": access.mint_endpoint_token(ids["mx-aml"], requested_by=CALLER)["accessToken"],
        "aml-of-mx-key": access.mint_endpoint_token(ids["mx-key"])["accessToken"],
        "aad": access.identity_token(CALLER, app_id="app-of-caller"),
        "aad-stranger": access.identity_token(STRANGER),
    }


def ray_backend(
    stack: contextlib.ExitStack, gateway: InProcessGateway, data_dir: Path
) -> RayBackend:
    """A throwaway Ray head for the module, and the Ray tests' own backend factory on it."""
    # Imported as the Ray tests import it: its import-time deprecation warnings ignored.
    pytest.importorskip(
        "ray.serve", reason="Ray Serve is not installed: pip install 'propylon[ray]'"
    )
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ray"))
    from ray_support import make_backend

    head = stack.enter_context(LocalRayHead.start(num_cpus=2))
    backend: RayBackend = make_backend(head, gateway.ctx.resources, data_dir)
    return backend


@pytest.fixture(scope="module", params=BACKENDS)
def deployed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployed]:
    name: str = request.param
    root = tmp_path_factory.mktemp(f"matrix-{name}")
    with contextlib.ExitStack() as stack:
        gateway = InProcessGateway.start(root / "gateway")
        stack.callback(gateway.stop)
        credentials = seed(gateway)
        backend: LocalBackend | RayBackend
        if name == "ray":
            backend = ray_backend(stack, gateway, root / "runtime")
        else:
            backend = LocalBackend(
                root / "runtime", gateway.ctx.resources, drain_delay=0.2, stop_timeout=5.0
            )
        portal = stack.enter_context(start_blocking_portal("asyncio"))  # the backend's loop
        specs = [spec_of(gateway, row) for row in DEPLOYMENTS]
        stack.callback(portal.call, undeploy, backend, specs)
        for spec in specs:
            portal.call(backend.apply, spec)
        instance_urls = {spec.deployment_id: settle(portal, backend, spec) for spec in specs}
        result = Deployed(name, gateway, credentials, instance_urls)
        for row in DEPLOYMENTS:
            routed(result, row)
        yield result


def settle(
    portal: BlockingPortal, backend: LocalBackend | RayBackend, spec: DeploymentSpec
) -> list[str]:
    """Wait for Succeeded with every instance ready; the addresses it published to the store."""

    def done() -> bool:
        status = portal.call(backend.status, spec.deployment_id)
        assert status.state is not DeploymentState.FAILED, status.reason
        return status.state is DeploymentState.SUCCEEDED and status.ready == spec.instance_count

    wait_until(done, timeout=120, interval=0.2)
    addresses = portal.call(backend.addresses, spec.deployment_id)
    return [address.url for address in addresses]


def routed(deployed: Deployed, row: Deployment) -> None:
    """Wait until the gateway routes to the published instances (503 until it has the set)."""
    endpoint = ENDPOINTS[row.endpoint]
    credential = {"AMLToken": "aml", "AADToken": "aad"}.get(endpoint.auth_mode)
    if endpoint.keys is not None:
        credential = endpoint.keys[0]
    wait_until(
        lambda: (
            deployed.score(row.endpoint, credential, azureml_model_deployment=row.name).status_code
            != 503
        ),
        timeout=30,
        interval=0.1,
    )


async def undeploy(backend: LocalBackend | RayBackend, specs: list[DeploymentSpec]) -> None:
    await asyncio.gather(*(backend.remove(spec.deployment_id) for spec in specs))
    await backend.shutdown()


# -- the matrix --------------------------------------------------------------------------------


def test_the_gateway_routes_to_what_the_backend_published(deployed: Deployed) -> None:
    resources = deployed.gateway.ctx.resources
    for deployment_id, urls in deployed.instance_urls.items():
        row = resources.get(instance_set_id(deployment_id))
        assert row is not None
        assert [item["url"] for item in row.body["instances"]] == urls
        assert len(urls) == 1
    expected = "/mx-key_blue" if deployed.backend_name == "ray" else ""
    blue = deployed.instance_urls[deployed.gateway.seed.endpoint_id("mx-key") + "/deployments/blue"]
    assert re.fullmatch(rf"http://127\.0\.0\.1:\d+{expected}", blue[0])


def test_200_names_the_deployment_and_echoes_the_body(deployed: Deployed) -> None:
    answer = deployed.score("mx-key", "key-2", x_ms_client_request_id="client-42")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"data": [[1, 2, 3]]}
    assert answer.headers["azureml-model-deployment"] in SPLIT
    assert GUID.fullmatch(answer.headers["x-request-id"])
    assert answer.headers.get_list("x-request-id") == [answer.headers["x-request-id"]]
    assert answer.headers["x-ms-request-id"] == answer.headers["x-request-id"]
    assert answer.headers["x-ms-client-request-id"] == "client-42"


@pytest.mark.parametrize(("endpoint", "credential"), [("mx-aml", "aml"), ("mx-aad", "aad")])
def test_200_with_each_token_mode(deployed: Deployed, endpoint: str, credential: str) -> None:
    answer = deployed.score(endpoint, credential)
    assert answer.status_code == 200, answer.text
    assert answer.headers["azureml-model-deployment"] == "blue"


@pytest.mark.parametrize(
    ("endpoint", "credential"),
    [
        ("mx-key", None),
        ("mx-key", "wrong-key"),
        ("mx-key", "fail-1"),
        ("mx-key", "aad"),
        ("mx-aml", "aml-of-mx-key"),
        ("mx-aad", "key-1"),
        ("mx-aad", "aml"),
    ],
    ids=[
        "missing-header",
        "wrong-key",
        "other-endpoints-key",
        "aad-token-on-key-endpoint",
        "other-endpoints-aml-token",
        "key-on-aad-endpoint",
        "aml-token-on-aad-endpoint",
    ],
)
def test_401_with_a_challenge(deployed: Deployed, endpoint: str, credential: str | None) -> None:
    answer = deployed.score(endpoint, credential)
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="{endpoint}"')
    assert ('error="invalid_token"' in challenge) is (credential is not None)
    assert "azureml-model-deployment" not in answer.headers


def test_403_for_an_aad_token_without_the_score_action(deployed: Deployed) -> None:
    answer = deployed.score("mx-aad", "aad-stranger")
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert "onlineEndpoints/score/action" in error["message"]


@pytest.mark.parametrize(
    ("endpoint", "target", "code"),
    [("mx-nowhere", None, "EndpointNotFound"), ("mx-key", "purple", "DeploymentNotFound")],
    ids=["unknown-endpoint", "unknown-deployment"],
)
def test_404(deployed: Deployed, endpoint: str, target: str | None, code: str) -> None:
    headers = {"azureml_model_deployment": target} if target else {}
    answer = deployed.score(endpoint, "key-1", **headers)
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == code


def test_408_when_the_model_exceeds_the_request_timeout(deployed: Deployed) -> None:
    started = time.monotonic()
    answer = deployed.score("mx-slow", "slow-1")
    assert answer.status_code == 408, answer.text
    assert answer.headers["azureml-model-deployment"] == "blue"
    assert time.monotonic() - started < 1.0  # the gateway's 0.3 s, not the model's 1 s


def test_424_carries_the_models_status(deployed: Deployed) -> None:
    answer = deployed.score("mx-fail", "fail-1")
    assert answer.status_code == 424, answer.text
    assert answer.headers["ms-azureml-model-error-statuscode"] == "500"
    assert answer.headers["ms-azureml-model-error-reason"]
    assert answer.headers["azureml-model-deployment"] == "blue"


def test_the_header_reaches_a_zero_percent_deployment(deployed: Deployed) -> None:
    answer = deployed.score("mx-key", "key-1", azureml_model_deployment="dark")
    assert answer.status_code == 200, answer.text
    assert answer.headers["azureml-model-deployment"] == "dark"


def test_the_traffic_split_within_5_points(deployed: Deployed) -> None:
    seen: Counter[str] = Counter()
    url = f"{deployed.gateway.url}/endpoints/mx-key/score"
    with httpx.Client(timeout=30, trust_env=False) as client:
        for _ in range(SPLIT_REQUESTS):
            answer = client.post(url, headers={"authorization": "Bearer key-1"}, content=b"{}")
            assert answer.status_code == 200, answer.text
            seen[answer.headers["azureml-model-deployment"]] += 1
    assert set(seen) <= set(SPLIT), seen  # never the 0 % deployment
    for name, percent in SPLIT.items():
        assert abs(seen[name] / SPLIT_REQUESTS * 100 - percent) <= 5, seen
