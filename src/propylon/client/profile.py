"""The CLI's state on disk: who is signed in where, cached tokens, and configured defaults.

Everything lives in ``$PROPYLON_CONFIG_DIR`` (default ``~/.propylon``), a directory of mode 0700
whose files are all written 0600, atomically (write a temporary file, then rename), mirroring
``~/.azure``:

==================================  ==========================================================
``profile.json``                    the signed-in account: server, authority, tenant, CA file,
                                    account name and type, subscriptions (no secrets)
``msal_token_cache.json``           MSAL's token cache: access and refresh tokens
``service_principal_entries.json``  a service principal's client secret, as ``az`` keeps it,
                                    so its tokens can be renewed without signing in again
``config``                          INI: ``[defaults] group = … workspace = …``, ``[core]``
==================================  ==========================================================

Example::

    home = ConfigDir.from_env()
    home.set_defaults({"group": "default-rg", "workspace": "default-ws"})
    profile = home.load_profile()   # None when nobody is signed in
"""

from __future__ import annotations

import configparser
import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from propylon.errors import BadRequest

__all__ = ["Account", "ConfigDir", "Profile", "Subscription", "write_private"]

_PROFILE = "profile.json"
_TOKEN_CACHE = "msal_token_cache.json"  # noqa: S105 — a file name
_SECRETS = "service_principal_entries.json"
_CONFIG = "config"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600, replacing it atomically."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)  # O_CREAT's mode is masked by the umask; make sure
        temporary.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


@dataclass
class Subscription:
    id: str
    tenant_id: str
    name: str = ""
    is_default: bool = True
    state: str = "Enabled"


@dataclass
class Account:
    """Who is signed in: ``type`` is ``user``, ``servicePrincipal`` or ``managedIdentity``."""

    name: str
    type: str
    client_id: str | None = None  # managed identity: the user-assigned identity to use


@dataclass
class Profile:
    """One sign-in: where, as whom, and which subscriptions it sees."""

    server: str
    authority: str
    tenant_id: str
    account: Account
    client_id: str
    ca_cert: str | None = None
    subscriptions: list[Subscription] = field(default_factory=list)

    @property
    def subscription(self) -> Subscription | None:
        for subscription in self.subscriptions:
            if subscription.is_default:
                return subscription
        return self.subscriptions[0] if self.subscriptions else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Profile:
        return cls(
            server=body["server"],
            authority=body["authority"],
            tenant_id=body["tenant_id"],
            account=Account(**body["account"]),
            client_id=body["client_id"],
            ca_cert=body.get("ca_cert"),
            subscriptions=[Subscription(**s) for s in body.get("subscriptions", [])],
        )


@dataclass(frozen=True)
class ConfigDir:
    """The CLI's configuration directory and the files in it."""

    path: Path

    @classmethod
    def from_env(cls, path: Path | str | None = None) -> ConfigDir:
        """``path``, else ``$PROPYLON_CONFIG_DIR``, else ``~/.propylon``."""
        chosen = path or os.environ.get("PROPYLON_CONFIG_DIR") or Path.home() / ".propylon"
        return cls(Path(chosen).expanduser())

    def ensure(self) -> Path:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.path, 0o700)
        return self.path

    def _read(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _write(self, name: str, text: str) -> None:
        self.ensure()
        write_private(self.path / name, text)

    def _remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / name).unlink()

    # -- profile ------------------------------------------------------------------------------

    def load_profile(self) -> Profile | None:
        text = self._read(_PROFILE)
        if text is None:
            return None
        try:
            return Profile.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError):
            raise BadRequest(
                f"{self.path / _PROFILE} is damaged; sign in again with `propylon login`.",
                code="InvalidProfile",
            ) from None

    def save_profile(self, profile: Profile) -> None:
        self._write(_PROFILE, json.dumps(profile.to_json(), indent=2) + "\n")

    # -- token cache (opaque text owned by MSAL) -------------------------------------------------

    def load_token_cache(self) -> str | None:
        return self._read(_TOKEN_CACHE)

    def save_token_cache(self, text: str) -> None:
        self._write(_TOKEN_CACHE, text)

    # -- service principal secrets ---------------------------------------------------------------

    def load_secret(self, client_id: str, tenant_id: str) -> str | None:
        for entry in self._secrets():
            if entry.get("client_id") == client_id and entry.get("tenant") == tenant_id:
                secret = entry.get("client_secret")
                return str(secret) if secret is not None else None
        return None

    def save_secret(self, client_id: str, tenant_id: str, secret: str) -> None:
        entries = [
            e
            for e in self._secrets()
            if not (e.get("client_id") == client_id and e.get("tenant") == tenant_id)
        ]
        entries.append({"client_id": client_id, "tenant": tenant_id, "client_secret": secret})
        self._write(_SECRETS, json.dumps(entries, indent=2) + "\n")

    def _secrets(self) -> list[dict[str, Any]]:
        text = self._read(_SECRETS)
        if not text:
            return []
        try:
            entries = json.loads(text)
        except ValueError:
            return []
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def sign_out(self) -> None:
        """Forget the account, its tokens and its secrets; keep configured defaults."""
        for name in (_PROFILE, _TOKEN_CACHE, _SECRETS):
            self._remove(name)

    # -- defaults (``propylon configure``) ------------------------------------------------------

    def _config(self) -> configparser.ConfigParser:
        parser = configparser.ConfigParser()
        text = self._read(_CONFIG)
        if text:
            try:
                parser.read_string(text)
            except configparser.Error as exc:
                raise BadRequest(
                    f"{self.path / _CONFIG} is not a valid INI file: {exc.message}",
                    code="InvalidConfiguration",
                ) from None
        return parser

    def defaults(self) -> dict[str, str]:
        """``[defaults]`` from the config file, overridden by ``PROPYLON_DEFAULTS_<KEY>``."""
        parser = self._config()
        values = dict(parser.items("defaults")) if parser.has_section("defaults") else {}
        for key, value in os.environ.items():
            if key.startswith("PROPYLON_DEFAULTS_") and value:
                values[key.removeprefix("PROPYLON_DEFAULTS_").lower()] = value
        return values

    def set_defaults(self, values: dict[str, str]) -> None:
        """Set (or, with an empty value, remove) keys of ``[defaults]``."""
        parser = self._config()
        if not parser.has_section("defaults"):
            parser.add_section("defaults")
        for key, value in values.items():
            if value:
                parser.set("defaults", key, value)
            else:
                parser.remove_option("defaults", key)
        self._write_config(parser)

    def core(self, key: str) -> str | None:
        parser = self._config()
        return parser.get("core", key, fallback=None)

    def _write_config(self, parser: configparser.ConfigParser) -> None:
        lines: list[str] = []
        for section in parser.sections():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in parser.items(section))
            lines.append("")
        self._write(_CONFIG, "\n".join(lines))
