"""Which external OpenID Connect issuers the server trusts, read from configuration.

The built-in issuer is always trusted. External ones (real Entra ID, Keycloak, …) come from
``PROPYLON_TRUSTED_ISSUERS`` (the JSON itself, or ``@/path/to/file.json``) or else from
``DATA_DIR/trusted_issuers.json``. The document is a list (or ``{"issuers": [...]}``) of::

    {
      "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",   // exact, or Entra template
      "discovery_url": "https://login.microsoftonline.com/<tid>/v2.0/.well-known/openid-configuration",
      "jwks_uri": "…",                 // instead of discovery_url
      "audiences": ["https://ml.azure.com", "https://management.azure.com"],
      "tenant_id": "<tid>",            // pins the tenant; required for a template issuer
      "algorithms": ["RS256"],         // default ["RS256"]; asymmetric only
      "claim_mapping": {"oid": "oid", "tid": "tid", "app_id": ["appid", "azp"],
                        "groups": "groups", "idtyp": "idtyp"},   // defaults: Entra's
      "ca_file": "/path/ca.pem"        // optional, to fetch keys from a private CA
    }

``tid: null`` in ``claim_mapping`` is for issuers without a tenant claim (Keycloak): then
``tenant_id`` is required and becomes the token's tenant. A template issuer without
``tenant_id`` would accept every tenant of that cloud, so it is refused here.

Example::

    issuers = load_trusted_issuers(settings.data_dir, os.environ)
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from propylon.errors import ConfigurationError
from propylon.identity.jwks import RemoteJwks
from propylon.identity.trust import TENANT_PLACEHOLDER, ClaimMapping, TrustedIssuer

__all__ = ["ENV_VAR", "FILE_NAME", "load_trusted_issuers", "parse_trusted_issuers"]

ENV_VAR = "PROPYLON_TRUSTED_ISSUERS"
FILE_NAME = "trusted_issuers.json"
_KNOWN_FIELDS = {
    "issuer",
    "discovery_url",
    "jwks_uri",
    "audiences",
    "tenant_id",
    "algorithms",
    "claim_mapping",
    "ca_file",
}


def load_trusted_issuers(data_dir: Path, environ: Mapping[str, str]) -> list[TrustedIssuer]:
    """The configured external issuers (none when nothing is configured)."""
    given = environ.get(ENV_VAR, "").strip()
    if given:
        source = ENV_VAR
        if given.startswith("@"):
            path = Path(given[1:]).expanduser()
            source = str(path)
            try:
                given = path.read_text()
            except OSError as exc:
                raise ConfigurationError(
                    f"{ENV_VAR}: cannot read {path}: {exc.strerror}."
                ) from None
        return parse_trusted_issuers(_json(given, source), source)
    path = data_dir / FILE_NAME
    if not path.exists():
        return []
    return parse_trusted_issuers(_json(path.read_text(), str(path)), str(path))


def _json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{source} is not valid JSON: {exc}.") from None


def parse_trusted_issuers(document: Any, source: str = "trusted issuers") -> list[TrustedIssuer]:
    entries = document.get("issuers") if isinstance(document, Mapping) else document
    if not isinstance(entries, list):
        raise ConfigurationError(f'{source} must be a list of issuers or {{"issuers": [...]}}.')
    return [_issuer(entry, f"{source}[{index}]") for index, entry in enumerate(entries)]


def _issuer(entry: Any, where: str) -> TrustedIssuer:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{where} must be an object.")
    unknown = set(entry) - _KNOWN_FIELDS
    if unknown:
        raise ConfigurationError(f"{where} has unknown fields: {', '.join(sorted(unknown))}.")
    issuer = _string(entry, "issuer", where)
    if not issuer.startswith("https://"):
        raise ConfigurationError(f"{where}.issuer must be an https URL.")
    tenant_id = entry.get("tenant_id")
    if tenant_id is not None and not isinstance(tenant_id, str):
        raise ConfigurationError(f"{where}.tenant_id must be a string.")
    if TENANT_PLACEHOLDER in issuer and tenant_id is None:
        raise ConfigurationError(
            f"{where}: a template issuer needs tenant_id, or it would trust every tenant."
        )
    discovery, jwks_uri = entry.get("discovery_url"), entry.get("jwks_uri")
    if (discovery is None) == (jwks_uri is None):
        raise ConfigurationError(f"{where} needs exactly one of discovery_url and jwks_uri.")
    client = None
    if entry.get("ca_file") is not None:
        ca_file = _string(entry, "ca_file", where)
        try:
            client = httpx.Client(verify=ssl.create_default_context(cafile=ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"{where}.ca_file cannot be read: {exc}.") from None
    if discovery is not None:
        jwks = RemoteJwks(discovery_url=_string(entry, "discovery_url", where), client=client)
    else:
        jwks = RemoteJwks(_string(entry, "jwks_uri", where), client=client)
    try:
        return TrustedIssuer(
            issuer,
            jwks,
            audiences=tuple(_strings(entry, "audiences", where)),
            tenant_id=tenant_id,
            algorithms=tuple(_strings(entry, "algorithms", where, default=["RS256"])),
            claim_mapping=_mapping(entry.get("claim_mapping"), where),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _mapping(value: Any, where: str) -> ClaimMapping:
    if value is None:
        return ClaimMapping()
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where}.claim_mapping must be an object.")
    defaults = ClaimMapping()
    app_id = value.get("app_id", list(defaults.app_id))
    if isinstance(app_id, str):
        app_id = [app_id]
    tid = value.get("tid", defaults.tid)
    names = {
        "oid": value.get("oid", defaults.oid),
        "groups": value.get("groups", defaults.groups),
        "idtyp": value.get("idtyp", defaults.idtyp),
    }
    if not all(isinstance(v, str) and v for v in names.values()) or not (
        tid is None or isinstance(tid, str)
    ):
        raise ConfigurationError(f"{where}.claim_mapping values must be claim names.")
    if not isinstance(app_id, list) or not all(isinstance(v, str) for v in app_id):
        raise ConfigurationError(f"{where}.claim_mapping.app_id must be a list of claim names.")
    return ClaimMapping(
        oid=names["oid"],
        tid=tid,
        app_id=tuple(app_id),
        groups=names["groups"],
        idtyp=names["idtyp"],
    )


def _string(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{where}.{name} must be a non-empty string.")
    return value


def _strings(
    entry: Mapping[str, Any], name: str, where: str, *, default: list[str] | None = None
) -> list[str]:
    value = entry.get(name, default)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}.{name} must be a non-empty list of strings.")
    return value
