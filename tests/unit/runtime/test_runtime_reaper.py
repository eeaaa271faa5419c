"""Instances left behind by a dead server are killed; those of a live one, or recycled pids, not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from propylon.runtime.reaper import ProcessRegistry, process_start_time

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.fixture
def orphan() -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, as instances are started."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def _owner_died(path: Path) -> None:
    record = json.loads(path.read_text())
    record["owner"]["started"] = -1  # no live process started then: the owner is gone
    path.write_text(json.dumps(record))


def test_instances_of_a_dead_server_are_killed(
    tmp_path: Path, orphan: subprocess.Popen[bytes]
) -> None:
    ProcessRegistry(tmp_path).add(orphan.pid, "blue-1-0")
    _owner_died(tmp_path / f"{orphan.pid}.json")
    assert ProcessRegistry(tmp_path).reap() == [orphan.pid]
    assert orphan.wait(timeout=5) == -9
    assert list(tmp_path.iterdir()) == []


def test_instances_of_a_live_server_are_left_alone(
    tmp_path: Path, orphan: subprocess.Popen[bytes]
) -> None:
    ProcessRegistry(tmp_path).add(orphan.pid, "blue-1-0")
    assert ProcessRegistry(tmp_path).reap() == []
    assert orphan.poll() is None


def test_a_recycled_pid_is_never_killed(tmp_path: Path, orphan: subprocess.Popen[bytes]) -> None:
    ProcessRegistry(tmp_path).add(orphan.pid, "blue-1-0")
    path = tmp_path / f"{orphan.pid}.json"
    _owner_died(path)
    record = json.loads(path.read_text())
    record["started"] -= 1  # the pid now belongs to a process that started at another time
    path.write_text(json.dumps(record))
    assert ProcessRegistry(tmp_path).reap() == []
    assert orphan.poll() is None
    assert not path.exists()


def test_records_come_and_go_with_their_processes(tmp_path: Path) -> None:
    registry = ProcessRegistry(tmp_path)
    registry.add(os.getpid(), "me")
    assert [p.name for p in tmp_path.iterdir()] == [f"{os.getpid()}.json"]
    registry.discard(os.getpid())
    registry.discard(os.getpid())
    assert list(tmp_path.iterdir()) == []
    assert isinstance(process_start_time(os.getpid()), int)
    assert process_start_time(2**22 + 12345) is None
