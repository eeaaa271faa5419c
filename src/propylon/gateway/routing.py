"""Which deployment and which instance answer a request (reference §3.3).

* Without the ``azureml-model-deployment`` header a deployment is drawn by the endpoint's
  ``traffic`` percentages, and ``mirrorTraffic`` decides whether a copy also goes to the mirror
  deployment. No deployment with positive weight is a 404, as Azure answers ("The endpoint
  doesn't have any valid deployment with positive weight").
* With the header the named deployment answers whatever its weight — 0 %, or mirror-only — and
  nothing is mirrored. An unknown name is a 404.
* Within a deployment the instance with the fewest outstanding requests wins, among those below
  their concurrency limit and not set aside (one that just refused a connection); ties rotate so
  that idle instances share sequential traffic.

Pure functions over :mod:`propylon.gateway.table` snapshots; ``rand`` is injectable for tests.

Example::

    deployment, mirror = choose_deployment(endpoint, request_header, random.random)
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections.abc import Callable, Container, Mapping
from typing import Final

from propylon.errors import NotFound
from propylon.gateway.table import Deployment, Endpoint, Instance, Weights

__all__ = ["NO_POSITIVE_WEIGHT", "choose_deployment", "least_outstanding", "pick_weighted"]

NO_POSITIVE_WEIGHT: Final = "The endpoint doesn't have any valid deployment with positive weight."

_rotation = itertools.count()


def pick_weighted(weights: Weights, rand: Callable[[], float]) -> str | None:
    """A name drawn with probability weight / total; None when no weight is positive."""
    names = weights.names
    if len(names) <= 1:
        return names[0] if names else None
    return names[bisect_right(weights.cumulative, rand() * weights.total)]


def choose_deployment(
    endpoint: Endpoint, requested: str | None, rand: Callable[[], float]
) -> tuple[Deployment, Deployment | None]:
    """The live deployment and, sometimes, the one that receives a mirrored copy."""
    if requested:
        targeted = endpoint.deployment(requested)
        if targeted is None:
            raise NotFound(
                f"The endpoint '{endpoint.name}' has no deployment named '{requested}'.",
                code="DeploymentNotFound",
            )
        return targeted, None
    name = pick_weighted(endpoint.traffic, rand)
    live = endpoint.deployments.get(name) if name is not None else None
    if live is None:
        raise NotFound(NO_POSITIVE_WEIGHT, code="NoValidDeployment")
    mirror = None
    if endpoint.mirror.names and rand() * 100 < endpoint.mirror.total:
        mirror_name = pick_weighted(endpoint.mirror, rand)
        if mirror_name is not None and mirror_name != name:
            mirror = endpoint.deployments.get(mirror_name)
    return live, mirror


def least_outstanding(
    instances: tuple[Instance, ...],
    outstanding: Mapping[str, int],
    aside: Container[str] = (),
) -> Instance | None:
    """The instance with the fewest requests in flight, below its limit and whose key is not in
    ``aside``; None if there is none."""
    count = len(instances)
    if count == 1:
        only = instances[0]
        if outstanding.get(only.key, 0) < only.max_concurrent and only.key not in aside:
            return only
        return None
    best: Instance | None = None
    best_load = 0
    start = next(_rotation) % count if count else 0
    for offset in range(count):
        instance = instances[(start + offset) % count]
        load = outstanding.get(instance.key, 0)
        if (
            load < instance.max_concurrent
            and (best is None or load < best_load)
            and instance.key not in aside
        ):
            best, best_load = instance, load
            if load == 0:
                break
    return best
