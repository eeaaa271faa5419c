"""Sealing and hashing of secrets (pure, no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from propylon.errors import ConfigurationError
from propylon.store import MasterKey, Sealer, UnsealError, hash_secret, verify_secret


def test_sealed_secret_opens_only_in_its_slot() -> None:
    sealer = Sealer(MasterKey.generate().material)
    blob = sealer.seal("endpoint/a/primary", b"k")
    assert sealer.open("endpoint/a/primary", blob) == b"k"
    with pytest.raises(UnsealError):
        sealer.open("endpoint/b/primary", blob)


def test_tampered_ciphertext_is_refused() -> None:
    sealer = Sealer(MasterKey.generate().material)
    blob = bytearray(sealer.seal("slot", b"value"))
    blob[-1] ^= 1
    with pytest.raises(UnsealError):
        sealer.open("slot", bytes(blob))


def test_hash_verifies_only_the_original_secret() -> None:
    stored = hash_secret("correct horse")
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horsE", stored)
    assert "correct horse" not in stored
    assert hash_secret("correct horse") != stored  # salted


def test_malformed_hash_never_verifies() -> None:
    assert not verify_secret("x", "plain-text")


def test_master_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = MasterKey.load_or_create(path, None)
    assert path.stat().st_mode & 0o777 == 0o600
    assert MasterKey.load_or_create(path, None) == first


def test_master_key_from_environment_must_be_32_bytes() -> None:
    with pytest.raises(ConfigurationError, match="32 bytes"):
        MasterKey.parse("c2hvcnQ", source="PROPYLON_MASTER_KEY")
