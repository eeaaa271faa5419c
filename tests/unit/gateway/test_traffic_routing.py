"""Deployment choice by traffic weights and header, mirroring, and least-outstanding instances."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from gateway_support import deployment, endpoint

from propylon.errors import NotFound
from propylon.gateway import Endpoint, choose_deployment, least_outstanding
from propylon.gateway.routing import NO_POSITIVE_WEIGHT


def three_way() -> Endpoint:
    return endpoint(
        deployments=[deployment("blue"), deployment("green"), deployment("red")],
        traffic={"blue": 60, "green": 30, "red": 10},
    )


def test_traffic_weights_are_honoured_within_3_points_over_2000_picks() -> None:
    rand = random.Random(7).random
    e = three_way()
    picks = Counter(choose_deployment(e, None, rand)[0].name for _ in range(2000))
    for name, percent in {"blue": 60, "green": 30, "red": 10}.items():
        assert abs(picks[name] / 2000 * 100 - percent) <= 3, picks


def test_a_zero_percent_deployment_gets_no_unrouted_traffic() -> None:
    e = endpoint(
        deployments=[deployment("blue"), deployment("green")], traffic={"blue": 100, "green": 0}
    )
    rand = random.Random(1).random
    assert {choose_deployment(e, None, rand)[0].name for _ in range(500)} == {"blue"}


def test_header_targets_a_zero_percent_deployment() -> None:
    e = endpoint(
        deployments=[deployment("blue"), deployment("green")], traffic={"blue": 100, "green": 0}
    )
    live, mirror = choose_deployment(e, "GREEN", random.random)
    assert live.name == "green"
    assert mirror is None


def test_header_targets_a_mirror_only_deployment_and_nothing_is_mirrored() -> None:
    e = endpoint(
        deployments=[deployment("blue"), deployment("shadow")],
        traffic={"blue": 100},
        mirror={"shadow": 50},
    )
    results = [choose_deployment(e, "shadow", random.Random(n).random) for n in range(200)]
    assert {live.name for live, _ in results} == {"shadow"}
    assert all(mirror is None for _, mirror in results)
    results = [choose_deployment(e, "blue", random.Random(n).random) for n in range(200)]
    assert all(mirror is None for _, mirror in results)


def test_header_naming_an_unknown_deployment_is_404() -> None:
    e = endpoint(deployments=[deployment("blue")])
    with pytest.raises(NotFound) as caught:
        choose_deployment(e, "purple", random.random)
    assert "purple" in caught.value.message


def test_no_deployment_with_positive_weight_is_404_with_azures_message() -> None:
    e = endpoint(deployments=[deployment("blue")], traffic={"blue": 0})
    with pytest.raises(NotFound) as caught:
        choose_deployment(e, None, random.random)
    assert caught.value.message == NO_POSITIVE_WEIGHT


def test_mirror_copies_its_percentage_of_live_requests() -> None:
    e = endpoint(
        deployments=[deployment("blue"), deployment("shadow")],
        traffic={"blue": 100},
        mirror={"shadow": 20},
    )
    rand = random.Random(3).random
    mirrored = sum(choose_deployment(e, None, rand)[1] is not None for _ in range(2000))
    assert abs(mirrored / 2000 * 100 - 20) <= 3


def test_least_outstanding_picks_the_least_loaded_instance() -> None:
    d = deployment("blue", instances=3, max_concurrent=4)
    a, b, c = d.instances
    chosen = least_outstanding(d.instances, {a.key: 3, b.key: 1, c.key: 2})
    assert chosen is b


def test_least_outstanding_skips_instances_at_their_limit() -> None:
    d = deployment("blue", instances=2, max_concurrent=2)
    a, b = d.instances
    assert least_outstanding(d.instances, {a.key: 0, b.key: 2}) is a
    assert least_outstanding(d.instances, {a.key: 2, b.key: 2}) is None


def test_least_outstanding_skips_instances_set_aside() -> None:
    d = deployment("blue", instances=2, max_concurrent=2)
    a, b = d.instances
    assert {least_outstanding(d.instances, {}, {a.key}) for _ in range(10)} == {b}
    assert least_outstanding(d.instances, {}, {a.key, b.key}) is None
    only = deployment("green", instances=1)
    assert least_outstanding(only.instances, {}, {only.instances[0].key}) is None


def test_idle_instances_share_sequential_traffic() -> None:
    d = deployment("blue", instances=3)
    chosen = [least_outstanding(d.instances, {}) for _ in range(300)]
    seen = Counter(instance.instance_id for instance in chosen if instance is not None)
    assert set(seen) == {"i0", "i1", "i2"}
    assert min(seen.values()) >= 90
