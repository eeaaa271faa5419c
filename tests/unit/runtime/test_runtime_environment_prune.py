"""Cleaning up built environments: what goes, what stays, and never from under a lock holder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon.runtime import EnvironmentBuilder, PrunedEnvironment
from propylon.runtime import environments as environments_module

DAY = 86400.0
NOW = time.time()
OLD = NOW - 30 * DAY
BLUE, GREEN, RED = "b" * 64, "c" * 64, "d" * 64
MARKER = ".propylon-environment.json"
MARKER_TEXT = '{"spec": {}}\n'

HOLD_LOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def plant(root: Path, key: str, *, used_at: float, payload: int = 1000, marker: bool = True) -> int:
    """A built (or, without marker, half-built) environment last used at ``used_at``; its bytes."""
    folder = root / key
    (folder / "lib").mkdir(parents=True)
    (folder / "lib" / "payload.bin").write_bytes(b"x" * payload)
    (root / f"{key}.lock").touch()
    size = payload
    if marker:
        (folder / MARKER).write_text(MARKER_TEXT)
        os.utime(folder / MARKER, (used_at, used_at))
        size += len(MARKER_TEXT)
    os.utime(folder, (used_at, used_at))
    return size


@pytest.fixture
def builder(tmp_path: Path) -> EnvironmentBuilder:
    return EnvironmentBuilder(tmp_path / "envs")


@pytest.fixture
def root(builder: EnvironmentBuilder) -> Path:
    builder.root.mkdir()
    return builder.root


@pytest.fixture
def lock_holder(root: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding BLUE's build lock until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root / f"{BLUE}.lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    yield holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()
    for stream in (holder.stdin, holder.stdout):
        if stream is not None:
            stream.close()


def test_unused_environment_idle_longer_than_the_period_is_removed_with_its_size(
    builder: EnvironmentBuilder, root: Path
) -> None:
    size = plant(root, BLUE, used_at=OLD, payload=12345)

    removed = builder.prune(set(), idle_seconds=7 * DAY, now=NOW)

    assert removed == [PrunedEnvironment(BLUE, size, pytest.approx(OLD), complete=True)]
    assert sorted(root.iterdir()) == []  # the folder, its lock file, no renamed leftovers


def test_environment_in_use_is_kept_however_old_and_marked_used(
    builder: EnvironmentBuilder, root: Path
) -> None:
    plant(root, BLUE, used_at=OLD)

    assert builder.prune({BLUE}, idle_seconds=7 * DAY, now=NOW) == []

    assert (root / BLUE / MARKER).is_file()
    # Marked used now, so that another server on this data dir keeps it too.
    assert (root / BLUE / MARKER).stat().st_mtime > OLD + DAY


def test_recently_used_environment_is_kept(builder: EnvironmentBuilder, root: Path) -> None:
    plant(root, BLUE, used_at=NOW - 6 * DAY)
    plant(root, GREEN, used_at=OLD)

    removed = builder.prune(set(), idle_seconds=7 * DAY, now=NOW)

    assert [pruned.key for pruned in removed] == [GREEN]
    assert (root / BLUE / MARKER).is_file()
    assert (root / f"{BLUE}.lock").exists()


def test_half_built_folder_older_than_the_period_is_removed(
    builder: EnvironmentBuilder, root: Path
) -> None:
    size = plant(root, BLUE, used_at=OLD, marker=False)
    plant(root, GREEN, used_at=NOW - DAY, marker=False)

    removed = builder.prune(set(), idle_seconds=7 * DAY, now=NOW)

    assert removed == [PrunedEnvironment(BLUE, size, pytest.approx(OLD), complete=False)]
    assert not (root / BLUE).exists()
    assert (root / GREEN).is_dir()


def test_environment_locked_by_another_process_is_never_removed(
    builder: EnvironmentBuilder, root: Path, lock_holder: subprocess.Popen[str]
) -> None:
    plant(root, BLUE, used_at=OLD)

    assert builder.prune(set(), idle_seconds=0, now=NOW) == []
    assert (root / BLUE / MARKER).is_file()

    assert lock_holder.stdin is not None
    lock_holder.stdin.close()
    lock_holder.wait()
    assert [pruned.key for pruned in builder.prune(set(), idle_seconds=0, now=NOW)] == [BLUE]


def test_stamp_is_read_again_once_the_lock_is_held(
    builder: EnvironmentBuilder, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant(root, BLUE, used_at=OLD)
    try_lock = builder._try_lock

    def reused_meanwhile(key: str) -> int | None:
        # A reuse (ensure) in another process touched the stamp just before we got the lock.
        os.utime(root / key / MARKER)
        return try_lock(key)

    monkeypatch.setattr(builder, "_try_lock", reused_meanwhile)

    assert builder.prune(set(), idle_seconds=7 * DAY) == []
    assert (root / BLUE / MARKER).is_file()


def test_leftovers_of_an_interrupted_clean_up_are_removed(
    builder: EnvironmentBuilder, root: Path
) -> None:
    plant(root, BLUE, used_at=NOW)
    trash = root / f".pruning-{BLUE}-0123abcd"
    (trash / "lib").mkdir(parents=True)
    (trash / "lib" / "payload.bin").write_bytes(b"x" * 500)

    removed = builder.prune({BLUE}, idle_seconds=7 * DAY, now=NOW)

    assert [(pruned.key, pruned.size, pruned.complete) for pruned in removed] == [
        (BLUE, 500, False)
    ]
    assert not trash.exists()
    assert (root / BLUE / MARKER).is_file()


def test_lock_file_of_a_failed_build_is_removed_once_old(
    builder: EnvironmentBuilder, root: Path
) -> None:
    old_lock, new_lock = root / f"{BLUE}.lock", root / f"{GREEN}.lock"
    old_lock.touch()
    os.utime(old_lock, (OLD, OLD))
    new_lock.touch()

    assert builder.prune(set(), idle_seconds=7 * DAY, now=NOW) == []  # nothing worth reporting
    assert not old_lock.exists()
    assert new_lock.exists()


def test_other_files_and_the_server_environment_are_never_touched(
    builder: EnvironmentBuilder, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant(root, BLUE, used_at=OLD)
    monkeypatch.setattr(sys, "prefix", str(root / BLUE))  # the server runs from this folder
    (root / "notes").mkdir()
    (root / "README").write_text("mine")
    os.utime(root / "notes", (OLD, OLD))

    assert builder.prune(set(), idle_seconds=0, now=NOW) == []
    assert {path.name for path in root.iterdir()} == {BLUE, f"{BLUE}.lock", "notes", "README"}


def test_prune_of_a_missing_root_removes_nothing(builder: EnvironmentBuilder) -> None:
    assert builder.prune(set(), idle_seconds=0) == []


def test_negative_idle_period_is_refused(builder: EnvironmentBuilder) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        builder.prune(set(), idle_seconds=-1)


def test_lock_file_replaced_between_open_and_lock_is_not_trusted(
    builder: EnvironmentBuilder, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = root / f"{RED}.lock"
    path.touch()
    real_open = os.open
    opened: list[int] = []

    def open_then_prune(name: str, flags: int, mode: int = 0o777) -> int:
        descriptor = real_open(name, flags, mode)
        if not opened:  # after our open, a clean-up unlinks the file and a build makes another
            os.unlink(name)
            os.close(real_open(name, os.O_CREAT | os.O_WRONLY, 0o644))
        opened.append(descriptor)
        return descriptor

    monkeypatch.setattr(environments_module.os, "open", open_then_prune)
    descriptor = builder._try_lock(RED)
    monkeypatch.undo()
    assert descriptor is not None
    try:
        assert len(opened) == 2
        assert os.fstat(descriptor).st_ino == path.stat().st_ino
    finally:
        os.close(descriptor)
