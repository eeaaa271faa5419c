"""`ad` commands speak Graph v1.0 shapes; create-for-rbac shows its secret once."""

from __future__ import annotations

from fake_propylon import TENANT, FakeServer, Run, output_json
from propylon.client.profile import Profile


def test_user_create_sends_a_graph_body(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    user = output_json(
        run(
            "ad",
            "user",
            "create",
            "--display-name",
            "Bob",
            "--user-principal-name",
            "bob@contoso.test",
            "--password",
            "Pa55word!",
        )
    )
    assert user["userPrincipalName"] == "bob@contoso.test"
    [post] = fake.sent("POST", "/v1.0/users")
    assert fake.body_of(post) == {
        "accountEnabled": True,
        "displayName": "Bob",
        "userPrincipalName": "bob@contoso.test",
        "mailNickname": "bob",
        "passwordProfile": {"password": "Pa55word!", "forceChangePasswordNextSignIn": False},
    }
    # The directory takes control-plane tokens.
    assert post.headers["authorization"] == "Bearer token:https://management.azure.com/.default"
    shown = output_json(run("ad", "user", "show", "--id", "bob@contoso.test"))
    assert shown["id"] == user["id"]


def test_group_membership_by_group_name(run: Run, signed_in: Profile, fake: FakeServer) -> None:
    group = output_json(
        run("ad", "group", "create", "--display-name", "scorers", "--mail-nickname", "scorers")
    )
    user_id = run(
        "ad", "user", "show", "--id", "alice@contoso.test", "--query", "id", "-o", "tsv"
    ).stdout.strip()
    assert (
        run("ad", "group", "member", "add", "-g", "scorers", "--member-id", user_id).exit_code == 0
    )
    [ref] = fake.sent("POST", "/members/$ref")
    assert fake.body_of(ref) == {
        "@odata.id": f"https://propylon.test:8080/v1.0/directoryObjects/{user_id}"
    }
    members = output_json(run("ad", "group", "member", "list", "-g", group["id"]))
    assert [m["id"] for m in members] == [user_id]
    run("ad", "group", "member", "remove", "-g", "scorers", "--member-id", user_id)
    assert output_json(run("ad", "group", "member", "list", "-g", "scorers")) == []


def test_create_for_rbac_prints_the_secret_once_with_a_warning(
    run: Run, signed_in: Profile, fake: FakeServer
) -> None:
    result = run("ad", "sp", "create-for-rbac", "--name", "ci-scorer")
    body = output_json(result)
    assert body["displayName"] == "ci-scorer"
    assert body["password"] == "s3cr3t-value"
    assert body["tenant"] == TENANT
    assert "credentials that you must protect" in result.stderr
    sp = output_json(run("ad", "sp", "show", "--id", body["appId"]))
    assert sp["appId"] == body["appId"]


def test_missing_user_is_one_line(run: Run, signed_in: Profile) -> None:
    result = run("ad", "user", "show", "--id", "nobody@contoso.test")
    assert result.exit_code == 1
    assert result.stderr.startswith("propylon: error: (Request_ResourceNotFound) ")
    assert len(result.stderr.splitlines()) == 1
