"""``propylon identity``: administer the built-in identity provider's data dir directly.

``rotate-keys`` adds a signing key to the store. Without ``--immediate`` the key is published
at once (every server replica's JWKS lists it within a second, through the change feed) but
signs only after the publish delay (24 h), so relying parties that cache our JWKS hold it
before the first token signed by it arrives; the old key then keeps validating until every
token it signed has expired. ``--immediate`` makes the new key sign at once (after a key
compromise: clients that cached the JWKS re-fetch it on the unknown ``kid``).

``revoke-key KID`` deletes a key at once: every token it signed fails on every replica within
a second (use it for a leaked key; a pending key created before a leak can be revoked too, or
it will start signing when its publish delay ends). If no key is left to sign, a new one signs
immediately.

``keys`` lists the signing keys and their states. Both work on the data dir (they need its
master key), with or without a running server. Example::

    propylon identity rotate-keys --data-dir /srv/propylon
    propylon identity keys --data-dir /srv/propylon
    propylon identity revoke-key <kid> --data-dir /srv/propylon
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from propylon.config import Settings
from propylon.errors import ConfigurationError
from propylon.identity.keys import KeyRing, SigningKey
from propylon.identity.keystore import KeyStore
from propylon.store import Database, MasterKey, Sealer, utcnow

__all__ = ["identity_app"]

identity_app = typer.Typer(
    help="Administer the built-in identity provider (signing keys).", no_args_is_help=True
)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="State directory [default: $PROPYLON_DATA_DIR, else ./.propylon]"
    ),
]


def _open_store(data_dir: Path | None) -> KeyStore:
    settings = Settings.from_env(data_dir=data_dir)
    key_file = settings.data_dir / "master.key"
    if settings.master_key is None and not key_file.exists():
        raise ConfigurationError(
            f"{settings.data_dir} is not a Propylon data dir (no master.key); "
            "start `propylon server` once, or pass --data-dir."
        )
    master_key = MasterKey.load_or_create(key_file, settings.master_key)
    db = Database.connect(settings.database)
    db.migrate()
    return KeyStore(db, Sealer(master_key.material))


def _describe(ring: KeyRing, key: SigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "state": ring.state(key, utcnow()).value,
        "createdAt": key.created_at.isoformat(),
        "signsFrom": key.not_before_use.isoformat(),
        "retiredAt": key.retired_at.isoformat() if key.retired_at else None,
        "x5t": key.x5t,
    }


@identity_app.command("rotate-keys")
def rotate_keys(
    data_dir: DataDirOption = None,
    immediate: Annotated[
        bool,
        typer.Option(
            "--immediate", help="Sign with the new key at once (emergency, e.g. a leaked key)."
        ),
    ] = False,
) -> None:
    """Publish a new signing key; it signs after the publish delay (or at once)."""
    store = _open_store(data_dir)
    ring = KeyRing()
    key = store.rotate(ring, immediate=immediate)
    typer.echo(json.dumps(_describe(ring, key), indent=2))


@identity_app.command("keys")
def list_keys(data_dir: DataDirOption = None) -> None:
    """List the signing keys: pending (published, not signing), active, retired."""
    store = _open_store(data_dir)
    ring = KeyRing(store.load())
    typer.echo(json.dumps([_describe(ring, key) for key in ring.all_keys()], indent=2))


@identity_app.command("revoke-key")
def revoke_key(
    kid: Annotated[str, typer.Argument(help="The kid of the key to delete (see `keys`).")],
    data_dir: DataDirOption = None,
) -> None:
    """Delete a signing key now; tokens it signed stop validating everywhere."""
    store = _open_store(data_dir)
    ring = KeyRing()
    changes = store.revoke(ring, kid)
    result = {
        "revoked": kid,
        "added": [_describe(ring, key) for key in changes.added],
        "keys": [_describe(ring, key) for key in ring.all_keys()],
    }
    typer.echo(json.dumps(result, indent=2))
