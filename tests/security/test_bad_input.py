"""Bad input: schemathesis over the control plane's OpenAPI, and hand-made abuse of the token
endpoint and the gateway (malformed and huge headers, huge and truncated bodies, invalid UTF-8,
slow clients) — never a 5xx, never a crash, never a hang, and a JSON error body on every 4xx.

Every request here has a client timeout (10 s at most), every loop a bound in count and time.
``PROPYLON_FULL_FUZZ=1`` runs 200 schemathesis examples per operation instead of 20.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from live_platform import LivePlatform, SecretLedger, process_tree
from propylon.testing import RunningServer

pytestmark = pytest.mark.slow

FULL = os.environ.get("PROPYLON_FULL_FUZZ") == "1"
EXAMPLES = 200 if FULL else 20
TIMEOUT = 10.0

# The contract of every error answer (DESIGN "Errors"; Graph's shape is the same; the OAuth2
# endpoints answer RFC 6749 §5.2 bodies). The served document does not declare error answers,
# so the fuzzed copy adds this as each operation's "4XX" response.
ERROR_BODY = {
    "anyOf": [
        {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "error_description": {"type": "string"},
            },
        },
    ]
}


def control_plane_document() -> dict[str, Any]:
    """The control port's OpenAPI document, built in-process from the routers the server serves
    (schemathesis parametrises at collection time, before any server runs);
    ``test_the_fuzzed_document_is_the_served_one`` checks it against the live one."""
    from fastapi import FastAPI

    from propylon.authz import routes as authz_routes
    from propylon.control import router as control_router
    from propylon.identity import routes as identity_routes

    app = FastAPI(title="Propylon control plane")
    app.include_router(authz_routes.router())
    app.include_router(identity_routes.router())
    app.include_router(control_router())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate operation ids of the OAuth2 aliases
        document: dict[str, Any] = app.openapi()
    return document


def _with_error_contract(document: dict[str, Any]) -> dict[str, Any]:
    fuzzed = json.loads(json.dumps(document))
    for operations in fuzzed["paths"].values():
        for operation in operations.values():
            operation["responses"]["4XX"] = {
                "description": "An error (ARM, Graph or OAuth2 body).",
                "content": {"application/json": {"schema": ERROR_BODY}},
            }
    return fuzzed


SCHEMA = schemathesis.openapi.from_dict(_with_error_contract(control_plane_document()))
SCHEMA.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], database="none"
)
# Every answer: no 5xx; a schema-violating request is refused; an undeclared method gets 405.
ALWAYS = [
    st_checks.not_a_server_error,
    st_checks.negative_data_rejection,
    st_checks.unsupported_method,
    st_checks.response_headers_conformance,
]
# Errors, on top: the error contract above, as JSON.
ERRORS = [
    *ALWAYS,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]
# Not checked, with the reason:
# * positive_data_acceptance — the schemas carry types, not the rules (names, GUIDs, existing
#   references); a schema-valid body may rightly be refused with 400;
# * allow_header_conformance — Starlette's 405 names the methods of the first route matching the
#   path only (our routers declare one route per method); reported, not fixed here;
# * success answers the document does not declare (204 on DELETE, 200 on re-PUT, an empty 202
#   declared as JSON) are collected and reported by the last test, not failed: the document is
#   FastAPI's default per route and does not list every success status.


@dataclass
class Fuzzing:
    live: LivePlatform
    session: requests.Session
    real: dict[str, str]
    cases: list[int]
    undocumented: set[str]


@pytest.fixture(scope="module")
def ledger() -> SecretLedger:
    return SecretLedger()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, ledger: SecretLedger) -> Iterator[LivePlatform]:
    data = tmp_path_factory.mktemp("fuzz") / "data"
    with RunningServer.start(data) as server:
        platform = LivePlatform(server, ledger)
        try:
            code = platform.echo_code()
            platform.endpoint("fuzz-key", "Key")
            platform.deploy("fuzz-key", "blue", code)
            platform.endpoint("fuzz-target", "Key")
            platform.wait_scoring("fuzz-key", platform.keys("fuzz-key")["primaryKey"])
            yield platform
        finally:
            platform.close()


@pytest.fixture(scope="module")
def fuzzing(live: LivePlatform) -> Iterator[Fuzzing]:
    session = requests.Session()
    session.headers["Authorization"] = live.headers()["Authorization"]
    real = {
        "subscription_id": live.subscription,
        "subscription": live.subscription,
        "resource_group": live.resource_group,
        "group": live.resource_group,
        "workspace": live.workspace,
        "tenant": live.tenant,
        "endpoint": "fuzz-target",
        "location": "local",
    }
    yield Fuzzing(live, session, real, [], set())
    session.close()


def _deepen(case: Any, real: dict[str, str]) -> None:
    """Half the cases (chosen by the drawn value, so reproducible) get the real subscription,
    workspace, tenant… so that bodies reach validation instead of a 404 on the parents. The
    workspace and its resource group themselves are only ever read for real (a fuzzed PUT could
    switch on disableLocalAuth for the tests that follow); endpoint operations hit
    ``fuzz-target``, which exists to be fuzzed, deleted or not."""
    params = case.path_parameters or {}
    for name, value in list(params.items()):
        if name not in real or zlib.crc32(repr(value).encode()) % 2:
            continue
        itself = case.path.endswith(f"{{{name}}}") and name in (
            "resource_group",
            "workspace",
            "group",
        )
        if not itself or case.method.upper() == "GET":
            params[name] = real[name]


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_control_plane_answers_generated_requests_per_its_contract(
    case: Any, fuzzing: Fuzzing
) -> None:
    _deepen(case, fuzzing.real)
    fuzzing.cases.append(1)
    response = case.call(
        base_url=fuzzing.live.control,
        session=fuzzing.session,
        timeout=TIMEOUT,
        verify=fuzzing.live.server.ca_cert,
    )
    if response.status_code >= 400:
        case.validate_response(response, checks=ERRORS)
        return
    declared = case.operation.definition.raw.get("responses", {})
    if str(response.status_code) not in declared or not response.content:
        what = "" if response.content else " (empty body)"
        fuzzing.undocumented.add(f"{case.method} {case.path} -> {response.status_code}{what}")
        case.validate_response(response, checks=ALWAYS)
    else:
        case.validate_response(response, checks=[*ALWAYS, st_checks.response_schema_conformance])


def test_the_fuzzed_document_is_the_served_one(live: LivePlatform) -> None:
    served = live.http.get(live.url("/openapi.json")).json()
    built = control_plane_document()
    assert {(path, method) for path, methods in served["paths"].items() for method in methods} == {
        (path, method) for path, methods in built["paths"].items() for method in methods
    }
    assert served["components"]["schemas"] == built["components"]["schemas"]


# --- raw HTTP against the gateway and the token endpoint ---------------------------------------


def _raw(live: LivePlatform, port: int, data: bytes, *, close_after: bool = False) -> bytes:
    """Send bytes over TLS as they are; what came back within the timeout (b"" if closed)."""
    context = ssl.create_default_context(cafile=live.server.ca_cert)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as plain,
        context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        if close_after:
            return b""
        received = b""
        deadline = time.monotonic() + TIMEOUT
        with contextlib.suppress(OSError):
            while time.monotonic() < deadline:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                received += chunk
                if _complete(received):
                    break
        return received


def _complete(received: bytes) -> bool:
    head, separator, body = received.partition(b"\r\n\r\n")
    if not separator:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return True


def _status(received: bytes) -> int | None:
    if not received.startswith(b"HTTP/"):
        return None
    return int(received.split(b" ", 2)[1])


def _request(method: str, path: bytes, headers: list[bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} ".encode() + path + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _raw_cases(score: bytes, key: bytes) -> dict[str, tuple[bytes, bool]]:
    auth = b"Authorization: Bearer " + key
    json_type = b"Content-Type: application/json"
    return {
        "garbage request line": (b"\x00\x01\x02\xff garbage\r\n\r\n", False),
        "unknown HTTP version": (
            _request("POST", score, [auth]).replace(b"HTTP/1.1", b"HTTP/9.9", 1),
            False,
        ),
        "header without a colon": (_request("POST", score, [auth, b"NoColonHere"]), False),
        "obsolete line folding": (_request("POST", score, [auth, b"X-A: a", b" folded"]), False),
        "NUL in a header value": (_request("POST", score, [auth, b"X-A: a\x00b"]), False),
        "invalid UTF-8 in the path": (
            _request("POST", score.replace(b"/score", b"\xff\xfe/score"), [auth]),
            False,
        ),
        "invalid UTF-8 in a header value": (
            _request("POST", score, [auth, b"X-Ms-Client-Request-Id: \xff\xfe\xfd"]),
            False,
        ),
        "invalid UTF-8 in a JSON body": (
            _request("POST", score, [auth, json_type, b"Content-Length: 11"], b'{"a": "\xff\xfe"}'),
            False,
        ),
        "Content-Length and Transfer-Encoding both": (
            _request(
                "POST",
                score,
                [auth, b"Content-Length: 4", b"Transfer-Encoding: chunked"],
                b"0\r\n\r\n",
            ),
            False,
        ),
        "two different Content-Lengths": (
            _request("POST", score, [auth, b"Content-Length: 2", b"Content-Length: 3"], b"{}"),
            False,
        ),
        "negative Content-Length": (
            _request("POST", score, [auth, b"Content-Length: -1"], b"{}"),
            False,
        ),
        "non-numeric Content-Length": (
            _request("POST", score, [auth, b"Content-Length: lots"], b"{}"),
            False,
        ),
        "body shorter than Content-Length, then close": (
            _request("POST", score, [auth, b"Content-Length: 100"], b"{}"),
            True,
        ),
        "truncated chunked body, then close": (
            _request("POST", score, [auth, b"Transfer-Encoding: chunked"], b"5\r\nab"),
            True,
        ),
        "invalid chunk size": (
            _request(
                "POST", score, [auth, b"Transfer-Encoding: chunked"], b"zz\r\nab\r\n0\r\n\r\n"
            ),
            False,
        ),
        "chunked body over the size limit": (
            _request(
                "POST",
                score,
                [auth, b"Transfer-Encoding: chunked"],
                b"".join(b"10000\r\n" + b"a" * 0x10000 + b"\r\n" for _ in range(32)) + b"0\r\n\r\n",
            ),
            False,
        ),
        "two Authorization headers": (
            _request("POST", score, [auth, b"Authorization: Bearer other"], b""),
            False,
        ),
        "Expect: 100-continue, no body, close": (
            _request("POST", score, [auth, b"Expect: 100-continue", b"Content-Length: 10"]),
            True,
        ),
        "absolute-form target of another host": (
            _request("POST", b"https://evil.example" + score, [auth, b"Content-Length: 2"], b"{}"),
            False,
        ),
        "HTTP/1.0 without Host": (b"POST " + score + b" HTTP/1.0\r\n" + auth + b"\r\n\r\n", False),
        "100 KiB request target": (_request("POST", score + b"?" + b"a" * 102400, [auth]), False),
        "5,000 headers": (
            _request("POST", score, [auth, *(b"X-H%d: v" % n for n in range(5000))]),
            False,
        ),
        "1 MiB header": (_request("POST", score, [auth, b"X-Big: " + b"a" * (1 << 20)]), False),
        "unknown method": (_request("BREW", score, [auth]), False),
        "pipelined requests": (
            _request("POST", score, [auth, json_type, b"Content-Length: 2"], b"{}") * 3,
            False,
        ),
    }


RAW_NAMES = list(_raw_cases(b"/x", b"k"))


@pytest.fixture(scope="module")
def targets(live: LivePlatform) -> dict[str, tuple[int, bytes, bytes]]:
    key = live.keys("fuzz-key")["primaryKey"].encode()
    return {
        "gateway": (live.server.gateway_port, b"/endpoints/fuzz-key/score", key),
        "token endpoint": (
            live.server.port,
            f"/{live.tenant}/oauth2/v2.0/token".encode(),
            b"not-a-token",
        ),
    }


@pytest.mark.parametrize("target", ["gateway", "token endpoint"])
@pytest.mark.parametrize("name", RAW_NAMES)
def test_malformed_http_never_gets_a_server_error(
    live: LivePlatform, targets: dict[str, tuple[int, bytes, bytes]], name: str, target: str
) -> None:
    port, path, key = targets[target]
    data, close_after = _raw_cases(path, key)[name]
    started = time.monotonic()
    received = _raw(live, port, data, close_after=close_after)
    assert time.monotonic() - started < TIMEOUT + 2  # no hang
    status = _status(received)
    assert status is None or status < 500, received[:500]
    # 424 relays the model's own body; every other error is the platform's JSON error body.
    if status is not None and status >= 400 and status != 424 and b"\r\n\r\n" in received:
        body = received.split(b"\r\n\r\n", 1)[1]
        if body and b"content-type: application/json" in received.lower():
            assert "error" in json.loads(body.split(b"HTTP/1.1")[0])


def _token_form(**fields: str) -> dict[str, str]:
    return fields


TOKEN_BODIES: dict[str, tuple[dict[str, str] | bytes | None, str | None]] = {
    "empty body": (None, None),
    "no grant_type": (_token_form(client_id="x", client_secret="y"), None),
    "unknown grant_type": (_token_form(grant_type="hack"), None),
    "client_credentials without a client": (_token_form(grant_type="client_credentials"), None),
    "scope of 4,000 characters": (
        _token_form(grant_type="client_credentials", client_id="x", scope="s" * 4000),
        None,
    ),
    "client secret of 100 KiB": (
        _token_form(grant_type="client_credentials", client_id="x", client_secret="s" * 102400),
        None,
    ),
    "garbage client assertion": (
        _token_form(
            grant_type="client_credentials",
            client_id="x",
            client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion="a.b.c",
        ),
        None,
    ),
    "JSON instead of a form": (b'{"grant_type": "client_credentials"}', "application/json"),
    "multipart form": (
        b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nhack\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "invalid percent-encoding": (
        b"grant_type=%zz&client_id=%",
        "application/x-www-form-urlencoded",
    ),
    "invalid UTF-8 in the form": (
        b"grant_type=client_credentials&client_id=\xff\xfe&client_secret=\xc3",
        "application/x-www-form-urlencoded",
    ),
    "repeated grant_type": (
        b"grant_type=password&grant_type=client_credentials",
        "application/x-www-form-urlencoded",
    ),
    "a 16 MiB form": (b"a=" + b"x" * (16 << 20), "application/x-www-form-urlencoded"),
    "device code that was never issued": (
        _token_form(
            grant_type="urn:ietf:params:oauth:grant-type:device_code",
            client_id="04b07795-8ddb-461a-bbee-02f9e1bf7b46",
            device_code="nope",
        ),
        None,
    ),
    "refresh token that is garbage": (
        _token_form(grant_type="refresh_token", client_id="x", refresh_token="\u202e\u0000\ufffd"),
        None,
    ),
}


@pytest.mark.parametrize("name", list(TOKEN_BODIES))
def test_the_token_endpoint_answers_bad_requests_with_an_oauth_error(
    live: LivePlatform, name: str
) -> None:
    body, content_type = TOKEN_BODIES[name]
    url = f"{live.control}/{live.tenant}/oauth2/v2.0/token"
    headers = {"Content-Type": content_type} if content_type else {}
    if isinstance(body, dict):
        answer = live.http.post(url, data=body, timeout=TIMEOUT)
    else:
        answer = live.http.post(url, content=body or b"", headers=headers, timeout=TIMEOUT)
    assert 400 <= answer.status_code < 500, answer.text[:300]
    assert isinstance(answer.json()["error"], str)
    assert "Traceback" not in answer.text


TENANT_PATHS = ["..%2F..%2Fetc%2Fpasswd", "%00", "a" * 5000, "common%20OR%201%3D1", "\u00e9\u4e2d"]


@pytest.mark.parametrize("tenant", TENANT_PATHS, ids=lambda t: t[:24])
def test_the_token_endpoint_refuses_strange_tenants(live: LivePlatform, tenant: str) -> None:
    answer = live.http.post(
        f"{live.control}/{tenant}/oauth2/v2.0/token",
        data={"grant_type": "client_credentials", "client_id": "x", "client_secret": "y"},
        timeout=TIMEOUT,
    )
    assert 400 <= answer.status_code < 500, answer.text[:300]


AUTHORIZATION_VALUES = [
    "Bearer",
    "Bearer ",
    "Bearer    ",
    "Basic dXNlcjpwYXNz",
    "Digest username=x",
    "Bearer a b c",
    "bearer\tsomething",
    "Bearer " + "x" * 40000,
    "Bearer \x7f\x01",
    "Bearer ....",
    "Bearer e30.e30.",
    "Bearer eyJhbGciOiJub25lIn0.e30.",
    "Bearer " + "A" * 3 + "." * 5000,
    "Bearer \u00e9\u00e8",
]


@pytest.mark.parametrize("value", AUTHORIZATION_VALUES, ids=lambda v: repr(v[:20]))
@pytest.mark.parametrize("header", ["authorization", "api-key"])
def test_the_gateway_answers_malformed_credentials_with_401(
    live: LivePlatform, header: str, value: str
) -> None:
    raw = value.encode("utf-8")
    if header == "api-key":
        raw = raw.removeprefix(b"Bearer").strip() or b"x"
    request = _request(
        "POST",
        b"/endpoints/fuzz-key/score",
        [header.encode() + b": " + raw, b"Content-Length: 2"],
        b"{}",
    )
    received = _raw(live, live.server.gateway_port, request)
    # Whitespace-only values may be dropped by the HTTP parser: then there is no credential.
    status = _status(received)
    assert status in (400, 401, 429), received[:300]
    # 400 is the HTTP parser's own plain-text answer to a control character in a header.
    assert b'"error"' in received or b"Invalid HTTP request" in received


BODIES = {
    "10 MiB body": b"x" * (10 << 20),
    "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    "invalid UTF-8 JSON": b'{"a": "\xff\xfe\xfd"}',
    "NUL bytes": b"\x00" * 1000,
    "a number of 100,000 digits": b"9" * 100_000,
}


@pytest.mark.parametrize("name", list(BODIES))
@pytest.mark.parametrize("plane", ["gateway", "control"])
def test_strange_bodies_get_a_4xx_or_a_model_answer(
    live: LivePlatform, plane: str, name: str
) -> None:
    body = BODIES[name]
    if plane == "gateway":
        key = live.keys("fuzz-key")["primaryKey"]
        answer = live.http.post(
            live.score_url("fuzz-key"),
            content=body,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
        # The echo model answers what it can; a model failure is 424, not a gateway 5xx.
        assert answer.status_code in (200, 413, 424), answer.text[:300]
    else:
        answer = live.http.put(
            live.url(live.endpoint_id("fuzz-body")),
            params={"api-version": "2024-04-01"},
            content=body,
            headers={**live.headers(), "Content-Type": "application/json"},
            timeout=TIMEOUT,
        )
        assert 400 <= answer.status_code < 500, answer.text[:300]
        assert answer.json()["error"]["code"]


def _peak_growth(pid: int, action: Callable[[], bytes]) -> tuple[bytes, int]:
    """What ``action`` returned, and how far the peak resident size of process ``pid`` rose
    above its size before it (writing 5 to clear_refs resets the peak, Linux >= 4.0)."""

    def field(name: str) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(name)

    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = field("VmRSS")
    result = action()
    return result, field("VmHWM") - before


def test_a_64_mib_header_is_refused_before_it_is_buffered(live: LivePlatform) -> None:
    received, growth = _peak_growth(
        live.server.process.pid,
        lambda: _raw(
            live,
            live.server.gateway_port,
            _request("POST", b"/endpoints/fuzz-key/score", [b"X-Big: " + b"a" * (64 << 20)]),
        ),
    )
    assert _status(received) == 431, received[:300]
    assert growth < 32 << 20, f"the server grew by {growth >> 20} MiB"


def test_a_64_mib_header_to_the_control_plane_is_refused_before_it_is_buffered(
    live: LivePlatform,
) -> None:
    received, growth = _peak_growth(
        live.server.process.pid,
        lambda: _raw(
            live,
            live.server.port,
            _request("GET", b"/subscriptions", [b"X-Big: " + b"a" * (64 << 20)]),
        ),
    )
    assert _status(received) == 431, received[:300]
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["error"]["code"] == (
        "RequestHeaderFieldsTooLarge"
    )
    assert growth < 32 << 20, f"the server grew by {growth >> 20} MiB"


def test_a_16_kib_header_still_reaches_the_model(live: LivePlatform) -> None:
    key = live.keys("fuzz-key")["primaryKey"].encode()
    received = _raw(
        live,
        live.server.gateway_port,
        _request(
            "POST",
            b"/endpoints/fuzz-key/score",
            [
                b"Authorization: Bearer " + key,
                b"Content-Type: application/json",
                b"Content-Length: 2",
                b"X-Big: " + b"a" * (16 << 10),
            ],
            b"{}",
        ),
    )
    assert _status(received) == 200, received[:300]


# --- slow clients -----------------------------------------------------------------------------


def _slow_clients(live: LivePlatform, port: int, count: int, seconds: float) -> list[int]:
    """``count`` connections that dribble a request header a byte at a time for ``seconds``;
    statuses of prompt requests made meanwhile."""
    context = ssl.create_default_context(cafile=live.server.ca_cert)
    stop = threading.Event()
    sockets: list[ssl.SSLSocket] = []

    def dribble() -> None:
        prefix = b"POST /endpoints/fuzz-key/score HTTP/1.1\r\nHost: x\r\nX-Slow: "
        for _ in range(count):
            with contextlib.suppress(OSError):
                raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
                tls.sendall(prefix)
                sockets.append(tls)
        while not stop.wait(0.5):
            for tls in sockets:
                with contextlib.suppress(OSError):
                    tls.sendall(b"a")

    worker = threading.Thread(target=dribble, daemon=True)
    worker.start()
    statuses: list[int] = []
    deadline = time.monotonic() + seconds
    latest = deadline + 20  # on a slow machine, until every slow connection is open
    try:
        while time.monotonic() < deadline or (len(sockets) < count and time.monotonic() < latest):
            with httpx.Client(verify=live.server.verify, timeout=3.0) as client:
                statuses.append(client.get(f"https://127.0.0.1:{port}/healthz").status_code)
            time.sleep(0.25)
    finally:
        stop.set()
        worker.join(TIMEOUT)
        for tls in sockets:
            with contextlib.suppress(OSError):
                tls.close()
    assert len(sockets) == count
    return statuses


@pytest.mark.parametrize("plane", ["gateway", "control"])
def test_slow_clients_do_not_starve_the_others(live: LivePlatform, plane: str) -> None:
    port = live.server.gateway_port if plane == "gateway" else live.server.port
    statuses = _slow_clients(live, port, count=150, seconds=5.0)
    assert len(statuses) >= 5
    assert set(statuses) == {200}


def test_a_slow_body_is_cut_off_by_nobody_but_does_not_block_others(live: LivePlatform) -> None:
    """A body sent a byte at a time keeps its own request open, and only that one."""
    key = live.keys("fuzz-key")["primaryKey"]

    def slow_body() -> Iterator[bytes]:
        for _ in range(10):
            time.sleep(0.3)
            yield b" "
        yield b"{}"

    with httpx.Client(verify=live.server.verify, timeout=TIMEOUT) as slow:
        started = time.monotonic()
        fast = live.score("fuzz-key", key)
        answer = slow.post(
            live.score_url("fuzz-key"),
            content=slow_body(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
    assert fast.status_code == 200
    assert answer.status_code == 200
    assert time.monotonic() - started < TIMEOUT


# --- after all of it -------------------------------------------------------------------------


def test_zz_the_server_is_healthy_logged_no_internal_error_and_leaked_no_secret(
    live: LivePlatform, fuzzing: Fuzzing, ledger: SecretLedger
) -> None:
    server = live.server
    assert server.process.poll() is None
    assert live.http.get(live.url("/healthz")).status_code == 200
    assert live.http.get(f"{live.gateway}/healthz").status_code == 200
    assert live.score("fuzz-key", live.keys("fuzz-key")["primaryKey"]).status_code == 200
    log = server.log_text()
    assert '"unexpected error"' not in log
    assert "Traceback" not in log
    print(f"\nschemathesis cases sent: {len(fuzzing.cases)}")
    print("success statuses the document does not declare:", *sorted(fuzzing.undocumented))
    time.sleep(1.5)  # the traffic log flushes once a second
    assert ledger.found_in_files(server.data_dir) == []
    assert ledger.found_on_command_lines(process_tree(server.process.pid)) == []
