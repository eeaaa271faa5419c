"""External issuers: JWKS fetched over HTTP from a real server on 127.0.0.1.

The server publishes the JWKS of a second key ring (the "external" issuer) and counts requests,
so the cache, the unknown-kid rate limit and the keep-last-good rule are observed on the wire.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from token_support import APP, ML, NOW, OTHER_TENANT, Forge, b64url

from propylon.identity import (
    InvalidToken,
    IssuerUrl,
    KeyRing,
    RejectReason,
    RemoteJwks,
    SigningKey,
    TokenIssuer,
    TokenValidator,
    TrustedIssuer,
    parse_jwks,
)

FIVE_MINUTES = 300.0
DAY = 86_400.0


class JwksServer:
    """A tiny issuer metadata server: discovery, JWKS, a switchable failure mode, hit counts."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.status = 200
        self.body: bytes | None = None
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                if self.path.endswith("/.well-known/openid-configuration"):
                    payload = json.dumps({"issuer": "x", "jwks_uri": f"{server.base_url}/keys"})
                    data = payload.encode()
                elif self.path == "/keys":
                    data = server.body or json.dumps(server.jwks).encode()
                else:
                    data = b"{}"
                self.send_response(server.status if self.path == "/keys" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[JwksServer]:
    running = JwksServer()
    yield running
    running.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False) as http:
        yield http


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def external_ring(private_keys: list[rsa.RSAPrivateKey], server: JwksServer) -> KeyRing:
    start = NOW - timedelta(days=1)
    ring = KeyRing(
        [SigningKey.from_private_key(private_keys[1], created_at=start, not_before_use=start)]
    )
    server.jwks = ring.jwks(NOW)
    return ring


@pytest.fixture
def external_issuer(external_ring: KeyRing, server: JwksServer) -> TokenIssuer:
    return TokenIssuer(external_ring, IssuerUrl(server.base_url))


@pytest.fixture
def remote(server: JwksServer, client: httpx.Client, clock: FakeClock) -> RemoteJwks:
    return RemoteJwks(f"{server.base_url}/keys", client=client, clock=clock)


@pytest.fixture
def external_validator(server: JwksServer, remote: RemoteJwks) -> TokenValidator:
    trusted = TrustedIssuer(
        IssuerUrl(server.base_url)(OTHER_TENANT),
        remote,
        audiences=(ML,),
        tenant_id=OTHER_TENANT,
    )
    return TokenValidator([trusted])


def external_token(issuer: TokenIssuer) -> str:
    return issuer.issue_access_token(OTHER_TENANT, APP, ML, now=NOW).token


def reason_of(validator: TokenValidator, token: str) -> RejectReason:
    with pytest.raises(InvalidToken) as caught:
        validator.validate(token, audiences=(ML,), now=NOW)
    return caught.value.reason


def test_external_token_is_accepted_when_its_issuer_is_trusted(
    external_issuer: TokenIssuer, external_validator: TokenValidator, server: JwksServer
) -> None:
    who = external_validator.validate(external_token(external_issuer), audiences=(ML,), now=NOW)
    assert (who.tid, who.oid) == (OTHER_TENANT, APP.oid)
    assert server.hits["/keys"] == 1


def test_external_token_is_refused_when_its_issuer_is_not_trusted(
    external_issuer: TokenIssuer, validator: TokenValidator, server: JwksServer
) -> None:
    assert reason_of(validator, external_token(external_issuer)) is RejectReason.UNTRUSTED_ISSUER
    assert server.hits["/keys"] == 0


def test_known_kids_are_served_from_the_cache(
    external_issuer: TokenIssuer, external_validator: TokenValidator, server: JwksServer
) -> None:
    for _ in range(5):
        external_validator.validate(external_token(external_issuer), audiences=(ML,), now=NOW)
    assert server.hits["/keys"] == 1


def test_unknown_kid_refresh_is_rate_limited(
    external_issuer: TokenIssuer,
    external_validator: TokenValidator,
    server: JwksServer,
    clock: FakeClock,
    forge: Forge,
) -> None:
    external_validator.validate(external_token(external_issuer), audiences=(ML,), now=NOW)
    iss = IssuerUrl(server.base_url)(OTHER_TENANT)

    def made_up(i: int) -> str:
        return forge(header={"kid": f"made-up-{i}"}, claims={"iss": iss, "tid": OTHER_TENANT})

    for i in range(10):
        assert reason_of(external_validator, made_up(i)) is RejectReason.UNKNOWN_KID
    assert server.hits["/keys"] == 1

    clock.now += FIVE_MINUTES
    for i in range(10):
        assert reason_of(external_validator, made_up(i)) is RejectReason.UNKNOWN_KID
    assert server.hits["/keys"] == 2


def test_rotated_external_key_is_picked_up_on_unknown_kid(
    external_issuer: TokenIssuer,
    external_ring: KeyRing,
    external_validator: TokenValidator,
    server: JwksServer,
    clock: FakeClock,
) -> None:
    external_validator.validate(external_token(external_issuer), audiences=(ML,), now=NOW)
    external_ring.rotate(NOW, immediate=True)
    server.jwks = external_ring.jwks(NOW)
    rotated = external_token(external_issuer)
    # Within five minutes of the last fetch the new kid is refused rather than hammering the server.
    assert reason_of(external_validator, rotated) is RejectReason.UNKNOWN_KID
    clock.now += FIVE_MINUTES
    assert external_validator.validate(rotated, audiences=(ML,), now=NOW).oid == APP.oid
    assert server.hits["/keys"] == 2


@pytest.mark.parametrize("failure", ["503", "garbage", "no usable keys", "down"])
def test_last_good_keys_are_kept_when_the_fetch_fails(
    external_issuer: TokenIssuer,
    external_validator: TokenValidator,
    remote: RemoteJwks,
    server: JwksServer,
    clock: FakeClock,
    failure: str,
) -> None:
    token = external_token(external_issuer)
    external_validator.validate(token, audiences=(ML,), now=NOW)
    if failure == "503":
        server.status = 503
    elif failure == "garbage":
        server.body = b"<html>oops</html>"
    elif failure == "no usable keys":
        server.jwks = {"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}
    else:
        server.stop()
    clock.now += DAY  # the cache is stale: the validator tries a refresh, which fails
    assert remote.lookup("any", NOW).refresh
    assert external_validator.validate(token, audiences=(ML,), now=NOW).oid == APP.oid
    if failure != "down":
        assert server.hits["/keys"] == 2


def test_key_removed_upstream_stops_validating_once_the_cache_is_stale(
    external_issuer: TokenIssuer,
    external_ring: KeyRing,
    external_validator: TokenValidator,
    server: JwksServer,
    clock: FakeClock,
) -> None:
    token = external_token(external_issuer)
    external_validator.validate(token, audiences=(ML,), now=NOW)
    old = external_ring.signing_key(NOW)
    external_ring.rotate(NOW, immediate=True)
    external_ring.revoke(old.kid)
    server.jwks = external_ring.jwks(NOW)
    clock.now += FIVE_MINUTES
    assert external_validator.validate(token, audiences=(ML,), now=NOW)  # cache still fresh
    clock.now += DAY
    assert reason_of(external_validator, token) is RejectReason.UNKNOWN_KID


def test_discovery_document_leads_to_the_jwks(
    external_issuer: TokenIssuer, server: JwksServer, client: httpx.Client, clock: FakeClock
) -> None:
    discovery = f"{server.base_url}/{OTHER_TENANT}/v2.0/.well-known/openid-configuration"
    remote = RemoteJwks.from_discovery(discovery, client=client, clock=clock)
    trusted = TrustedIssuer(
        IssuerUrl(server.base_url)(OTHER_TENANT), remote, audiences=(ML,), tenant_id=OTHER_TENANT
    )
    validator = TokenValidator([trusted])
    assert validator.validate(external_token(external_issuer), audiences=(ML,), now=NOW)
    assert remote.jwks_uri == f"{server.base_url}/keys"
    assert server.hits[f"/{OTHER_TENANT}/v2.0/.well-known/openid-configuration"] == 1
    assert server.hits["/keys"] == 1


def test_validate_async_fetches_in_a_worker_thread(
    external_issuer: TokenIssuer, external_validator: TokenValidator, server: JwksServer
) -> None:
    token = external_token(external_issuer)
    who = asyncio.run(external_validator.validate_async(token, audiences=(ML,), now=NOW))
    assert who.oid == APP.oid
    assert server.hits["/keys"] == 1


def test_urls_in_token_headers_are_never_fetched(
    external_issuer: TokenIssuer,
    external_validator: TokenValidator,
    server: JwksServer,
    forge: Forge,
) -> None:
    token = forge(
        header={"jku": f"{server.base_url}/attacker-keys"},
        claims={"iss": IssuerUrl(server.base_url)(OTHER_TENANT), "tid": OTHER_TENANT},
    )
    assert reason_of(external_validator, token) is RejectReason.HEADER_KEY_INJECTION
    assert server.hits["/attacker-keys"] == 0


def test_remote_jwks_creates_and_closes_its_own_client_when_none_is_given(
    server: JwksServer, external_ring: KeyRing
) -> None:
    remote = RemoteJwks(f"{server.base_url}/keys")
    try:
        assert remote.refresh()
        assert remote.kids == {external_ring.signing_key(NOW).kid}
    finally:
        remote.close()


def test_parse_jwks_keeps_only_usable_public_signature_keys(external_ring: KeyRing) -> None:
    good = external_ring.signing_key(NOW).public_jwk()
    weak = rsa.generate_private_key(
        public_exponent=65537,
        key_size=1024,  # noqa: S505 — the parser must refuse a weak key
    ).public_key()
    weak_jwk = {
        "kty": "RSA",
        "kid": "weak",
        "n": b64url(weak.public_numbers().n.to_bytes(128, "big")),
        "e": "AQAB",
    }
    document = {
        "keys": [
            good,
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "private", "d": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {**good, "kid": None},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            weak_jwk,
            "not a key",
        ]
    }
    assert set(parse_jwks(document)) == {good["kid"]}
    with pytest.raises(ValueError, match="JWKS"):
        parse_jwks({"keys": "nope"})
