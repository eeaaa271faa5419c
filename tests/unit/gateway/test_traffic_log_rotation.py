"""The traffic log's files stay bounded: rotated at a size, read back across the rotated files,
shared by replicas that take turns rotating."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from propylon.config import Settings, parse_size
from propylon.errors import ConfigurationError
from propylon.gateway.traffic_log import TrafficLog, TrafficRecord, read_traffic_log

MAX_BYTES = 4096


def record(number: int, endpoint: str = "e1") -> TrafficRecord:
    return TrafficRecord(
        time=1_790_000_000.0 + number,
        method="POST",
        path="/endpoints/e1/score",
        endpoint=endpoint,
        deployment="blue",
        response_code=200,
        x_request_id=f"req-{number:06d}",
        auth_type="key",
        identity="key",
    )


def write(log: TrafficLog, numbers: range, *, per_batch: int = 5) -> None:
    """Queue and flush ``numbers`` in batches, as the background task would every 100 ms."""

    async def scenario() -> None:
        for start in range(numbers.start, numbers.stop, per_batch):
            for number in range(start, min(start + per_batch, numbers.stop)):
                log.record(record(number))
            await log.flush()

    asyncio.run(scenario())


def files(directory: Path) -> dict[str, list[str]]:
    return {
        path.name: path.read_text().splitlines() for path in sorted(directory.glob("e1.jsonl*"))
    }


def ids(lines: list[str]) -> list[str]:
    return [json.loads(line)["XRequestId"] for line in lines]


def close(log: TrafficLog) -> None:
    asyncio.run(log.aclose())


def test_files_rotate_at_the_size_and_only_the_backups_are_kept(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, max_bytes=MAX_BYTES, backups=2)
    write(log, range(200))
    close(log)

    kept = files(tmp_path)
    # The current file is absent only right after a rotation, until the next record comes.
    assert set(kept) - {"e1.jsonl"} == {"e1.jsonl.1", "e1.jsonl.2"}
    one_batch = 5 * max(len(line) + 1 for lines in kept.values() for line in lines)
    for name in ("e1.jsonl.1", "e1.jsonl.2"):
        size = (tmp_path / name).stat().st_size
        assert MAX_BYTES <= size < MAX_BYTES + one_batch
    # Newest last, no gap and no repeat across the files: .2 → .1 → current.
    order = ids(kept["e1.jsonl.2"]) + ids(kept["e1.jsonl.1"]) + ids(kept.get("e1.jsonl", []))
    assert order == [f"req-{n:06d}" for n in range(200 - len(order), 200)]
    assert len(order) < 200  # the oldest were dropped


def test_reading_the_log_reaches_into_the_rotated_files(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, max_bytes=MAX_BYTES, backups=3)
    write(log, range(120))
    close(log)
    current = len(files(tmp_path).get("e1.jsonl", []))
    wanted = current + 25

    records = read_traffic_log(tmp_path, "e1", tail=wanted)

    assert [r["XRequestId"] for r in records] == [f"req-{n:06d}" for n in range(120 - wanted, 120)]


def test_size_zero_never_rotates(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path, max_bytes=0, backups=2)
    write(log, range(100))
    close(log)

    assert list(files(tmp_path)) == ["e1.jsonl"]
    assert len(read_traffic_log(tmp_path, "e1", tail=1000)) == 100


def test_replicas_sharing_the_directory_take_turns_and_each_file_stays_bounded(
    tmp_path: Path,
) -> None:
    """Two writers of one endpoint (two gateway replicas on one data dir), the first writing two
    batches for each of the second's. Each must notice that the other rotated the file — even
    once the other has written a new one — and append to the file now at the path; a writer
    holding on to the rotated file would grow it past the size and rotate the fresh one early."""
    first = TrafficLog(tmp_path, max_bytes=MAX_BYTES, backups=100)
    second = TrafficLog(tmp_path, max_bytes=MAX_BYTES, backups=100)
    for start in range(0, 600, 15):
        write(first, range(start, start + 10))
        write(second, range(start + 10, start + 15))
    close(first)
    close(second)

    kept = files(tmp_path)
    every_line = [line for lines in kept.values() for line in lines]
    one_batch = 5 * max(len(line) + 1 for line in every_line)
    for name in kept:
        assert (tmp_path / name).stat().st_size < MAX_BYTES + one_batch, name
    assert sorted(ids(every_line)) == [f"req-{n:06d}" for n in range(600)]


def test_concurrent_replicas_lose_no_record_and_leave_no_gap(tmp_path: Path) -> None:
    """Both writers flush at once from their own threads, as two processes would; a rotation
    the other already made is not made twice (that would push the files along past an empty
    slot, and readers stop at a missing ``.n``)."""
    logs = [TrafficLog(tmp_path, max_bytes=MAX_BYTES, backups=1000) for _ in range(2)]

    def flood(log: TrafficLog, offset: int) -> None:
        for start in range(offset, 2000, 10):
            log._write([record(n) for n in range(start, start + 5)])

    threads = [threading.Thread(target=flood, args=(log, i * 5)) for i, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        close(log)

    rotated = sorted(int(p.suffix[1:]) for p in tmp_path.glob("e1.jsonl.*"))
    assert rotated == list(range(1, len(rotated) + 1))
    records = read_traffic_log(tmp_path, "e1", tail=10_000)
    assert sorted(r["XRequestId"] for r in records) == [f"req-{n:06d}" for n in range(2000)]


def test_a_partly_written_line_is_skipped_when_reading(tmp_path: Path) -> None:
    log = TrafficLog(tmp_path)
    write(log, range(3))
    close(log)
    with (tmp_path / "e1.jsonl").open("a") as handle:
        handle.write('{"XRequestId": "req-0000')  # a writer caught mid-line

    records = read_traffic_log(tmp_path, "e1", tail=10)

    assert [r["XRequestId"] for r in records] == ["req-000000", "req-000001", "req-000002"]


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MB", 64 * 2**20), ("1g", 2**30), ("512 KiB", 512 * 2**10), ("100", 100), ("0", 0)],
)
def test_sizes_are_read_in_bytes(text: str, size: int) -> None:
    assert parse_size(text, "X") == size


@pytest.mark.parametrize("text", ["", "big", "-1MB", "1.5MB", "10 TB"])
def test_malformed_size_names_the_setting(text: str) -> None:
    with pytest.raises(ConfigurationError, match="PROPYLON_TRAFFIC_LOG_SIZE must be a size"):
        parse_size(text or " ", "PROPYLON_TRAFFIC_LOG_SIZE")


def test_traffic_log_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROPYLON_TRAFFIC_LOG_SIZE", raising=False)
    monkeypatch.delenv("PROPYLON_TRAFFIC_LOG_BACKUPS", raising=False)
    defaults = Settings.from_env(data_dir=tmp_path)
    assert (defaults.traffic_log_size, defaults.traffic_log_backups) == (64 * 2**20, 4)
    monkeypatch.setenv("PROPYLON_TRAFFIC_LOG_SIZE", "8MB")
    monkeypatch.setenv("PROPYLON_TRAFFIC_LOG_BACKUPS", "9")
    configured = Settings.from_env(data_dir=tmp_path)
    assert (configured.traffic_log_size, configured.traffic_log_backups) == (8 * 2**20, 9)
    monkeypatch.setenv("PROPYLON_TRAFFIC_LOG_BACKUPS", "many")
    with pytest.raises(ConfigurationError, match="PROPYLON_TRAFFIC_LOG_BACKUPS"):
        Settings.from_env(data_dir=tmp_path)
