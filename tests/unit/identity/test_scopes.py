"""Entra's reading of scope= and resource= (reference §3.7, §5.2.1)."""

from __future__ import annotations

import pytest

from propylon.errors import OAuthError
from propylon.identity.scopes import parse_scope

ML = "https://ml.azure.com"


def test_default_scope_with_oidc_extras() -> None:
    scope = parse_scope(f"{ML}/.default offline_access openid profile")
    assert (scope.resource, scope.is_default, scope.openid, scope.offline_access) == (
        ML,
        True,
        True,
        True,
    )
    assert scope.granted(user=False) == f"{ML}/.default"
    assert scope.granted(user=True) == f"{ML}/user_impersonation {ML}/.default"
    assert scope.delegated_permissions() == ("user_impersonation",)
    assert parse_scope(scope.text) == scope


def test_a_resource_ending_in_a_slash_is_written_with_two() -> None:
    assert parse_scope(f"{ML}//.default").resource == f"{ML}/"


def test_named_permissions_become_scp() -> None:
    scope = parse_scope("api://app/read api://app/write")
    assert scope.resource == "api://app"
    assert scope.delegated_permissions() == ("read", "write")


def test_v1_resource_parameter() -> None:
    scope = parse_scope("openid", f"{ML}/")
    assert (scope.resource, scope.is_default, scope.openid) == (f"{ML}/", True, True)
    assert scope.granted(user=False) == f"{ML}//.default"
    assert parse_scope(f"{ML}/.default", ML).resource == ML


@pytest.mark.parametrize(
    ("scope", "resource", "code"),
    [
        (f"{ML}/.default https://management.azure.com/.default", None, "invalid_scope"),
        (f"{ML}/.default {ML}/user_impersonation", None, "invalid_scope"),
        ("User.Read", None, "invalid_scope"),
        ("/.default", None, "invalid_scope"),
        (f"{ML}/.default", "https://management.azure.com", "invalid_request"),
    ],
)
def test_invalid_scopes(scope: str, resource: str | None, code: str) -> None:
    with pytest.raises(OAuthError) as caught:
        parse_scope(scope, resource)
    assert caught.value.code == code


def test_refresh_without_resource_takes_the_stored_one() -> None:
    stored = parse_scope(f"{ML}/.default offline_access")
    merged = parse_scope("openid").with_resource_of(stored)
    assert merged.resource == ML
    assert merged.openid
    assert merged.offline_access
