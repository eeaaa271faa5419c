"""Endpoint keys in the vault: names, strength of chosen keys, regeneration one at a time."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from propylon.control.keys import EndpointKeys, check_key_strength, key_secret_name, new_key
from propylon.errors import BadRequest
from propylon.store import Database, Sealer, Vault

EP = (
    "/subscriptions/S/resourceGroups/RG/providers/Microsoft.MachineLearningServices"
    "/workspaces/W/onlineEndpoints/E"
)


@pytest.fixture
def keys(tmp_path: Path) -> EndpointKeys:
    db = Database.connect(f"sqlite:///{tmp_path / 'state.db'}")
    db.migrate()
    return EndpointKeys(Vault(db, Sealer(secrets.token_bytes(32))))


def test_vault_names_use_the_canonical_endpoint_id() -> None:
    assert key_secret_name(EP, "primary") == f"endpoint/{EP.lower()}/primary"


def test_new_keys_carry_256_random_bits() -> None:
    key = new_key()
    assert len(key) == 43
    check_key_strength(key, target="k")


@pytest.mark.parametrize(
    "value",
    [
        "short",
        "a" * 40,
        "abababababababababababababababababab",
        "has space " + "x1Y2z3" * 6,
        "é" * 40,
    ],
)
def test_weak_or_unsafe_chosen_keys_are_refused(value: str) -> None:
    with pytest.raises(BadRequest) as caught:
        check_key_strength(value, target="keyValue")
    assert caught.value.target == "keyValue"
    assert caught.value.code == "WeakKey"


def test_regenerating_one_key_keeps_the_other(keys: EndpointKeys) -> None:
    db = keys._vault._db
    with db.transaction() as session:
        keys.create_in(session, EP)
    before = keys.list(EP)
    with db.transaction() as session:
        keys.regenerate_in(session, EP, "Primary", None)
    after = keys.list(EP)
    assert after["primaryKey"] != before["primaryKey"]
    assert after["secondaryKey"] == before["secondaryKey"]


def test_a_chosen_key_may_not_equal_the_other(keys: EndpointKeys) -> None:
    db = keys._vault._db
    with db.transaction() as session:
        keys.create_in(session, EP)
    current = keys.list(EP)
    with pytest.raises(BadRequest, match="differ"), db.transaction() as session:
        keys.regenerate_in(session, EP, "Primary", current["secondaryKey"])


def test_initial_keys_may_be_chosen_at_creation(keys: EndpointKeys) -> None:
    chosen = new_key()
    with keys._vault._db.transaction() as session:
        keys.create_in(session, EP, {"primaryKey": chosen, "secondaryKey": None})
    assert keys.list(EP)["primaryKey"] == chosen
    with keys._vault._db.transaction() as session:
        keys.delete_in(session, EP)
    assert keys._vault.get(key_secret_name(EP, "primary")) is None
