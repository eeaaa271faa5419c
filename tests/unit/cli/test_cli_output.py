"""Output formats and --query behave as az's do, so scripts written for az keep working."""

from __future__ import annotations

import json

import pytest
import yaml

from propylon.cli.output import OutputFormat, render
from propylon.errors import BadRequest

KEYS = {"primaryKey": "pk", "secondaryKey": "sk"}
ROWS = [
    {"name": "blue", "instance_count": 1, "traffic": {"blue": 100}, "ready": True},
    {"name": "green", "instance_count": 2, "traffic": {}, "ready": None},
]


def test_json_is_indented_and_round_trips() -> None:
    assert json.loads(render(ROWS, "json")) == ROWS


def test_tsv_with_query_prints_the_bare_value() -> None:
    assert render(KEYS, "tsv", "primaryKey") == "pk\n"


def test_tsv_prints_one_line_per_item_with_values_in_key_order() -> None:
    assert render(ROWS, "tsv") == "1\tblue\tTrue\t\n2\tgreen\tNone\t\n"


def test_json_keys_are_sorted_as_az_prints_them() -> None:
    assert render({"b": 1, "a": 2}, "json") == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_tsv_of_a_list_of_scalars_prints_one_per_line() -> None:
    assert render(ROWS, "tsv", "[].name") == "blue\ngreen\n"


def test_json_query_of_a_scalar_prints_a_json_string() -> None:
    # `--query "[0].id" | tr -d '"'` in the seed relies on the quotes being there.
    assert render([{"id": "/x"}], "json", "[0].id") == '"/x"\n'


def test_table_shows_scalar_columns_with_title_case_headers() -> None:
    lines = render(ROWS, "table").splitlines()
    assert lines[0].split() == ["Name", "Instance", "Count", "Ready"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["blue", "1", "True"]


def test_table_headers_keep_acronyms_whole() -> None:
    rows = [{"AzureMLWorkspaceName": "ws", "XMSClientRequestId": "r", "modelID": "m"}]
    headers = [h.strip() for h in render(rows, "table").splitlines()[0].split("  ") if h.strip()]
    assert headers == ["Azure ML Workspace Name", "XMS Client Request Id", "Model ID"]


def test_table_transform_applies_without_query_only() -> None:
    transform = lambda rows: [{"Only": r["name"]} for r in rows]  # noqa: E731
    assert render(ROWS, "table", table_transform=transform).splitlines()[0] == "Only"
    assert "Name" in render(ROWS, "table", "[].{Name: name}", table_transform=transform)


def test_yaml_and_none() -> None:
    assert yaml.safe_load(render(KEYS, "yaml")) == KEYS
    assert render(KEYS, OutputFormat.NONE) == ""


def test_colored_jsonc_still_contains_the_data() -> None:
    text = render(KEYS, "jsonc", color=True)
    assert "\x1b[" in text
    assert "primaryKey" in text


def test_a_malformed_query_is_a_bad_request_naming_it() -> None:
    with pytest.raises(BadRequest, match=r"\[0\.id"):
        render(ROWS, "json", "[0.id")
