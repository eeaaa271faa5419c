"""Instance and set-up logs on disk: lines, rotation, tails merged across instances."""

from __future__ import annotations

import time
from pathlib import Path

from propylon.runtime import ContainerType
from propylon.runtime.logs import LogFile, LogStore

DEPLOYMENT = (
    "/subscriptions/s/resourceGroups/g/providers/X/workspaces/w/onlineEndpoints/e/deployments/blue"
)


def test_output_is_stored_by_line_with_a_timestamp(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "a.log")
    log.feed(b"first\nsec")
    log.feed(b"ond\r\nthird")
    log.close()
    stored = (tmp_path / "a.log").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in stored] == ["first", "second", "third"]
    assert all(line[:4].isdigit() and line[23] == "Z" for line in stored)
    assert list(log.recent) == ["first", "second", "third"]


def test_runtime_notes_do_not_count_as_process_output(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "a.log")
    log.feed(b"from the process\n")
    log.write_line("[propylon] Ready.", remember=False)
    log.close()
    assert list(log.recent) == ["from the process"]


def test_output_without_newlines_is_stored_in_pieces(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "a.log")
    log.feed(b"x" * (200 * 1024))
    log.close()
    assert len((tmp_path / "a.log").read_text().splitlines()) == 4


def test_files_rotate_at_max_bytes_and_keep_the_backups(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "a.log", max_bytes=1000, backups=2)
    for index in range(200):
        log.write_line(f"line {index:04d}")
    log.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.log", "a.log.1", "a.log.2"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())


def test_tail_reaches_into_rotated_files(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_bytes=600, backups=3)
    logs = store.deployment(DEPLOYMENT)
    out = logs.instance("blue-1-0")
    for index in range(40):
        out.write_line(f"line {index:02d}")
    out.close()
    tail = logs.tail(ContainerType.INFERENCE_SERVER, 25).splitlines()
    assert len(tail) == 25
    assert tail[-1].endswith("[blue-1-0] line 39")
    assert tail[0].endswith("[blue-1-0] line 15")


def test_inference_server_tail_merges_instances_in_time_order(tmp_path: Path) -> None:
    logs = LogStore(tmp_path).deployment(DEPLOYMENT)
    a, b = logs.instance("blue-1-0"), logs.instance("blue-1-1")
    for index in range(3):
        a.write_line(f"a{index}")
        time.sleep(0.002)
        b.write_line(f"b{index}")
        time.sleep(0.002)
    setup = logs.storage_initializer()
    setup.write_line("pip output")
    for log in (a, b, setup):
        log.close()
    tail = logs.tail(ContainerType.INFERENCE_SERVER, 4).splitlines()
    assert [line.rsplit(" ", 2)[1:] for line in tail] == [
        ["[blue-1-0]", "a1"], ["[blue-1-1]", "b1"], ["[blue-1-0]", "a2"], ["[blue-1-1]", "b2"],
    ]  # fmt: skip
    assert logs.tail(ContainerType.STORAGE_INITIALIZER, 10).endswith(" pip output")


def test_each_deployment_has_its_own_folder_and_remove_deletes_it(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    blue, green = store.deployment(DEPLOYMENT), store.deployment(DEPLOYMENT + "2")
    assert blue.folder != green.folder
    assert store.deployment(DEPLOYMENT.upper()).folder == blue.folder  # ARM ids ignore case
    out = blue.instance("blue-1-0")
    out.write_line("hello")
    out.close()
    assert (blue.folder / "deployment.txt").read_text().strip() == DEPLOYMENT
    blue.remove()
    assert not blue.folder.exists()
    assert blue.tail(ContainerType.INFERENCE_SERVER, 10) == ""
    assert green.tail(ContainerType.STORAGE_INITIALIZER, 10) == ""
