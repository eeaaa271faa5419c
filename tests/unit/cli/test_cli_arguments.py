"""The argument forms az users type: traffic splits, --set paths, JSON files."""

from __future__ import annotations

from pathlib import Path

import pytest

from propylon.cli.arguments import apply_set, json_argument, parse_traffic
from propylon.errors import BadRequest


def test_traffic_accepts_spaces_and_commas() -> None:
    assert parse_traffic("blue=90 green=10") == {"blue": 90, "green": 10}
    assert parse_traffic("blue=90,green=10") == {"blue": 90, "green": 10}
    assert parse_traffic("green=0") == {"green": 0}


@pytest.mark.parametrize("text", ["blue", "blue=ninety", "=10"])
def test_malformed_traffic_names_the_flag_and_the_pair(text: str) -> None:
    with pytest.raises(BadRequest, match="--mirror-traffic"):
        parse_traffic(text, flag="--mirror-traffic")


def test_set_creates_nested_fields_and_reads_json_values() -> None:
    document: dict[str, object] = {"name": "blue"}
    apply_set(
        document,
        ["instance_count=2", "request_settings.request_timeout_ms=3000", "auth_mode=aad_token"],
    )
    assert document == {
        "name": "blue",
        "instance_count": 2,
        "request_settings": {"request_timeout_ms": 3000},
        "auth_mode": "aad_token",
    }


def test_set_refuses_to_descend_into_a_scalar() -> None:
    with pytest.raises(BadRequest, match="'name' is not an object"):
        apply_set({"name": "blue"}, ["name.first=x"])


def test_json_argument_reads_inline_at_file_and_plain_paths(tmp_path: Path) -> None:
    path = tmp_path / "role.json"
    path.write_text('{"Name": "r"}')
    assert json_argument('{"Name": "r"}', flag="--x") == {"Name": "r"}
    assert json_argument(f"@{path}", flag="--x") == {"Name": "r"}
    assert json_argument(str(path), flag="--x") == {"Name": "r"}


def test_json_argument_errors_name_the_flag(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"Name": ')
    with pytest.raises(BadRequest, match=r"--role-definition: .*broken\.json is not valid JSON"):
        json_argument(str(broken), flag="--role-definition")
    with pytest.raises(BadRequest, match="no such file"):
        json_argument(str(tmp_path / "absent.json"), flag="--role-definition")
