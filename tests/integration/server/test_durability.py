"""State survives a crash, and secrets never rest in plaintext (issue 2's must-shows)."""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from propylon.testing import RunningServer, wait_until

pytestmark = pytest.mark.slow

API = "api-version=2024-04-01"


def endpoint_url(server: RunningServer, name: str) -> str:
    return f"{server.control_url}{server.workspace_id}/onlineEndpoints/{name}?{API}"


def test_sigkill_during_a_burst_of_writes_leaves_no_half_created_resource(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = RunningServer.start(data)
    token = server.token()
    headers = {"Authorization": f"Bearer {token}"}
    acknowledged: list[str] = []
    stop = threading.Event()

    def create(index: int) -> None:
        if stop.is_set():
            return
        name = f"burst-{index:03d}"
        body = {"location": "local", "properties": {"authMode": "Key"}}
        try:
            with server.client() as client:
                response = client.put(endpoint_url(server, name), json=body, headers=headers)
        except httpx.HTTPError:
            return  # the server died mid-request: the client never heard back
        if response.status_code in (200, 201):
            acknowledged.append(name)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(create, i) for i in range(200)]
        wait_until(lambda: len(acknowledged) >= 10, timeout=120)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        stop.set()
        concurrent.futures.wait(futures)

    restarted = RunningServer.start(data)
    try:
        token = restarted.token()
        with restarted.client(headers={"Authorization": f"Bearer {token}"}) as client:
            listed = client.get(
                f"{restarted.control_url}{restarted.workspace_id}/onlineEndpoints?{API}"
            )
            assert listed.status_code == 200
            names = {item["name"] for item in listed.json()["value"]}
            # Nothing the server acknowledged is lost.
            assert set(acknowledged) <= names
            for name in names:
                # Every endpoint that exists is whole: its keys open and its operation ends.
                keys = client.post(
                    f"{restarted.control_url}{restarted.workspace_id}"
                    f"/onlineEndpoints/{name}/listKeys?{API}"
                )
                assert keys.status_code == 200, keys.text
                assert keys.json()["primaryKey"] != keys.json()["secondaryKey"]

                def settled(name: str = name) -> bool:
                    state = client.get(endpoint_url(restarted, name)).json()
                    return state["properties"]["provisioningState"] in ("Succeeded", "Failed")

                wait_until(settled, timeout=60)
    finally:
        restarted.stop()
    # The database itself passes SQLite's own consistency check.
    with sqlite3.connect(data / "propylon.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def files_containing(root: Path, needles: dict[str, str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if not path.is_file() or path.name == "bootstrap.json":
            continue  # bootstrap.json shows the admin secret once, by design (0600)
        content = path.read_bytes()
        hits.extend(
            f"{what} in {path}" for what, value in needles.items() if value.encode() in content
        )
    return hits


def test_no_key_secret_or_token_rests_in_plaintext(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with RunningServer.start(data) as server:
        admin = {"Authorization": f"Bearer {server.token()}"}
        with server.client(headers=admin) as client:
            for name, mode in (("scan-key", "Key"), ("scan-aml", "AMLToken")):
                created = client.put(
                    endpoint_url(server, name),
                    json={"location": "local", "properties": {"authMode": mode}},
                )
                assert created.status_code in (200, 201), created.text
            base = f"{server.control_url}{server.workspace_id}/onlineEndpoints"
            keys = client.post(f"{base}/scan-key/listKeys?{API}").json()
            aml = client.post(f"{base}/scan-aml/token?{API}").json()["accessToken"]
            app = client.post(
                f"{server.control_url}/v1.0/applications", json={"displayName": "scan-app"}
            ).json()
            secret = client.post(
                f"{server.control_url}/v1.0/applications/{app['id']}/addPassword",
                json={"passwordCredential": {"displayName": "scan"}},
            ).json()["secretText"]
            user_password = "Scan-user-pw-42!"
            client.post(
                f"{server.control_url}/v1.0/users",
                json={
                    "displayName": "Scan",
                    "userPrincipalName": "scan@propylon.local",
                    "passwordProfile": {"password": user_password},
                    "accountEnabled": True,
                },
            ).raise_for_status()
        app_token = server.token(
            "https://ml.azure.com", client_id=app["appId"], client_secret=secret
        )
        needles = {
            "primary key": keys["primaryKey"],
            "secondary key": keys["secondaryKey"],
            "aml_token": aml,
            "client secret": secret,
            "user password": user_password,
            "access token": app_token,
            "admin secret": server.bootstrap["admin_client_secret"],
        }
    assert files_containing(data, needles) == []
