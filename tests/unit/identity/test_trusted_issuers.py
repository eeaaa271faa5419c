"""Configuration of trusted external issuers (PROPYLON_TRUSTED_ISSUERS / trusted_issuers.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from propylon.errors import ConfigurationError
from propylon.identity.jwks import RemoteJwks
from propylon.identity.trusted_issuers import load_trusted_issuers, parse_trusted_issuers

ENTRA = {
    "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
    "discovery_url": "https://login.microsoftonline.com/t/v2.0/.well-known/openid-configuration",
    "audiences": ["https://ml.azure.com"],
    "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
}
KEYCLOAK = {
    "issuer": "https://sso.example/realms/ml",
    "jwks_uri": "https://sso.example/realms/ml/protocol/openid-connect/certs",
    "audiences": ["propylon"],
    "tenant_id": "keycloak-ml",
    "algorithms": ["RS256", "PS256"],
    "claim_mapping": {"oid": "sub", "tid": None, "app_id": "azp", "groups": "groups"},
}


def test_nothing_configured_trusts_nobody(tmp_path: Path) -> None:
    assert load_trusted_issuers(tmp_path, {}) == []


def test_the_file_in_the_data_dir_is_read(tmp_path: Path) -> None:
    (tmp_path / "trusted_issuers.json").write_text(json.dumps({"issuers": [ENTRA, KEYCLOAK]}))
    entra, keycloak = load_trusted_issuers(tmp_path, {})
    assert entra.is_template
    assert entra.tenant_id == ENTRA["tenant_id"]
    assert isinstance(entra.jwks, RemoteJwks)
    assert entra.jwks.discovery_url == ENTRA["discovery_url"]
    assert keycloak.claim_mapping.oid == "sub"
    assert keycloak.claim_mapping.tid is None
    assert keycloak.claim_mapping.app_id == ("azp",)
    assert keycloak.algorithms == ("RS256", "PS256")


def test_the_environment_wins_and_may_name_a_file(tmp_path: Path) -> None:
    (tmp_path / "trusted_issuers.json").write_text("[]")
    env = {"PROPYLON_TRUSTED_ISSUERS": json.dumps([KEYCLOAK])}
    assert [t.issuer for t in load_trusted_issuers(tmp_path, env)] == [KEYCLOAK["issuer"]]
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps([ENTRA]))
    env = {"PROPYLON_TRUSTED_ISSUERS": f"@{other}"}
    assert [t.issuer for t in load_trusted_issuers(tmp_path, env)] == [ENTRA["issuer"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant_id": None}, "template issuer needs tenant_id"),
        ({"issuer": "http://login.example/v2.0"}, "https"),
        ({"algorithms": ["HS256"]}, "cannot be trusted"),
        ({"audiences": []}, "non-empty list"),
        ({"jwks_uri": "https://x/keys"}, "exactly one"),
        ({"surprise": 1}, "unknown fields"),
    ],
)
def test_unsafe_or_wrong_entries_stop_the_server(change: dict[str, object], message: str) -> None:
    entry = {k: v for k, v in {**ENTRA, **change}.items() if v is not None}
    with pytest.raises(ConfigurationError, match=message):
        parse_trusted_issuers([entry])


def test_invalid_json_is_reported_with_its_source(tmp_path: Path) -> None:
    (tmp_path / "trusted_issuers.json").write_text("{")
    with pytest.raises(ConfigurationError, match=r"trusted_issuers\.json is not valid JSON"):
        load_trusted_issuers(tmp_path, {})
