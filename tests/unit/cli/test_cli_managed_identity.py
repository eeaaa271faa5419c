"""`propylon login --identity` inside a deployment: tokens from IDENTITY_ENDPOINT, through
azure-identity's ManagedIdentityCredential, with nothing secret written to disk."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from fake_propylon import SERVER, SUBSCRIPTION, FakeServer, Run, output_json
from propylon.cli.session import Dependencies
from propylon.client.profile import ConfigDir

HEADER = "per-instance-secret"


class _Identity(BaseHTTPRequestHandler):
    """The App Service managed-identity protocol (reference §5.2.4), as the server serves it."""

    seen: list[tuple[str, str | None]] = []  # noqa: RUF012 — shared with the test on purpose

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        resource = query["resource"][0]
        _Identity.seen.append((resource, self.headers.get("X-IDENTITY-HEADER")))
        body = json.dumps(
            {
                "access_token": f"mi-token-for-{resource}",
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Identity)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/msi/token"
    monkeypatch.setenv("IDENTITY_ENDPOINT", url)
    monkeypatch.setenv("IDENTITY_HEADER", HEADER)
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT"):
        monkeypatch.delenv(name, raising=False)
    _Identity.seen = []
    yield url
    server.shutdown()
    server.server_close()
    thread.join()


def test_login_identity_then_tokens_for_any_resource(
    run: Run, home: ConfigDir, fake: FakeServer, identity_endpoint: str
) -> None:
    deps = Dependencies(transport=fake.transport(), polling_interval=0)
    result = run(
        "login",
        "--identity",
        "--server",
        SERVER,
        "--tenant",
        "t1",
        "--subscription",
        SUBSCRIPTION,
        obj=deps,
    )
    [account] = output_json(result)
    assert account["user"] == {"name": "systemAssignedIdentity", "type": "managedIdentity"}
    token = run(
        "account",
        "get-access-token",
        "--resource",
        "https://ml.azure.com",
        "--query",
        "accessToken",
        "-o",
        "tsv",
        obj=deps,
    )
    assert token.stdout == "mi-token-for-https://ml.azure.com\n"
    assert ("https://management.azure.com", HEADER) in _Identity.seen
    assert ("https://ml.azure.com", HEADER) in _Identity.seen
    assert sorted(p.name for p in home.path.iterdir()) == ["profile.json"]
    assert HEADER not in (home.path / "profile.json").read_text()
