"""Propylon's state: one database (SQLite or PostgreSQL), its change feed, and secrets at rest."""

from propylon.store.changes import RESET, ChangeFeed
from propylon.store.database import Database, as_utc, utcnow
from propylon.store.resources import ResourceStore, ResourceWrite, canonical, check_etag, new_etag
from propylon.store.secrets import (
    MasterKey,
    Sealer,
    UnsealError,
    fast_hash,
    hash_secret,
    verify_secret,
)
from propylon.store.vault import Vault

__all__ = [
    "RESET",
    "ChangeFeed",
    "Database",
    "MasterKey",
    "ResourceStore",
    "ResourceWrite",
    "Sealer",
    "UnsealError",
    "Vault",
    "as_utc",
    "canonical",
    "check_etag",
    "fast_hash",
    "hash_secret",
    "new_etag",
    "utcnow",
    "verify_secret",
]
