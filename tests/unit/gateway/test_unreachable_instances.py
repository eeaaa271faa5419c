"""An instance that refuses the connection (dead, not yet dropped from the routing table): the
request goes to another ready instance of the deployment, or is a 503 — never a 502, since it
never left; a failure once the request may have reached the instance stays a 502, unrepeated."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway_support import call, deployment, endpoint, make_gateway, serving

from propylon.gateway import (
    BadGateway,
    ConnectFailed,
    Gateway,
    Instance,
    Limiter,
    UpstreamRequest,
    UpstreamResponse,
)
from propylon.gateway.limits import UNREACHABLE_SECONDS
from propylon.gateway.testing import FakeTransport

KEY = {"authorization": "Bearer primary-key-e1"}


def refusing(*dead: str, after_sending: bool = False) -> FakeTransport:
    """Instances named in ``dead`` refuse the connection (or, ``after_sending``, break it after
    the request was written); the others echo."""

    async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        if instance.instance_id in dead:
            if after_sending:
                raise BadGateway("The instance closed the connection.", code="InstanceUnreachable")
            raise ConnectFailed(f"Instance '{instance.instance_id}' is not accepting connections.")
        return UpstreamResponse(200, [(b"content-type", b"application/json")], request.body)

    return FakeTransport(handler)


def tried(upstream: FakeTransport) -> list[str]:
    return [instance.instance_id for instance, _ in upstream.sent]


def two_instances(
    upstream: FakeTransport, tmp_path: Path, *, max_concurrent: int = 1, queue_wait_s: float = 0.5
) -> Gateway:
    blue = deployment("blue", instances=2, max_concurrent=max_concurrent, queue_wait_s=queue_wait_s)
    return make_gateway(endpoint(deployments=[blue]), transport=upstream, tmp_path=tmp_path)


def test_a_refused_connection_is_served_by_the_other_instance(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = refusing("i0")
        async with serving(two_instances(upstream, tmp_path)) as gw:
            answers = [
                await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b'{"n": %d}' % n)
                for n in range(6)
            ]
            assert [a.status for a in answers] == [200] * 6
            assert [a.body for a in answers] == [b'{"n": %d}' % n for n in range(6)]
            # i0 costs at most one failed connect; then it is set aside.
            assert tried(upstream).count("i0") <= 1
            assert tried(upstream).count("i1") == 6
            assert gw.limiter.outstanding == {}

    asyncio.run(scenario())


def test_every_instance_refusing_is_503_after_trying_each_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = refusing("i0", "i1")
        async with serving(two_instances(upstream, tmp_path)) as gw:
            first = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
            assert first.status == 503
            assert first.json()["error"]["code"] == "NoHealthyInstance"
            assert sorted(tried(upstream)) == ["i0", "i1"]
            # While both are set aside, a request is refused without a connect.
            again = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
            assert again.status == 503
            assert len(upstream.sent) == 2
            assert gw.limiter.outstanding == {}

    asyncio.run(scenario())


def test_a_failure_after_the_request_was_sent_is_502_and_not_repeated(tmp_path: Path) -> None:
    async def scenario() -> None:
        upstream = refusing("i0", "i1", after_sending=True)
        async with serving(two_instances(upstream, tmp_path)) as gw:
            answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
            assert answer.status == 502
            assert len(upstream.sent) == 1
            assert gw.limiter.outstanding == {}
            assert gw.limiter.aside == {}

    asyncio.run(scenario())


def test_counters_stay_balanced_under_concurrent_load_with_a_refusing_instance(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
            if instance.instance_id == "i0":
                await asyncio.sleep(0.001)  # a connect that takes a moment: i0 gets two requests
                raise ConnectFailed("Instance 'i0' is not accepting connections.")
            await asyncio.sleep(0.005)
            return UpstreamResponse(200, [], b"ok")

        upstream = FakeTransport(handler)
        gw = two_instances(upstream, tmp_path, max_concurrent=2, queue_wait_s=5.0)
        async with serving(gw):
            # 4 run, 2 queue; the 2 refused by i0 queue again (the queue takes 4), then i1 runs all.
            answers = await asyncio.gather(
                *(call(gw, "POST", "/endpoints/e1/score", headers=KEY) for _ in range(6))
            )
            assert [a.status for a in answers] == [200] * 6
            assert tried(upstream).count("i0") == 2
            assert upstream.most_in_flight <= 4
            assert gw.limiter.outstanding == {}
            assert [key.rsplit("#", 1)[1] for key in gw.limiter.aside] == ["i0"]

    asyncio.run(scenario())


def test_an_instance_set_aside_gets_no_request_until_its_time_is_up() -> None:
    now = [100.0]
    limiter = Limiter(clock=lambda: now[0])
    blue = deployment("blue", instances=2)
    i0, i1 = blue.instances
    assert {limiter.try_acquire(blue), limiter.try_acquire(blue)} == {i0, i1}
    limiter.set_aside(i0)  # its request's connect was refused
    limiter.release(blue, i0)
    limiter.release(blue, i1)
    assert limiter.outstanding == {}
    assert limiter.try_acquire(blue) is i1
    assert limiter.try_acquire(blue) is None  # i1 is full, i0 set aside
    limiter.release(blue, i1)
    now[0] += UNREACHABLE_SECONDS
    picks = set()
    for _ in range(4):
        instance = limiter.try_acquire(blue)
        assert instance is not None
        picks.add(instance.instance_id)
        limiter.release(blue, instance)
    assert picks == {"i0", "i1"}
    assert limiter.outstanding == {}
    assert limiter.aside == {}


def test_a_failure_on_the_second_instance_is_its_own_and_leaves_no_slot_held(
    tmp_path: Path,
) -> None:
    async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        if instance.instance_id == "i0":
            raise ConnectFailed("Instance 'i0' is not accepting connections.")
        raise BadGateway("The instance broke off its answer.")

    async def scenario() -> None:
        upstream = FakeTransport(handler)
        gw = two_instances(upstream, tmp_path)
        async with serving(gw):
            paths = []
            for _ in range(4):  # idle instances take turns: some requests start on i0
                answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY)
                assert answer.status == 502
                paths.append(tried(upstream))
                upstream.sent.clear()
                gw.limiter.aside.clear()
                assert gw.limiter.outstanding == {}
            assert ["i0", "i1"] in paths
            assert set(map(tuple, paths)) <= {("i0", "i1"), ("i1",)}

    asyncio.run(scenario())


def test_a_mirror_copy_refused_by_an_instance_sets_it_aside_for_live_requests_too(
    tmp_path: Path,
) -> None:
    def where(instance: Instance) -> str:  # its key: "{deployment id}#{instance id}@{url}"
        deployment_id = instance.key.split("#", 1)[0]
        return f"{deployment_id.rsplit('/', 1)[1]}/{instance.instance_id}"

    async def handler(instance: Instance, request: UpstreamRequest) -> UpstreamResponse:
        if where(instance) == "shadow/i0":
            raise ConnectFailed("Instance 'i0' is not accepting connections.")
        return UpstreamResponse(200, [(b"content-type", b"application/json")], request.body)

    async def scenario() -> None:
        upstream = FakeTransport(handler)
        blue = deployment("blue", instances=1)
        shadow = deployment("shadow", instances=2, max_concurrent=4)
        target = endpoint(deployments=[blue, shadow], traffic={"blue": 100}, mirror={"shadow": 100})
        gw = make_gateway(target, transport=upstream, tmp_path=tmp_path)
        async with serving(gw):
            for _ in range(2):  # idle instances take turns: one of these copies goes to i0
                answer = await call(gw, "POST", "/endpoints/e1/score", headers=KEY, body=b"{}")
                assert answer.status == 200
                await gw.mirror.idle()
            assert "shadow/i0" in [where(instance) for instance, _ in upstream.sent]
            assert len(gw.limiter.aside) == 1
            targeted = {**KEY, "azureml-model-deployment": "shadow"}
            for _ in range(4):  # live requests to the shadow now go to its other instance only
                upstream.sent.clear()
                answer = await call(gw, "POST", "/endpoints/e1/score", headers=targeted)
                assert answer.status == 200
                assert [where(instance) for instance, _ in upstream.sent] == ["shadow/i1"]
            assert gw.limiter.outstanding == {}

    asyncio.run(scenario())
