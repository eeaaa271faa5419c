"""`account show` and `account get-access-token` print what az prints."""

from __future__ import annotations

from fake_propylon import SUBSCRIPTION, TENANT, FakeCredential, Run, output_json
from propylon.client.profile import Profile


def test_get_access_token_has_az_fields(
    run: Run, signed_in: Profile, credential: FakeCredential
) -> None:
    body = output_json(run("account", "get-access-token", "--resource", "https://ml.azure.com"))
    assert set(body) == {
        "accessToken",
        "expiresOn",
        "expires_on",
        "subscription",
        "tenant",
        "tokenType",
    }
    assert body["accessToken"] == "token:https://ml.azure.com/.default"
    assert body["tenant"] == TENANT
    assert body["subscription"] == SUBSCRIPTION
    assert body["tokenType"] == "Bearer"
    assert credential.scopes == ["https://ml.azure.com/.default"]


def test_seed_token_export_prints_only_the_token(run: Run, signed_in: Profile) -> None:
    result = run(
        "account",
        "get-access-token",
        "--resource",
        "https://ml.azure.com",
        "--query",
        "accessToken",
        "-o",
        "tsv",
    )
    assert result.stdout == "token:https://ml.azure.com/.default\n"


def test_the_default_resource_is_the_control_plane(run: Run, signed_in: Profile) -> None:
    body = output_json(run("account", "get-access-token"))
    assert body["accessToken"] == "token:https://management.azure.com/.default"


def test_account_show(run: Run, signed_in: Profile) -> None:
    body = output_json(run("account", "show"))
    assert body["id"] == SUBSCRIPTION
    assert body["user"] == {"name": "admin-app", "type": "servicePrincipal"}


def test_commands_need_a_sign_in(run: Run, home: object) -> None:
    result = run("account", "show")
    assert result.exit_code == 1
    assert result.stderr == (
        "propylon: error: (NotSignedIn) Please run `propylon login` to set up an account.\n"
    )
