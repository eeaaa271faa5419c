"""Signing in writes the profile, tokens and secrets 0600 and never prints a secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fake_propylon import SERVER, SUBSCRIPTION, TENANT, FakeServer, Run, output_json
from propylon.cli.session import Dependencies
from propylon.client.profile import ConfigDir
from propylon.client.sign_in import TokenResult

SECRET = "bootstrap-secret-value"


class FakeSignIn:
    """Stands in for MSAL: records the flow used, returns a token and touches the cache."""

    calls: ClassVar[list[tuple[str, tuple[Any, ...]]]] = []

    def __init__(self, home: ConfigDir, authority: str, tenant_id: str, **kwargs: Any) -> None:
        self.home = home
        self.client_id = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
        FakeSignIn.calls.append(("init", (authority, tenant_id, kwargs.get("ca_cert"))))

    def _token(self, username: str | None = None) -> TokenResult:
        self.home.save_token_cache('{"RefreshToken": {"rt": {"secret": "refresh"}}}')
        return TokenResult("eyJhbGciOiJub25lIn0.eyJ0aWQiOiJ0In0.", 2_000_000_000, username=username)

    def client_secret(self, client_id: str, secret: str, scopes: list[str]) -> TokenResult:
        FakeSignIn.calls.append(("client_secret", (client_id, secret, tuple(scopes))))
        return self._token()

    def username_password(self, username: str, password: str, scopes: list[str]) -> TokenResult:
        FakeSignIn.calls.append(("password", (username, password)))
        return self._token(username)

    def device_code(self, scopes: list[str], prompt: Any) -> TokenResult:
        prompt(
            "To sign in, use a web browser to open the page https://idp.test/device "
            "and enter the code ABCD-EFGH to authenticate."
        )
        FakeSignIn.calls.append(("device_code", tuple(scopes)))
        return self._token("alice@contoso.test")


@pytest.fixture
def deps(fake: FakeServer) -> Dependencies:
    FakeSignIn.calls = []
    return Dependencies(transport=fake.transport(), sign_in=FakeSignIn, polling_interval=0)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "server-data"
    (directory / "tls").mkdir(parents=True)
    (directory / "tls" / "ca.pem").write_text("not really a certificate")
    bootstrap = {
        "tenant_id": TENANT,
        "subscription_id": SUBSCRIPTION,
        "resource_group": "default-rg",
        "workspace": "default-ws",
        "admin_client_id": "admin-app",
        "admin_client_secret": SECRET,
        "authority": SERVER,
        "control_plane_url": SERVER,
        "gateway_url": "https://propylon.test:8081",
        "ca_cert": str(directory / "tls" / "ca.pem"),
    }
    (directory / "bootstrap.json").write_text(json.dumps(bootstrap))
    return directory


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_service_principal_login_from_the_data_dir_stores_everything_0600(
    run: Run, home: ConfigDir, deps: Dependencies, data_dir: Path
) -> None:
    result = run("login", "--data-dir", str(data_dir), "--service-principal", obj=deps)
    accounts = output_json(result)
    assert accounts[0]["id"] == SUBSCRIPTION
    assert accounts[0]["tenantId"] == TENANT
    assert accounts[0]["user"] == {"name": "admin-app", "type": "servicePrincipal"}
    assert SECRET not in result.stdout + result.stderr
    assert (
        "client_secret",
        ("admin-app", SECRET, ("https://management.azure.com/.default",)),
    ) in FakeSignIn.calls
    assert FakeSignIn.calls[0] == ("init", (SERVER, TENANT, str(data_dir / "tls" / "ca.pem")))
    assert _mode(home.path) == 0o700
    files = sorted(p.name for p in home.path.iterdir())
    assert files == ["msal_token_cache.json", "profile.json", "service_principal_entries.json"]
    for name in files:
        assert _mode(home.path / name) == 0o600, name
    assert home.load_secret("admin-app", TENANT) == SECRET
    assert SECRET not in (home.path / "profile.json").read_text()
    profile = home.load_profile()
    assert profile is not None
    assert profile.ca_cert == str(data_dir / "tls" / "ca.pem")


def test_device_code_login_prints_the_uri_and_code_on_stderr(
    run: Run, home: ConfigDir, deps: Dependencies
) -> None:
    result = run("login", "--server", SERVER, "--tenant", TENANT, obj=deps)
    assert result.exit_code == 0, result.stderr
    assert "https://idp.test/device" in result.stderr
    assert "ABCD-EFGH" in result.stderr
    profile = home.load_profile()
    assert profile is not None
    assert profile.account.name == "alice@contoso.test"
    assert profile.account.type == "user"
    # No bootstrap: the subscriptions come from GET /subscriptions.
    assert [s.id for s in profile.subscriptions] == [SUBSCRIPTION]


def test_password_login_uses_the_password_grant(
    run: Run, home: ConfigDir, deps: Dependencies
) -> None:
    result = run(
        "login", "--server", SERVER, "-t", TENANT, "-u", "bob@contoso.test", "-p", "pw", obj=deps
    )
    assert result.exit_code == 0, result.stderr
    assert ("password", ("bob@contoso.test", "pw")) in FakeSignIn.calls
    assert "pw" not in result.stdout.replace("propylon", "")


def test_login_without_a_server_is_one_clear_error(
    run: Run, home: ConfigDir, deps: Dependencies
) -> None:
    result = run("login", obj=deps)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "propylon: error: (MissingArgument) which server? pass --server https://HOST:8080 "
        "(or --data-dir of a local server)."
    ]


def test_logout_removes_tokens_and_secrets_but_keeps_defaults(
    run: Run, home: ConfigDir, deps: Dependencies, data_dir: Path
) -> None:
    run("login", "--data-dir", str(data_dir), "--service-principal", obj=deps)
    home.set_defaults({"group": "default-rg"})
    assert run("logout", obj=deps).exit_code == 0
    assert sorted(p.name for p in home.path.iterdir()) == ["config"]
    assert home.defaults() == {"group": "default-rg"}
    again = run("logout", obj=deps)
    assert again.exit_code == 1
    assert "There are no active accounts." in again.stderr


def test_configure_defaults_accepts_az_style_pairs(run: Run, home: ConfigDir) -> None:
    result = run("configure", "--defaults", "group=default-rg", "workspace=default-ws")
    assert result.exit_code == 0, result.stderr
    assert home.defaults() == {"group": "default-rg", "workspace": "default-ws"}
    assert _mode(home.path / "config") == 0o600
    listed = output_json(run("configure", "--list-defaults"))
    assert {"name": "workspace", "value": "default-ws"} in listed
    run("configure", "--defaults", "workspace=")
    assert home.defaults() == {"group": "default-rg"}


def test_environment_overrides_configured_defaults(
    home: ConfigDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    home.set_defaults({"group": "from-file"})
    monkeypatch.setenv("PROPYLON_DEFAULTS_GROUP", "from-env")
    assert home.defaults()["group"] == "from-env"
