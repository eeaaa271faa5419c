"""Concurrency per instance, queueing up to max_queue_wait (then 429), timeouts (408), 413, 503."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway_support import call, deployment, endpoint, make_gateway, serving

from propylon.gateway import GatewayOptions, Instance, UpstreamRequest, UpstreamResponse
from propylon.gateway.testing import FakeTransport

KEY = {"authorization": "Bearer primary-key-e1"}


def slow_model(seconds: float) -> FakeTransport:
    async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        await asyncio.sleep(seconds)
        return UpstreamResponse(200, [(b"content-type", b"application/json")], request.body)

    return FakeTransport(handler)


def test_requests_beyond_instance_concurrency_wait_for_a_slot(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = slow_model(0.05)
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue", max_concurrent=1, queue_wait_s=2.0)]),
                transport=upstream,
                tmp_path=tmp_path,
            )
        ) as gw:
            # One runs, one waits: Azure admits 2 × max_concurrent × instances at once.
            answers = await asyncio.gather(
                *(
                    call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
                    for _ in range(2)
                )
            )
            assert [a.status for a in answers] == [200, 200]
            assert upstream.most_in_flight == 1

    asyncio.run(scenario())


def test_concurrency_is_per_instance(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = slow_model(0.05)
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue", instances=2, max_concurrent=2)]),
                transport=upstream,
                tmp_path=tmp_path,
            )
        ) as gw:
            answers = await asyncio.gather(
                *(
                    call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
                    for _ in range(4)
                )
            )
            assert {a.status for a in answers} == {200}
            assert upstream.most_in_flight == 4
            per_instance = {instance.instance_id for instance, _ in upstream.sent}
            assert per_instance == {"i0", "i1"}

    asyncio.run(scenario())


def test_waiting_longer_than_max_queue_wait_is_429(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue", max_concurrent=1, queue_wait_s=0.05)]),
                transport=slow_model(0.5),
                tmp_path=tmp_path,
            )
        ) as gw:
            first = asyncio.create_task(call(gw, "POST", "/endpoints/e1/score", headers=KEY))
            await asyncio.sleep(0.01)
            second = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            assert second.status == 429
            assert second.json()["error"]["code"] == "TooManyPendingRequests"
            assert second.header("retry-after") == "1"
            assert second.header("azureml-model-deployment") == "blue"
            assert (await first).status == 200

    asyncio.run(scenario())


def test_a_full_queue_refuses_at_once_with_429(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(
            make_gateway(
                # One instance of one slot: one request runs, one may wait, the third is refused.
                endpoint(deployments=[deployment("blue", max_concurrent=1, queue_wait_s=5.0)]),
                transport=slow_model(0.2),
                tmp_path=tmp_path,
            )
        ) as gw:
            running = asyncio.create_task(call(gw, "POST", "/endpoints/e1/score", headers=KEY))
            await asyncio.sleep(0.01)
            waiting = asyncio.create_task(call(gw, "POST", "/endpoints/e1/score", headers=KEY))
            await asyncio.sleep(0.01)
            refused = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            assert refused.status == 429
            assert not running.done()  # refused without waiting for a slot
            assert (await running).status == 200
            assert (await waiting).status == 200

    asyncio.run(scenario())


def test_a_model_slower_than_request_timeout_is_408(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue", timeout_s=0.05)]),
                transport=slow_model(1.0),
                tmp_path=tmp_path,
            )
        ) as gw:
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            assert answer.status == 408
            assert answer.json()["error"]["code"] == "RequestTimeout"
            assert answer.header("azureml-model-deployment") == "blue"
            # The slot is free again: the next request is not refused.
            assert gw.limiter.outstanding == {}

    asyncio.run(scenario())


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = FakeTransport()
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue")]),
                transport=upstream,
                tmp_path=tmp_path,
                options=GatewayOptions(max_request_bytes=1000),
            )
        ) as gw:
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"x" * 1001)
            assert answer.status == 413
            assert answer.json()["error"]["code"] == "RequestEntityTooLarge"
            assert upstream.sent == []
            ok = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"x" * 1000)
            assert ok.status == 200

    asyncio.run(scenario())


def test_a_chunked_body_growing_over_the_limit_is_413(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = FakeTransport()
        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue")]),
                transport=upstream,
                tmp_path=tmp_path,
                options=GatewayOptions(max_request_bytes=1000),
            )
        ) as gw:
            answer = await call(
                gw, "POST", "/endpoints/e1/score", headers=KEY, body_parts=[b"x" * 600, b"x" * 600]
            )
            assert answer.status == 413
            assert upstream.sent == []

    asyncio.run(scenario())


def test_the_default_body_limit_is_azures_1_5_mb(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(
            make_gateway(endpoint(deployments=[deployment("blue")]), tmp_path=tmp_path)
        ) as gw:
            big = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"x" * 1_600_000)
            assert big.status == 413
            fits = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"x" * 1_500_000)
            assert fits.status == 200

    asyncio.run(scenario())


def test_a_deployment_without_ready_instances_is_503(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(
            make_gateway(endpoint(deployments=[deployment("blue", instances=0)]), tmp_path=tmp_path)
        ) as gw:
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
            assert answer.status == 503
            assert answer.json()["error"]["code"] == "NoHealthyInstance"

    asyncio.run(scenario())


def test_a_freed_slot_goes_to_the_oldest_waiter(tmp_path: Path) -> None:
    async def scenario() -> None:
        order: list[bytes] = []

        async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
            order.append(request.body)
            await asyncio.sleep(0.02)
            return UpstreamResponse(200, [], b"ok")

        async with serving(
            make_gateway(
                endpoint(deployments=[deployment("blue", max_concurrent=2, queue_wait_s=5.0)]),
                transport=FakeTransport(handler),
                tmp_path=tmp_path,
            )
        ) as gw:
            tasks = []
            for n in range(4):
                body = str(n).encode()
                tasks.append(
                    asyncio.create_task(
                        call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=body)
                    )
                )
                await asyncio.sleep(0.001)
            await asyncio.gather(*tasks)
            assert order == [b"0", b"1", b"2", b"3"]

    asyncio.run(scenario())
