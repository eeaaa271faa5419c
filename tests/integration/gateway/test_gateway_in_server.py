"""The gateway as ``propylon server`` serves it: wired under the server's middleware, following the
store it shares with the control plane, beside /healthz and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from gateway_harness import EchoInstance

from propylon.gateway.testing import StoreSeeder
from propylon.store import Database, MasterKey, ResourceStore, Sealer, Vault
from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with RunningServer.start(tmp_path_factory.mktemp("gateway-server") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def seed(server: RunningServer) -> Iterator[StoreSeeder]:
    """The server's store, written from outside as another replica's control plane would."""
    data: Path = server.data_dir
    db = Database.connect(f"sqlite:///{data / 'propylon.db'}")
    sealer = Sealer(MasterKey.load_or_create(data / "master.key", None).material)
    info = server.bootstrap
    workspace = (
        f"/subscriptions/{info['subscription_id']}/resourceGroups/{info['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{info['workspace']}"
    )
    yield StoreSeeder(ResourceStore(db), Vault(db, sealer), workspace)
    db.dispose()


def test_a_key_endpoint_scores_through_the_server_and_health_still_answers(
    server: RunningServer, seed: StoreSeeder, instances: dict[str, EchoInstance]
) -> None:
    seed.endpoint("served", traffic={"blue": 100}, keys=("served-key-1", "served-key-2"))
    seed.deployment("served", "blue", instances=[instances["fast"].url], max_concurrent=4)
    url = f"{server.gateway_url}/endpoints/served/score"
    headers = {"authorization": "Bearer served-key-1", "x-ms-client-request-id": "via-server"}
    with server.client() as client:

        def scored() -> httpx.Response | None:
            answer = client.post(url, headers=headers, json={"x": 1})
            return answer if answer.status_code == 200 else None

        answer = wait_until(scored, timeout=10)  # the server's change feed brings the endpoint
        assert answer.json() == {"x": 1}
        assert answer.headers["azureml-model-deployment"] == "blue"
        assert answer.headers["x-ms-client-request-id"] == "via-server"
        assert answer.headers.get_list("x-request-id") == [answer.headers["x-ms-request-id"]]
        refused = client.post(url, headers={"authorization": "Bearer nope"}, json={})
        assert refused.status_code == 401
        assert client.get(f"{server.gateway_url}/healthz").json()["plane"] == "gateway"
        metrics = client.get(f"{server.gateway_url}/metrics").text
    assert "propylon_gateway_requests_total" in metrics
    assert "propylon_gateway_scoring_requests_total" in metrics
    traffic = server.data_dir / "logs" / "traffic" / "served.jsonl"
    wait_until(traffic.exists, timeout=10)
    assert "served-key-1" not in traffic.read_text()


@pytest.fixture(scope="module")
def chat_endpoint(
    server: RunningServer, seed: StoreSeeder, instances: dict[str, EchoInstance]
) -> str:
    seed.endpoint("chat", traffic={"blue": 100}, keys=("chat-key-1", "chat-key-2"))
    seed.deployment("chat", "blue", instances=[instances["fast"].url], max_concurrent=4)
    url = f"{server.gateway_url}/endpoints/chat"
    with server.client() as client:
        wait_until(
            lambda: client.get(f"{url}/info", headers={"api-key": "chat-key-1"}).status_code == 200,
            timeout=10,
        )
    return url


def test_the_azure_ai_inference_clients_work_with_a_key(
    server: RunningServer, chat_endpoint: str
) -> None:
    from azure.ai.inference import ChatCompletionsClient, EmbeddingsClient
    from azure.ai.inference.models import UserMessage
    from azure.core.credentials import AzureKeyCredential

    options = {"credential": AzureKeyCredential("chat-key-1"), "connection_verify": server.ca_cert}
    with ChatCompletionsClient(endpoint=chat_endpoint, **options) as chat:  # type: ignore[arg-type]
        answer = chat.complete(messages=[UserMessage(content="hello there")])
        assert answer.choices[0].message.content == "hello there"
        streamed = chat.complete(messages=[UserMessage(content="one two three")], stream=True)
        words = [u.choices[0].delta.content for u in streamed if u.choices and u.choices[0].delta]
        assert "".join(w for w in words if w) == "one two three"
    with EmbeddingsClient(endpoint=chat_endpoint, **options) as embeddings:  # type: ignore[arg-type]
        vectors = embeddings.embed(input=["first", "second"])
        assert [len(item.embedding) for item in vectors.data] == [8, 8]


def test_the_openai_client_works_with_a_key(server: RunningServer, chat_endpoint: str) -> None:
    from openai import AuthenticationError, OpenAI

    with httpx.Client(verify=server.verify) as http:
        client = OpenAI(base_url=chat_endpoint, api_key="chat-key-1", http_client=http)
        answer = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hi openai"}]
        )
        assert answer.choices[0].message.content == "hi openai"
        stream = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert text == "a b c"
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=chat_endpoint, api_key="wrong", http_client=http).embeddings.create(
                model="echo", input="x"
            )
