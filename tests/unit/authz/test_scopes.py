"""Scopes: parsing, canonical keys, ancestors on whole steps (reference §1.6)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propylon.authz import (
    ScopeLevel,
    ancestors,
    canonical,
    extension_scope,
    is_within,
    normalize,
    parent,
    parse_scope,
)
from propylon.errors import BadRequest

from . import reference

SUB = "/subscriptions/00000000-0000-0000-0000-000000000001"
RG = f"{SUB}/resourceGroups/rg1"
WS = f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/ws1"
EP = f"{WS}/onlineEndpoints/ep1"
DEP = f"{EP}/deployments/blue"


def test_root_is_its_own_only_ancestor() -> None:
    assert ancestors("/") == ("/",)
    assert parse_scope("/").level is ScopeLevel.ROOT
    assert parent("/") is None


def test_deployment_ancestors_walk_every_resource_step_up_to_root() -> None:
    assert ancestors(DEP) == tuple(s.lower() for s in (DEP, EP, WS, RG, SUB, "/"))


def test_levels_are_recognised() -> None:
    assert parse_scope(SUB).level is ScopeLevel.SUBSCRIPTION
    assert parse_scope(RG).level is ScopeLevel.RESOURCE_GROUP
    assert parse_scope(EP).level is ScopeLevel.RESOURCE
    mg = parse_scope("/providers/Microsoft.Management/managementGroups/mg1")
    assert mg.level is ScopeLevel.MANAGEMENT_GROUP
    assert mg.chain == ("/providers/microsoft.management/managementgroups/mg1", "/")


def test_parsed_endpoint_exposes_its_parts() -> None:
    scope = parse_scope(EP)
    assert scope.subscription_id == "00000000-0000-0000-0000-000000000001"
    assert scope.resource_group == "rg1"
    assert scope.provider == "Microsoft.MachineLearningServices"
    assert scope.resource_types == ("workspaces", "onlineEndpoints")
    assert scope.resource_names == ("ws1", "ep1")
    assert scope.resource_type == "Microsoft.MachineLearningServices/workspaces/onlineEndpoints"
    assert scope.name == "ep1"


def test_canonical_key_ignores_case_and_trailing_slash() -> None:
    assert canonical(EP.upper() + "/") == canonical(EP) == EP.lower()


def test_normalize_keeps_name_casing_but_spells_keywords_canonically() -> None:
    raw = "/SUBSCRIPTIONS/Sub/RESOURCEGROUPS/MyRg/PROVIDERS/Microsoft.Web/sites/App/"
    assert (
        normalize(raw) == "/subscriptions/Sub/resourceGroups/MyRg/providers/Microsoft.Web/sites/App"
    )


def test_a_resource_named_providers_is_a_name_not_a_keyword() -> None:
    scope = f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/providers"
    assert parse_scope(scope).resource_names == ("providers",)
    assert ancestors(scope)[1] == RG.lower()


def test_extension_resource_parent_is_the_scope_it_extends() -> None:
    assignment = f"{WS}/providers/Microsoft.Authorization/roleAssignments/abc"
    assert parent(assignment) == WS.lower()
    assert extension_scope(assignment) == (WS, "abc")
    assert extension_scope("/providers/Microsoft.Authorization/roleDefinitions/g") == ("/", "g")


def test_extension_scope_rejects_a_plain_resource_chain() -> None:
    with pytest.raises(BadRequest):
        extension_scope(f"{EP}/deployments/blue/x/y")
    with pytest.raises(BadRequest):
        extension_scope(SUB)


def test_is_within_respects_segment_boundaries() -> None:
    """§6.2 vector 12: rg1 is not a parent of rg10."""
    assert is_within(EP, RG)
    assert is_within(EP, "/")
    assert is_within(EP, EP.upper())
    assert not is_within(f"{SUB}/resourceGroups/rg10", RG)
    assert not is_within(RG, EP)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "non-empty"),
        ("subscriptions/s", "starts with '/'"),
        ("//", "empty path segment"),
        ("/subscriptions", "subscription id"),
        ("/subscriptions/s/", None),
        ("/subscriptions/s//resourceGroups/rg", "empty path segment"),
        ("/subscriptions/s/resourceGroups", "followed by a name"),
        ("/subscriptions/s/widgets/w", "expected 'providers'"),
        ("/resourceGroups/rg", "expected 'providers'"),
        ("/subscriptions/s/providers/Microsoft.Web", "namespace, a type and a name"),
        ("/subscriptions/s/providers/Microsoft.Web/sites", "namespace, a type and a name"),
        ("/subscriptions/s/providers/Microsoft.Web/sites/a/slots", "has no name"),
        ("/subscriptions/s/providers/Microsoft.Web/providers/x/t/n", "no resource type"),
        ("/subscriptions/../resourceGroups/rg", "'..'"),
        ("/subscriptions/s/resourceGroups/*", "'*'"),
        ("/subscriptions/s?x=1", "'?'"),
        ("/subscriptions/s#frag", "'#'"),
        ("/subscriptions/s\\t", "'\\\\'"),
        ("/subscriptions/a b", "' '"),
        ("/subscriptions/a\nb", "'\\n'"),
        ("/subscriptions/" + "x" * 3000, "at most"),
    ],
)
def test_malformed_scopes_are_bad_requests_saying_why(value: str, why: str | None) -> None:
    if why is None:
        assert parse_scope(value).id == value.rstrip("/")
        return
    with pytest.raises(BadRequest) as raised:
        parse_scope(value)
    assert raised.value.code == "InvalidScope"
    assert raised.value.status == 400
    assert why in raised.value.message


def test_parse_scope_names_the_target_field() -> None:
    with pytest.raises(BadRequest) as raised:
        parse_scope("nope", target="properties.assignableScopes[0]")
    assert raised.value.target == "properties.assignableScopes[0]"


POOL = [
    "/",
    SUB,
    "/subscriptions/00000000-0000-0000-0000-000000000002",
    RG,
    f"{SUB}/resourceGroups/rg10",
    WS,
    f"{RG}/providers/Microsoft.MachineLearningServices/workspaces/ws10",
    EP,
    f"{WS}/onlineEndpoints/ep10",
    DEP,
    "/providers/Microsoft.Management/managementGroups/mg1",
]


@st.composite
def cased(draw: st.DrawFn, values: list[str]) -> str:
    value = draw(st.sampled_from(values))
    flips = draw(st.integers(min_value=0, max_value=2**64))
    chars = [c.upper() if (flips >> (i % 64)) & 1 else c.lower() for i, c in enumerate(value)]
    trailing = draw(st.sampled_from(["", "/"])) if value != "/" else ""
    return "".join(chars) + trailing


@settings(max_examples=200, deadline=None)
@given(scope=cased(POOL), container=cased(POOL))
def test_is_within_agrees_with_string_prefix_reference(scope: str, container: str) -> None:
    assert is_within(scope, container) == reference.is_ancestor(container, scope)
