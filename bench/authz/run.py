"""Per-decision latency of the RBAC engine, cached and uncached, on a large synthetic tenant.

Usage::

    python bench/authz/run.py            # 100,000 assignments, 10,000 principals, 1,000 groups
    python bench/authz/run.py --smoke    # small sizes, a few seconds
    python bench/authz/run.py --record   # also write the "## authz" section of bench/RESULTS.md

The tenant: 10 subscriptions × 10 resource groups × 10 workspaces × 10 online endpoints; every
principal belongs to 1–4 groups; assignments go 80 % to principals and 20 % to groups, at
subscription (5 %), resource group (15 %), workspace (50 %) or endpoint (30 %) scope, with built-in
and the seed's custom roles; 100 deny assignments on ``*/delete`` at resource groups.

"Uncached" calls :meth:`Policy.authorize` for every request (its compiled patterns, scope parse
cache and per-role action memo are warm, as in a running server); "uncached, unseen scope" does
the same for scopes never parsed before (a deployment created a moment ago); "cached" calls
:class:`CachedAuthorizer` with every request already in its LRU. Each decision is timed alone
with ``time.perf_counter_ns`` (the timer's own cost, ~0.1 µs, is included). Goals: cached
≤ 10 µs, uncached ≤ 200 µs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from results import record

from propylon.authz import (
    BUILTIN_ROLES_BY_NAME,
    EVERYONE,
    CachedAuthorizer,
    Decision,
    DenyAssignment,
    Permission,
    Policy,
    RoleAssignment,
    RoleDefinition,
)

ML = "Microsoft.MachineLearningServices"
ENDPOINT_ACTIONS = [
    f"{ML}/workspaces/onlineEndpoints/score/action",
    f"{ML}/workspaces/onlineEndpoints/read",
    f"{ML}/workspaces/onlineEndpoints/write",
    f"{ML}/workspaces/onlineEndpoints/delete",
    f"{ML}/workspaces/onlineendpoints/listkeys/action",
    f"{ML}/workspaces/onlineendpoints/token/action",
    f"{ML}/workspaces/onlineendpoints/regeneratekeys/action",
    f"{ML}/workspaces/onlineEndpoints/deployments/write",
    f"{ML}/workspaces/onlineEndpoints/deployments/read",
    "Microsoft.Authorization/roleAssignments/write",
]
CUSTOM_ROLES = [
    RoleDefinition(
        id="7a1c0c55-50a8-4a3f-9c0e-3b8f9d2a6e01",
        role_name="Custom role for control plane operations - online endpoint",
        permissions=(
            Permission(
                actions=tuple(
                    f"{ML}/workspaces/onlineEndpoints/{op}"
                    for op in (
                        "write",
                        "delete",
                        "read",
                        "token/action",
                        "listKeys/action",
                        "regenerateKeys/action",
                    )
                )
            ),
        ),
    ),
    RoleDefinition(
        id="7a1c0c55-50a8-4a3f-9c0e-3b8f9d2a6e02",
        role_name="Custom role for scoring - online endpoint",
        permissions=(Permission(actions=(f"{ML}/workspaces/onlineEndpoints/*/action",)),),
    ),
]
ROLE_WEIGHTS = {
    BUILTIN_ROLES_BY_NAME["Reader"].id: 30,
    BUILTIN_ROLES_BY_NAME["AzureML Data Scientist"].id: 25,
    BUILTIN_ROLES_BY_NAME["Contributor"].id: 10,
    BUILTIN_ROLES_BY_NAME["Owner"].id: 3,
    BUILTIN_ROLES_BY_NAME["Azure AI Developer"].id: 7,
    BUILTIN_ROLES_BY_NAME["AzureML Compute Operator"].id: 5,
    CUSTOM_ROLES[0].id: 10,
    CUSTOM_ROLES[1].id: 10,
}


@dataclass(frozen=True)
class Sizes:
    assignments: int
    principals: int
    groups: int
    denies: int
    requests: int
    subscriptions: int = 10
    fanout: int = 10  # resource groups per subscription, workspaces per group, endpoints per ws


FULL = Sizes(assignments=100_000, principals=10_000, groups=1_000, denies=100, requests=100_000)
SMOKE = Sizes(
    assignments=2_000,
    principals=200,
    groups=20,
    denies=10,
    requests=5_000,
    subscriptions=3,
    fanout=5,
)

Request = tuple[str, list[str], str, str]


@dataclass(frozen=True)
class Tenant:
    policy: Policy
    requests: list[Request]
    build_seconds: float


def _oid(kind: str, n: int) -> str:
    return f"{kind}{n:07d}-0000-4000-8000-000000000000"


def build(sizes: Sizes, seed: int) -> Tenant:
    rng = random.Random(seed)
    subs = [f"/subscriptions/{_oid('5', s)}" for s in range(sizes.subscriptions)]
    rgs = [f"{s}/resourceGroups/rg{r}" for s in subs for r in range(sizes.fanout)]
    workspaces = [f"{g}/providers/{ML}/workspaces/ws{w}" for g in rgs for w in range(sizes.fanout)]
    endpoints = [f"{w}/onlineEndpoints/ep{e}" for w in workspaces for e in range(sizes.fanout)]
    principals = [_oid("a", n) for n in range(sizes.principals)]
    groups = [_oid("b", n) for n in range(sizes.groups)]
    membership = {p: rng.sample(groups, rng.randint(1, 4)) for p in principals}
    role_ids = list(ROLE_WEIGHTS)
    weights = list(ROLE_WEIGHTS.values())
    levels = [(subs, 5), (rgs, 15), (workspaces, 50), (endpoints, 30)]

    assignments = []
    for n in range(sizes.assignments):
        holder = rng.choice(groups) if rng.random() < 0.2 else rng.choice(principals)
        pool = rng.choices([lv for lv, _ in levels], weights=[w for _, w in levels])[0]
        role = rng.choices(role_ids, weights=weights)[0]
        assignments.append(RoleAssignment(f"ra-{n}", rng.choice(pool), role, holder))
    denies = [
        DenyAssignment(
            id=f"deny-{n}",
            scope=rng.choice(rgs),
            actions=("*/delete",),
            principal_ids=(EVERYONE,),
            excluded_principal_ids=(rng.choice(principals),),
        )
        for n in range(sizes.denies)
    ]
    started = time.perf_counter()
    policy = Policy(CUSTOM_ROLES, assignments, denies)
    build_seconds = time.perf_counter() - started

    requests = []
    for _ in range(sizes.requests):
        principal = rng.choice(principals)
        scope = rng.choice(endpoints)
        if rng.random() < 0.2:
            scope += "/deployments/blue"
        requests.append((principal, membership[principal], rng.choice(ENDPOINT_ACTIONS), scope))
    return Tenant(policy, requests, build_seconds)


@dataclass(frozen=True)
class Timing:
    name: str
    decisions: int
    p50_us: float
    p99_us: float
    mean_us: float
    allowed_share: float


def measure(
    name: str, decide: Callable[[str, list[str], str, str], Decision], requests: Sequence[Request]
) -> Timing:
    clock = time.perf_counter_ns
    samples: list[int] = []
    allowed = 0
    for principal, groups, action, scope in requests:
        started = clock()
        decision = decide(principal, groups, action, scope)
        samples.append(clock() - started)
        allowed += decision.allowed
    samples.sort()
    return Timing(
        name=name,
        decisions=len(samples),
        p50_us=samples[len(samples) // 2] / 1000,
        p99_us=samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
        mean_us=statistics.fmean(samples) / 1000,
        allowed_share=allowed / len(samples),
    )


def run(sizes: Sizes, seed: int) -> tuple[Tenant, list[Timing]]:
    tenant = build(sizes, seed)
    policy = tenant.policy
    # Warm the scope-parse cache and role memos once, as a running server would be.
    for principal, groups, action, scope in tenant.requests[:1000]:
        policy.authorize(principal, groups, action, scope)
    uncached = measure("uncached", policy.authorize, tenant.requests)
    # Every scope new to the scope-parse cache: the first request for a just-created resource.
    fresh = [
        (principal, groups, action, f"{scope.split('/deployments/')[0]}/deployments/new{n}")
        for n, (principal, groups, action, scope) in enumerate(tenant.requests)
    ]
    cold = measure("uncached, unseen scope", policy.authorize, fresh)
    authorizer = CachedAuthorizer(policy, maxsize=len(tenant.requests) + 1)
    for principal, groups, action, scope in tenant.requests:
        authorizer.authorize(principal, groups, action, scope)
    cached = measure("cached", authorizer.authorize, tenant.requests)
    return tenant, [uncached, cold, cached]


GOALS_US = {"uncached": 200.0, "uncached, unseen scope": 200.0, "cached": 10.0}


def table(sizes: Sizes, tenant: Tenant, timings: Sequence[Timing]) -> str:
    lines = [
        f"assignments={sizes.assignments:,} principals={sizes.principals:,} "
        f"groups={sizes.groups:,} denies={sizes.denies} "
        f"(indexed: {tenant.policy.assignment_count:,}); policy build {tenant.build_seconds:.2f} s",
        "",
        "| path | decisions | p50 µs | p99 µs | mean µs | allowed | goal (p99) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for t in timings:
        goal = GOALS_US[t.name]
        verdict = "met" if t.p99_us <= goal else "MISSED"
        lines.append(
            f"| {t.name} | {t.decisions:,} | {t.p50_us:.1f} | {t.p99_us:.1f} | {t.mean_us:.1f} "
            f"| {t.allowed_share:.0%} | ≤ {goal:g} µs: {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small sizes, finishes in seconds")
    parser.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    parser.add_argument("--seed", type=int, default=20240207)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    tenant, timings = run(sizes, args.seed)
    body = table(sizes, tenant, timings)
    print(body)
    if args.record:
        command = "python bench/authz/run.py" + (" --smoke" if args.smoke else "") + " --record"
        record("authz", body, command)
        print("\nrecorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
