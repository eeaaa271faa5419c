"""Action patterns: case-insensitive, '*' spans '/', one '*' per custom pattern (reference §1.2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propylon.authz import PatternSet, action_matches, compile_pattern, validate_action_pattern
from propylon.errors import BadRequest

from . import reference

ML = "Microsoft.MachineLearningServices"
SCORE = f"{ML}/workspaces/onlineEndpoints/score/action"


def test_star_spans_slashes_so_workspace_star_action_covers_scoring() -> None:
    assert action_matches(f"{ML}/workspaces/*/action", SCORE)


def test_star_alone_matches_everything() -> None:
    assert action_matches("*", SCORE)
    assert action_matches("*", "")


def test_star_read_matches_reads_of_every_provider_but_not_actions() -> None:
    assert action_matches("*/read", f"{ML}/workspaces/onlineEndpoints/read")
    assert action_matches("*/read", "Microsoft.Storage/storageAccounts/read")
    assert not action_matches("*/read", SCORE)
    assert not action_matches("*/read", f"{ML}/workspaces/onlineEndpoints/readme")


def test_trailing_star_covers_child_resource_types() -> None:
    assert action_matches(
        "Microsoft.CostManagement/exports/*", "Microsoft.CostManagement/exports/run/action"
    )
    assert not action_matches(
        "Microsoft.CostManagement/exports/*", "Microsoft.CostManagement/exportsX"
    )


def test_middle_star_may_also_stand_for_a_single_slash() -> None:
    """The open question of reference §1.2 (§6.2 vector 20): ``X/*/read`` covers ``X/read``."""
    assert action_matches(f"{ML}/workspaces/*/read", f"{ML}/workspaces/read")
    assert action_matches(f"{ML}/workspaces/*/read", f"{ML}/workspaces/x/read")
    assert not action_matches(f"{ML}/workspaces/*/read", f"{ML}/workspacesread")
    assert not action_matches(f"{ML}/workspaces/*/read", f"{ML}/workspaces/xread")


def test_matching_ignores_case_of_pattern_and_action() -> None:
    assert action_matches(
        f"{ML}/workspaces/onlineEndpoints/listKeys/action",
        f"{ML.lower()}/WORKSPACES/onlineendpoints/LISTKEYS/action",
    )
    assert action_matches(
        "MICROSOFT.AUTHORIZATION/*/WRITE", "microsoft.authorization/roleassignments/write"
    )


def test_dots_in_patterns_are_literal_not_regex() -> None:
    assert not action_matches("Microsoft.Web/sites/read", "MicrosoftXWeb/sites/read")


def test_prefix_and_suffix_may_not_overlap() -> None:
    assert not action_matches("ab*ba", "aba")
    assert action_matches("ab*ba", "abba")


def test_patterns_with_several_stars_still_match_for_system_definitions() -> None:
    assert action_matches(
        "Microsoft.CostManagement/*/query/*", "Microsoft.CostManagement/x/query/y/z"
    )
    assert action_matches("Microsoft.CostManagement/*/query/*", "Microsoft.CostManagement/query/y")
    assert not action_matches(
        "Microsoft.CostManagement/*/query/*", "Microsoft.CostManagement/xquery/y"
    )


def test_compile_pattern_is_cached() -> None:
    assert compile_pattern("Microsoft.X/*") is compile_pattern("Microsoft.X/*")


def test_pattern_set_reports_the_pattern_as_written() -> None:
    patterns = PatternSet(["Microsoft.A/b/read", "Microsoft.A/*/write"])
    assert patterns.match("microsoft.a/b/read") == "Microsoft.A/b/read"
    assert patterns.match("microsoft.a/x/y/write") == "Microsoft.A/*/write"
    assert patterns.match("microsoft.a/b/delete") is None
    assert not PatternSet([])


def test_two_wildcards_are_rejected_with_arm_code_and_message() -> None:
    """§6.2 vector 16, MicrosoftDocs/azure-docs#74428."""
    with pytest.raises(BadRequest) as raised:
        validate_action_pattern("Microsoft.CostManagement/*/query/*", target="actions[0]")
    assert raised.value.code == "InvalidActionOrNotAction"
    assert raised.value.target == "actions[0]"
    assert raised.value.message == (
        "'Microsoft.CostManagement/*/query/*' contains multiple wildcards. Only one is allowed."
    )


@pytest.mark.parametrize("bad", ["", "   ", " Microsoft.A/read", "Microsoft.A/\nread", 7, None])
def test_empty_or_malformed_patterns_are_rejected(bad: object) -> None:
    with pytest.raises(BadRequest) as raised:
        validate_action_pattern(bad, target="notActions[1]")
    assert raised.value.code == "InvalidActionOrNotAction"
    assert raised.value.target == "notActions[1]"


def test_one_wildcard_is_accepted() -> None:
    assert validate_action_pattern("*/read", target="x") == "*/read"


SMALL = st.text(alphabet="aB/.*", max_size=7)


@settings(max_examples=300, deadline=None)
@given(pattern=SMALL, action=st.text(alphabet="Ab/.*", max_size=8))
def test_compiled_matching_agrees_with_regex_reference(pattern: str, action: str) -> None:
    assert action_matches(pattern, action) == reference.match(pattern, action)
    assert (PatternSet([pattern]).match(action.lower()) is not None) == reference.match(
        pattern, action
    )
