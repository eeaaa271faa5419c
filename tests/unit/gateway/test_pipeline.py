"""The per-request pipeline: routes, headers both ways, model errors, streaming, mirror, log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gateway_support import call, deployment, endpoint, make_gateway, serving
from prometheus_client import CollectorRegistry, generate_latest

from propylon.gateway import (
    AuthMode,
    Endpoint,
    GatewayOptions,
    Instance,
    TrafficLog,
    UpstreamRequest,
    UpstreamResponse,
    read_traffic_log,
)
from propylon.gateway.testing import FakeTransport, StaticAccess

KEY = {"authorization": "Bearer primary-key-e1"}
T = TypeVar("T")


def one_endpoint() -> Endpoint:
    return endpoint(deployments=[deployment("blue")])


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def test_score_is_forwarded_with_query_and_without_credentials(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = FakeTransport()
        async with serving(
            make_gateway(one_endpoint(), transport=upstream, tmp_path=tmp_path)
        ) as gw:
            answer = await call(
                gw,
                "POST",
                "/endpoints/e1/score",
                headers={
                    **KEY,
                    "api-key": "primary-key-e1",
                    "content-type": "application/json",
                    "x-ms-client-request-id": "client-1",
                    "connection": "keep-alive",
                    "x-custom": "kept",
                },
                body=b'{"data": [1]}',
                query=b"verbose=true",
            )
        assert answer.status == 200
        assert answer.body == b'{"data": [1]}'
        assert answer.header("azureml-model-deployment") == "blue"
        ((_, sent),) = upstream.sent
        assert sent.method == b"POST"
        assert sent.target == b"/score?verbose=true"
        headers = dict(sent.headers)
        assert b"authorization" not in headers
        assert b"api-key" not in headers
        assert b"connection" not in headers
        assert headers[b"x-custom"] == b"kept"
        assert headers[b"x-ms-client-request-id"] == b"client-1"
        assert headers[b"x-request-id"] == b"00000000-0000-0000-0000-00000000abcd"
        assert headers[b"azureml-model-deployment"] == b"blue"

    run(scenario())


def test_every_data_plane_route_reaches_its_instance_path(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = FakeTransport()
        options = GatewayOptions(host_suffixes=(".gateway.test",))
        gw = make_gateway(one_endpoint(), transport=upstream, tmp_path=tmp_path, options=options)
        async with serving(gw):
            cases = [
                ("POST", "/endpoints/e1/score", {}),
                ("GET", "/endpoints/e1/swagger.json", {}),
                ("POST", "/endpoints/e1/chat/completions", {}),
                ("POST", "/endpoints/e1/embeddings", {}),
                ("GET", "/endpoints/e1/info", {}),
                ("POST", "/score", {"host": "e1.gateway.test:8081"}),
                ("GET", "/swagger.json", {"host": "E1.gateway.test"}),
            ]
            for method, path, extra in cases:
                answer = await call(gw, method, path, headers={**KEY, **extra})
                assert answer.status == 200, (path, answer.body)
        assert [request.target for _, request in upstream.sent] == [
            b"/score",
            b"/swagger.json",
            b"/chat/completions",
            b"/embeddings",
            b"/info",
            b"/score",
            b"/swagger.json",
        ]

    run(scenario())


def test_unknown_paths_endpoints_and_methods(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_gateway(one_endpoint(), tmp_path=tmp_path)) as gw:
            unknown_endpoint = await call(gw, "POST", "/endpoints/nope/score", headers=KEY)
            unknown_route = await call(gw, "POST", "/endpoints/e1/predict", headers=KEY)
            wrong_method = await call(gw, "GET", "/endpoints/e1/score", headers=KEY)
            elsewhere = await call(gw, "GET", "/favicon.ico")
        assert unknown_endpoint.status == 404
        assert unknown_endpoint.json()["error"]["code"] == "EndpointNotFound"
        assert unknown_route.status == 404
        assert wrong_method.status == 405
        assert wrong_method.header("allow") == "POST"
        assert elsewhere.status == 404

    run(scenario())


def test_other_paths_go_to_the_fallback_app(tmp_path: Path) -> None:
    async def fallback(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def scenario() -> None:
        gw = make_gateway(one_endpoint(), tmp_path=tmp_path)
        gw.fallback = fallback  # type: ignore[assignment]
        async with serving(gw):
            assert (await call(gw, "GET", "/healthz")).status == 204
            assert (await call(gw, "POST", "/score")).status == 204  # no endpoint in the Host

    run(scenario())


def test_a_model_error_is_424_with_the_models_status_reason_and_body(tmp_path: Path) -> None:
    async def failing(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(
            500,
            [(b"content-type", b"application/json"), (b"x-ms-run-function-failed", b"True")],
            b'{"message": "boom"}',
            reason=b"Internal Server Error",
        )

    async def scenario() -> None:
        gw = make_gateway(one_endpoint(), transport=FakeTransport(failing), tmp_path=tmp_path)
        async with serving(gw):
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
        assert answer.status == 424
        assert answer.header("ms-azureml-model-error-statuscode") == "500"
        assert answer.header("ms-azureml-model-error-reason") == "Internal Server Error"
        assert answer.header("azureml-model-deployment") == "blue"
        assert answer.header("x-ms-run-function-failed") == "True"
        assert answer.json() == {"message": "boom"}

    run(scenario())


def test_server_set_headers_of_the_instance_are_not_relayed(tmp_path: Path) -> None:
    async def instance_headers(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(
            200,
            [
                (b"date", b"Mon"),
                (b"server", b"uvicorn"),
                (b"x-request-id", b"instance-id"),
                (b"x-ms-request-id", b"instance-id"),
                (b"transfer-encoding", b"chunked"),
                (b"x-ms-run-fn-exec-ms", b"1.5"),
            ],
            b"ok",
        )

    async def scenario() -> None:
        upstream = FakeTransport(instance_headers)
        async with serving(
            make_gateway(one_endpoint(), transport=upstream, tmp_path=tmp_path)
        ) as gw:
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
        names = [name for name, _ in answer.headers]
        for dropped in (
            b"date",
            b"server",
            b"x-request-id",
            b"x-ms-request-id",
            b"transfer-encoding",
        ):
            assert dropped not in names
        assert answer.header("x-ms-run-fn-exec-ms") == "1.5"
        assert answer.header("content-length") == "2"

    run(scenario())


def test_a_streamed_answer_is_relayed_chunk_by_chunk(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def streaming(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        answer = UpstreamResponse(200, [(b"content-type", b"text/event-stream")])

        async def produce() -> None:
            answer._feed(b"data: one\n\n")
            await release.wait()
            answer._feed(b"data: two\n\n")
            answer._finish()

        asyncio.get_running_loop().create_task(produce())
        return answer

    async def scenario() -> list[bytes]:
        gw = make_gateway(one_endpoint(), transport=FakeTransport(streaming), tmp_path=tmp_path)
        async with serving(gw):
            task = asyncio.create_task(
                call(gw, "POST", "/endpoints/e1/chat/completions", headers=KEY)
            )
            await asyncio.sleep(0.05)
            assert not task.done()  # the first event is out while the model still works
            release.set()
            answer = await task
        assert answer.header("content-length") is None
        return answer.chunks

    chunks = run(scenario())
    assert chunks == [b"data: one\n\n", b"data: two\n\n"]


def test_a_mirror_that_fails_or_sleeps_changes_nothing_for_the_live_request(
    tmp_path: Path,
) -> None:
    async def by_deployment(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        if instance.key.startswith(deployment("shadow").id):
            await asyncio.sleep(0.2)
            raise RuntimeError("the mirror deployment is broken")
        return UpstreamResponse(200, [], b"live")

    async def scenario() -> None:
        upstream = FakeTransport(by_deployment)
        e = endpoint(
            deployments=[deployment("blue"), deployment("shadow")],
            traffic={"blue": 100},
            mirror={"shadow": 50},
        )
        gw = make_gateway(e, transport=upstream, tmp_path=tmp_path, rand=lambda: 0.1)
        async with serving(gw):
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"x")
            assert answer.status == 200
            assert answer.body == b"live"
            assert answer.header("azureml-model-deployment") == "blue"
            await asyncio.sleep(0)  # the copy is queued only after the live answer
            assert [i.key.split("#")[0].rsplit("/", 1)[-1] for i, _ in upstream.sent] == [
                "blue",
                "shadow",
            ]
            _, copy = upstream.sent[1]
            assert copy.body == b"x"
            assert dict(copy.headers)[b"azureml-model-deployment"] == b"shadow"
            await gw.mirror.idle()
            targeted = await call(
                gw,
                "POST",
                "/endpoints/e1/score",
                headers={**KEY, "azureml-model-deployment": "blue"},
            )
            assert targeted.status == 200
            await asyncio.sleep(0)
            assert len(upstream.sent) == 3  # a request targeted by header is never mirrored

    run(scenario())


def test_the_workspace_model_routes_pick_the_endpoint_from_the_body_and_need_rbac(
    tmp_path: Path,
) -> None:
    access = StaticAccess()
    access.add_identity_token("aad-alice", oid="alice")
    access.add_identity_token("aad-bob", oid="bob")
    e = one_endpoint()  # a key endpoint: the /models form is key-less regardless
    access.grant("alice", e.arm_id)

    async def scenario() -> None:
        upstream = FakeTransport()
        gw = make_gateway(e, transport=upstream, access=access, tmp_path=tmp_path)
        async with serving(gw):
            body = json.dumps({"model": "e1", "messages": []}).encode()
            ok = await call(
                gw,
                "POST",
                "/models/chat/completions",
                headers={"authorization": "Bearer aad-alice"},
                body=body,
                query=b"api-version=1",
            )
            refused = await call(
                gw,
                "POST",
                "/models/embeddings",
                headers={"authorization": "Bearer aad-bob"},
                body=b'{"model": "e1"}',
            )
            with_key = await call(gw, "POST", "/models/chat/completions", headers=KEY, body=body)
            no_model = await call(
                gw,
                "POST",
                "/models/chat/completions",
                headers={"authorization": "Bearer aad-alice"},
                body=b"{}",
            )
        assert ok.status == 200
        assert upstream.sent[0][1].target == b"/chat/completions?api-version=1"
        assert refused.status == 403
        assert with_key.status == 401
        assert no_model.status == 400

    run(scenario())


def test_each_request_leaves_one_traffic_record_with_azures_fields_and_no_secret(
    tmp_path: Path,
) -> None:
    access = StaticAccess()
    access.add_identity_token("aad-secret-token", oid="alice-oid", appid="alice-app")
    aad = endpoint(
        "aad1", deployments=[deployment("blue", endpoint="aad1")], auth_mode=AuthMode.AAD_TOKEN
    )
    access.grant("alice-oid", aad.arm_id)

    async def scenario() -> None:
        gw = make_gateway(one_endpoint(), aad, access=access, tmp_path=tmp_path)
        async with serving(gw):
            headers = {**KEY, "user-agent": "tests/1.0", "x-ms-client-request-id": "c-1"}
            await call(gw, "POST", "/endpoints/e1/score", headers=headers, body=b"12345")
            await call(gw, "POST", "/endpoints/e1/score", headers={"authorization": "Bearer nope"})
            await call(
                gw,
                "POST",
                "/endpoints/aad1/score",
                headers={"authorization": "Bearer aad-secret-token"},
            )

    run(scenario())
    records = read_traffic_log(tmp_path / "traffic", "e1")
    assert [r["ResponseCode"] for r in records] == [200, 401]
    ok = records[0]
    assert ok["Method"] == "POST"
    assert ok["Path"] == "/endpoints/e1/score"
    assert ok["EndpointName"] == "e1"
    assert ok["DeploymentName"] == "blue"
    assert ok["ResponseCodeReason"] == "OK"
    assert ok["ModelStatusCode"] == 200
    assert ok["RequestPayloadSize"] == 5
    assert ok["ResponsePayloadSize"] == 5
    assert ok["UserAgent"] == "tests/1.0"
    assert ok["XMSClientRequestId"] == "c-1"
    assert ok["XRequestId"] == "00000000-0000-0000-0000-00000000abcd"
    assert ok["AuthType"] == "Key"
    assert ok["IdentityData"] == "key"
    assert ok["TotalDurationMs"] >= ok["ResponseDurationMs"] >= ok["RequestDurationMs"] >= 0
    assert records[1]["AuthType"] == "Key"
    (token_record,) = read_traffic_log(tmp_path / "traffic", "aad1")
    assert token_record["AuthType"] == "AADToken"
    assert token_record["IdentityData"] == "alice-oid"
    assert token_record["AppId"] == "alice-app"
    written = "".join(p.read_text() for p in (tmp_path / "traffic").iterdir())
    for secret in ("primary-key-e1", "aad-secret-token", "nope"):
        assert secret not in written


def test_traffic_metrics_are_exposed_per_endpoint_deployment_status_and_auth_type(
    tmp_path: Path,
) -> None:
    registry = CollectorRegistry()

    async def scenario() -> None:
        gw = make_gateway(one_endpoint(), tmp_path=tmp_path)
        gw.traffic = TrafficLog(tmp_path / "traffic", registry=registry)
        async with serving(gw):
            for _ in range(3):
                await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            await call(gw, "POST", "/endpoints/e1/score")

    run(scenario())
    text = generate_latest(registry).decode()
    assert (
        'propylon_gateway_scoring_requests_total{auth_type="Key",deployment="blue",'
        'endpoint="e1",status="200"} 3.0'
    ) in text
    assert 'status="401"' in text
    assert (
        'propylon_gateway_scoring_duration_seconds_count{deployment="blue",endpoint="e1"} 3.0'
        in text
    )
    assert "propylon_gateway_model_duration_seconds_bucket" in text


def test_traffic_log_lines_equal_the_documented_record(tmp_path: Path) -> None:
    from propylon.gateway.traffic_log import TrafficRecord, _LineFormat

    record = TrafficRecord(
        time=1_790_000_000.123456,
        method="POST",
        path='/endpoints/"e1"/score',
        endpoint="e1",
        user_agent="naïve\n",
        response_ms=None,
        model_status_code=None,
        app_id="app",
        total_ms=1.23456,
    )
    assert json.loads(_LineFormat().render(record)) == record.as_json()


def test_traffic_log_lines_stay_equal_to_the_record_as_columns_repeat_and_change() -> None:
    from propylon.gateway.traffic_log import TrafficRecord, _LineFormat

    lines = _LineFormat()
    records = [
        TrafficRecord(time=1_790_000_000.5, method="POST", path="/endpoints/e1/score"),
        TrafficRecord(time=1_790_000_000.5, method="POST", path="/endpoints/e2/score"),
        TrafficRecord(
            time=1_790_000_001.25,
            method="POST",
            path="/endpoints/e1/score",
            response_code=424,
            model_status_code=500,
            model_status_reason=b"Internal Server Error",
            auth_type="AADToken",
            identity="oid-1",
            app_id="app",
            tenant_id="tid",
        ),
        TrafficRecord(time=1_790_000_001.25, method="GET", path="/endpoints/e1/score"),
    ]
    for record in [*records, *records]:
        assert json.loads(lines.render(record)) == record.as_json()


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 0.0004, 0.0005, 0.0015, 2.675, 0.1 + 0.2, 1.23456, 999999999999.9996, 1e12, 1e16],
)
def test_traffic_log_durations_are_rendered_as_json_dumps_renders_them(value: float) -> None:
    from propylon.gateway.traffic_log import _ms

    assert _ms(value) == json.dumps(round(value, 3))


def test_a_traffic_log_file_removed_by_an_operator_is_recreated(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_gateway(one_endpoint(), tmp_path=tmp_path)) as gw:
            await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            await gw.traffic.flush()
            (tmp_path / "traffic" / "e1.jsonl").rename(tmp_path / "traffic" / "moved.txt")
            await call(gw, "POST", "/endpoints/e1/score", headers=KEY)

    run(scenario())
    assert len(read_traffic_log(tmp_path / "traffic", "e1")) == 1
    assert len((tmp_path / "traffic" / "moved.txt").read_text().splitlines()) == 1
