"""Fixtures for the CLI: a fake server, a private config dir, a signed-in profile, a runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fake_propylon import (
    RESOURCE_GROUP,
    SERVER,
    SUBSCRIPTION,
    TENANT,
    WORKSPACE,
    FakeCredential,
    FakeServer,
    Run,
)
from propylon.cli.main import app
from propylon.cli.session import Dependencies
from propylon.client.profile import Account, ConfigDir, Profile, Subscription


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigDir:
    """A fresh ``$PROPYLON_CONFIG_DIR`` with no environment leaking in."""
    for name in ("PROPYLON_CA_CERT", "REQUESTS_CA_BUNDLE", "PROPYLON_SERVER", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "config"
    monkeypatch.setenv("PROPYLON_CONFIG_DIR", str(directory))
    return ConfigDir(directory)


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


@pytest.fixture
def credential() -> FakeCredential:
    return FakeCredential()


@pytest.fixture
def signed_in(home: ConfigDir) -> Profile:
    """A service principal signed in to the fake server, defaults set to its workspace."""
    profile = Profile(
        server=SERVER,
        authority=SERVER,
        tenant_id=TENANT,
        account=Account(name="admin-app", type="servicePrincipal"),
        client_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46",
        subscriptions=[Subscription(id=SUBSCRIPTION, tenant_id=TENANT, name="sub")],
    )
    home.save_profile(profile)
    home.set_defaults({"group": RESOURCE_GROUP, "workspace": WORKSPACE})
    return profile


@pytest.fixture
def run(fake: FakeServer, credential: FakeCredential) -> Run:
    """``run("ml", "online-endpoint", "list")`` → Click's result, stdout and stderr apart."""

    def invoke(*args: str, obj: Dependencies | None = None, input: str | None = None) -> Result:
        deps = obj or Dependencies(
            transport=fake.transport(), credential=credential, polling_interval=0
        )
        return CliRunner().invoke(app, list(args), obj=deps, input=input)

    return invoke
