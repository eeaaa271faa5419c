"""Endpoint keys: two random 256-bit keys per endpoint, sealed in the vault, renewed one at a time.

The vault names are ``endpoint/{canonical endpoint id}/primary`` and ``…/secondary``
(:func:`key_secret_name`); the gateway reads the same names and drops its cache when the change feed
reports the ``secret`` write, so a regenerated key stops working within a second while the other
keeps working.

A caller-chosen ``keyValue`` must look like a secret: 32–256 characters from the RFC 6750
``b64token`` alphabet (it travels in ``Authorization: Bearer``), at least 8 distinct characters, and
at least 128 bits by the character-class estimate (length × log2 of the classes' alphabet size).
azure-ai-ml's ``begin_regenerate_keys`` sends the key's *current* value as ``keyValue``; that asks
for a fresh random key, as it does on Azure.

Example::

    keys = EndpointKeys(vault)
    keys.regenerate(endpoint_id, "Secondary")   # the primary key is untouched
"""

from __future__ import annotations

import math
import re
import secrets
from typing import Any

from sqlalchemy.orm import Session

from propylon.errors import BadRequest, NotFound
from propylon.store import Vault, canonical

__all__ = ["EndpointKeys", "check_key_strength", "key_secret_name", "new_key"]

SLOTS = ("primary", "secondary")
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CLASSES = (
    (re.compile(r"[a-z]"), 26),
    (re.compile(r"[A-Z]"), 26),
    (re.compile(r"[0-9]"), 10),
    (re.compile(r"[\-._~+/=]"), 7),
)
_MIN_BITS = 128


def key_secret_name(endpoint_id: str, slot: str) -> str:
    """The vault name of one key of an endpoint (``slot`` is ``primary`` or ``secondary``)."""
    return f"endpoint/{canonical(endpoint_id)}/{slot}"


def new_key() -> str:
    """A fresh key: 256 random bits, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def check_key_strength(value: str, *, target: str) -> None:
    """Refuse a caller-chosen key that is short, repetitive or not a bearer token; say why."""
    if not 32 <= len(value) <= 256:
        raise BadRequest(
            f"'{target}' must be 32 to 256 characters long.", code="WeakKey", target=target
        )
    if _TOKEN_ALPHABET.fullmatch(value) is None:
        raise BadRequest(
            f"'{target}' may contain only letters, digits and - . _ ~ + / (then '=' padding), "
            "because it is sent as a bearer token.",
            code="WeakKey",
            target=target,
        )
    alphabet = sum(size for pattern, size in _CLASSES if pattern.search(value))
    if len(set(value)) < 8 or len(value) * math.log2(alphabet) < _MIN_BITS:
        raise BadRequest(
            f"'{target}' is too predictable: use at least 8 different characters and "
            f"{_MIN_BITS} bits of randomness (e.g. 32 random bytes, base64-encoded).",
            code="WeakKey",
            target=target,
        )


class EndpointKeys:
    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def create_in(
        self, session: Session, endpoint_id: str, initial: dict[str, str | None] | None = None
    ) -> None:
        """Store both keys of a new endpoint (``properties.keys`` may set either)."""
        chosen = {"primary": None, "secondary": None} | {
            k.removesuffix("Key"): v for k, v in (initial or {}).items()
        }
        for slot in SLOTS:
            value = chosen.get(slot)
            if value is not None:
                check_key_strength(value, target=f"properties.keys.{slot}Key")
        if chosen["primary"] is not None and chosen["primary"] == chosen["secondary"]:
            raise BadRequest(
                "'properties.keys.secondaryKey' must differ from the primary key.",
                code="WeakKey",
                target="properties.keys.secondaryKey",
            )
        for slot in SLOTS:
            value = chosen.get(slot)
            self._vault.put_in(session, key_secret_name(endpoint_id, slot), value or new_key())

    def list(self, endpoint_id: str) -> dict[str, Any]:
        """The ARM ``EndpointAuthKeys`` body."""
        values = [self._vault.get(key_secret_name(endpoint_id, slot)) for slot in SLOTS]
        if None in values:
            raise NotFound("The keys of this endpoint are not available.", code="KeysNotFound")
        return {"primaryKey": values[0], "secondaryKey": values[1]}

    def regenerate_in(
        self, session: Session, endpoint_id: str, key_type: str, key_value: str | None
    ) -> None:
        """Replace one key; ``key_type`` is ``Primary`` or ``Secondary``."""
        slot = key_type.lower()
        other = SLOTS[1 - SLOTS.index(slot)]
        current = self._vault.get(key_secret_name(endpoint_id, slot))
        value = key_value
        if value is None or (current is not None and secrets.compare_digest(value, current)):
            value = new_key()
        else:
            check_key_strength(value, target="keyValue")
            sibling = self._vault.get(key_secret_name(endpoint_id, other))
            if sibling is not None and secrets.compare_digest(value, sibling):
                raise BadRequest(
                    f"'keyValue' must differ from the {other} key.",
                    code="WeakKey",
                    target="keyValue",
                )
        self._vault.put_in(session, key_secret_name(endpoint_id, slot), value)

    def delete_in(self, session: Session, endpoint_id: str) -> None:
        self._vault.delete_prefix_in(session, f"endpoint/{canonical(endpoint_id)}/")
