"""Content-addressed uploads and safe unpacking."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from propylon.control.blobs import BlobStore, parse_digest
from propylon.errors import BadRequest


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7):
        yield data[start : start + 7]


def _tar(entries: dict[str, bytes], *, link: tuple[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tar.addfile(info)
    return buffer.getvalue()


def _store(tmp_path: Path, data: bytes) -> tuple[BlobStore, str]:
    store = BlobStore(tmp_path / "blobs")
    digest = hashlib.sha256(data).hexdigest()
    anyio.run(store.receive, _chunks(data), f"sha256:{digest}")
    return store, digest


def test_digests_are_read_from_names_and_urls() -> None:
    hexdigest = "AB" * 32
    assert parse_digest(f"sha256:{hexdigest}") == hexdigest.lower()
    assert parse_digest(f"https://host/ws/blobs/sha256:{hexdigest}") == hexdigest.lower()
    with pytest.raises(BadRequest):
        parse_digest("sha256:xyz")


def test_a_stored_archive_unpacks_once_into_its_digest(tmp_path: Path) -> None:
    store, digest = _store(tmp_path, _tar({"code/score.py": b"run"}))
    assert store.stat(digest) is not None
    unpacked = store.extract(digest)
    assert unpacked == tmp_path / "blobs" / "extracted" / digest
    assert (unpacked / "code" / "score.py").read_bytes() == b"run"
    assert store.extract(digest) == unpacked
    assert not any((tmp_path / "blobs" / "tmp").iterdir())


def test_a_digest_mismatch_keeps_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    with pytest.raises(BadRequest, match="SHA-256"):
        anyio.run(store.receive, _chunks(_tar({"a": b"1"})), "sha256:" + "0" * 64)
    assert store.stat("0" * 64) is None
    assert not any((tmp_path / "blobs" / "tmp").iterdir())


@pytest.mark.parametrize(
    "archive",
    [
        _tar({"../escape.py": b"x"}),
        _tar({"ok.py": b"x"}, link=("link", "/etc/passwd")),
        _tar({"ok.py": b"x"}, link=("link", "../../outside")),
    ],
)
def test_unpacking_refuses_members_that_leave_the_tree(tmp_path: Path, archive: bytes) -> None:
    store, digest = _store(tmp_path, archive)
    with pytest.raises(tarfile.FilterError):
        store.extract(digest)
    assert not (tmp_path / "blobs" / "extracted" / digest).exists()
    assert not (tmp_path / "escape.py").exists()


def test_absolute_member_names_land_inside_the_tree(tmp_path: Path) -> None:
    store, digest = _store(tmp_path, _tar({"/etc/inside.py": b"x"}))
    assert (store.extract(digest) / "etc" / "inside.py").read_bytes() == b"x"


def test_zip_archives_are_accepted_and_checked(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("score.py", "run")
    store, digest = _store(tmp_path, buffer.getvalue())
    assert (store.extract(digest) / "score.py").read_text() == "run"
    bad = io.BytesIO()
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../up.py", "x")
    store, digest = _store(tmp_path / "second", bad.getvalue())
    with pytest.raises(ValueError, match="leaves the tree"):
        store.extract(digest)
