"""Asset content, stored by its SHA-256 and unpacked once for the deployments that use it.

Layout under the data dir::

    blobs/sha256/ab/ab12…ef          the uploaded archive, named by the SHA-256 of its bytes
    blobs/extracted/ab12…ef/         its files, unpacked on first use (shared, never rewritten)
    blobs/tmp/                       uploads and extractions in progress (renamed into place)

An upload names the digest it claims (``PUT …/blobs/sha256:<hex>``); the server hashes what it
receives and keeps it only when the two agree, so a name always denotes its content. Archives are
tar (plain, gzip, bzip2, xz) or zip; unpacking refuses absolute paths, ``..``, links leaving the
tree and special files (``tarfile`` ``data`` filter, PEP 706), and stops at
:data:`MAX_UNPACKED_BYTES`.

Example::

    info = await store.receive(request.stream(), "sha256:ab12…")
    code_dir = store.extract(info.digest)     # blocking: call it in a worker thread
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import uuid
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from propylon.errors import BadRequest, PayloadTooLarge

__all__ = ["MAX_BLOB_BYTES", "MAX_UNPACKED_BYTES", "BlobInfo", "BlobStore", "parse_digest"]

MAX_BLOB_BYTES = 16 * 1024**3
MAX_UNPACKED_BYTES = 64 * 1024**3
_DIGEST = re.compile(r"(?:.*/)?sha256[:/](?P<hex>[0-9a-fA-F]{64})/?")


def parse_digest(text: str, *, target: str = "digest") -> str:
    """``sha256:<hex>`` (or a URL ending in it) → the lower-case hex digest."""
    match = _DIGEST.fullmatch(text.strip())
    if match is None:
        raise BadRequest(
            f"'{target}' must be 'sha256:' followed by 64 hex digits, not {text!r}.",
            code="InvalidDigest",
            target=target,
        )
    return match["hex"].lower()


@dataclass(frozen=True)
class BlobInfo:
    digest: str  # lower-case hex
    size: int

    def body(self) -> dict[str, object]:
        return {"digest": f"sha256:{self.digest}", "size": self.size}


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest[:2] / digest

    def stat(self, digest: str) -> BlobInfo | None:
        path = self.path(digest)
        return BlobInfo(digest, path.stat().st_size) if path.is_file() else None

    def _scratch(self) -> Path:
        scratch = self.root / "tmp"
        scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
        return scratch / uuid.uuid4().hex

    async def receive(self, chunks: AsyncIterator[bytes], claimed: str) -> BlobInfo:
        """Store the bytes of ``chunks`` if their SHA-256 is ``claimed``; else 400, nothing kept."""
        digest = parse_digest(claimed)
        temporary = self._scratch()
        hasher = hashlib.sha256()
        size = 0
        try:
            with temporary.open("wb") as handle:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > MAX_BLOB_BYTES:
                        raise PayloadTooLarge(
                            f"Uploads are limited to {MAX_BLOB_BYTES // 1024**3} GiB."
                        )
                    hasher.update(chunk)
                    handle.write(chunk)
            actual = hasher.hexdigest()
            if actual != digest:
                raise BadRequest(
                    f"The content's SHA-256 is {actual}, not the {digest} named in the URL.",
                    code="DigestMismatch",
                    target="digest",
                )
            _check_archive(temporary)
            final = self.path(digest)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)
        return BlobInfo(digest, size)

    def extract(self, digest: str) -> Path:
        """The directory holding the archive's files, unpacked now if not already (blocking)."""
        final = self.root / "extracted" / digest
        if final.is_dir():
            return final
        source = self.path(digest)
        if not source.is_file():
            raise FileNotFoundError(f"blob sha256:{digest} is not in the store")
        temporary = self._scratch()
        temporary.mkdir()
        try:
            _unpack(source, temporary)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                temporary.rename(final)
            except OSError:
                if not final.is_dir():  # another extraction won the race otherwise
                    raise
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return final


def _check_archive(path: Path) -> None:
    if tarfile.is_tarfile(path) or zipfile.is_zipfile(path):
        return
    raise BadRequest(
        "The content must be a tar (optionally gzip, bzip2 or xz compressed) or zip archive.",
        code="UnsupportedArchive",
        target="body",
    )


def _unpack(source: Path, destination: Path) -> None:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            total = 0
            for entry in archive.infolist():
                parts = PurePosixPath(entry.filename).parts
                if entry.filename.startswith("/") or ".." in parts or ":" in entry.filename:
                    raise ValueError(f"archive member {entry.filename!r} leaves the tree")
                total += entry.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise ValueError("archive unpacks to more than the allowed size")
            # Every name was checked above; zipfile writes regular files and directories only.
            archive.extractall(destination)  # noqa: S202
        return
    with tarfile.open(source, mode="r:*") as bundle:
        total = 0
        for member in bundle:
            total += member.size
            if total > MAX_UNPACKED_BYTES:
                raise ValueError("archive unpacks to more than the allowed size")
        bundle.extractall(destination, filter="data")
