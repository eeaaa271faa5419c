"""A bad day: the server killed mid-write, instances killed under load, the database gone for a
while, the disk full under the traffic log — and afterwards everything is whole and serving.

Every loop is bounded in count and in time, every request has a client timeout; kills are
SIGKILL (nothing gets to clean up). "Nothing lost" means: whatever the server acknowledged
(a deployment it reported Succeeded, a key regeneration whose operation it reported Succeeded) is
there after the restart, every endpoint's keys still open, and the SQLite file passes
``PRAGMA integrity_check``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from live_platform import Budget, LivePlatform, SecretLedger, process_tree
from propylon.testing import PostgresServer, RunningServer, wait_until

pytestmark = pytest.mark.slow

TERMINAL = ("Succeeded", "Failed", "Canceled")


def instance_pids(server: RunningServer) -> list[int]:
    """The instance processes the server started (``python -m propylon.inference``)."""
    found = []
    for pid in process_tree(server.process.pid)[1:]:
        with contextlib.suppress(OSError):
            if b"propylon.inference" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def exited(pid: int) -> bool:
    """Every thread of ``pid`` has exited, so its sockets are closed (the leader shows "Z" as soon
    as it has exited itself, while other threads may still hold the process's files)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    return threads in ([], [str(pid)]) and not alive(pid)


def sigkill(server: RunningServer) -> list[int]:
    """SIGKILL the server; the instance processes it had (now orphans)."""
    orphans = instance_pids(server)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    return orphans


def settle(live: LivePlatform, path: str, *, timeout: float = 90.0) -> str:
    def state() -> str | None:
        current = live.state(path)
        return current if current in TERMINAL else None

    return str(wait_until(state, timeout=timeout, interval=0.2))


def integrity(data: Path) -> str:
    with contextlib.closing(sqlite3.connect(data / "propylon.db")) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


# --- the server killed while it writes ---------------------------------------------------------


@pytest.mark.parametrize("delay", [0.0, 0.3, 1.0])
def test_sigkill_during_deployment_creation_leaves_every_resource_whole(
    tmp_path: Path, delay: float
) -> None:
    data = tmp_path / "data"
    ledger = SecretLedger()
    server = RunningServer.start(data)
    live = LivePlatform(server, ledger)
    try:
        code = live.echo_code()
        live.endpoint("ep-crash", "Key")
        keys = live.keys("ep-crash")
        for name in ("blue", "green"):
            live.deploy("ep-crash", name, code, wait=False)
        time.sleep(delay)
        orphans = sigkill(server)
    finally:
        live.close()

    restarted = RunningServer.start(data)
    live = LivePlatform(restarted, ledger)
    try:
        endpoint = live.endpoint_id("ep-crash")
        for name in ("blue", "green"):
            path = f"{endpoint}/deployments/{name}"
            state = settle(live, path)
            if state != "Succeeded":  # terminal and resumable: the same PUT finishes it
                live.deploy("ep-crash", name, code, traffic=False)
            assert live.state(path) == "Succeeded"
        assert live.keys("ep-crash") == keys  # the keys survived, and still open
        live.set_traffic("ep-crash", {"blue": 50, "green": 50})
        live.wait_scoring("ep-crash", keys["primaryKey"])
        answers = Counter(
            live.score("ep-crash", keys["secondaryKey"]).headers.get("azureml-model-deployment")
            for _ in range(40)
        )
        assert set(answers) == {"blue", "green"}
        # The killed server's instances are reaped by the new one, none keeps running.
        wait_until(lambda: not any(alive(pid) for pid in orphans), timeout=30)
        time.sleep(1.5)
        assert ledger.found_in_files(data) == []
    finally:
        live.close()
        restarted.stop()
    assert integrity(data) == "ok"


@dataclass
class Regenerator:
    """Regenerates one endpoint's primary key again and again; remembers what was acknowledged."""

    live: LivePlatform
    endpoint: str
    acknowledged: list[dict[str, str]] = field(default_factory=list)
    in_flight: bool = False

    def run(self, stop: threading.Event) -> None:
        path = self.live.endpoint_id(self.endpoint)
        for _ in Budget(500, 60):
            if stop.is_set():
                return
            self.in_flight = True
            try:
                answer = self.live.call(
                    "POST", f"{path}/regenerateKeys", json={"keyType": "Primary"}
                )
                if answer.status_code != 202 or self.live.wait_operation(answer) != "Succeeded":
                    return
                keys = self.live.call("POST", f"{path}/listKeys").json()
            except (httpx.HTTPError, AssertionError, ValueError):
                return  # the server died under us: this one was in flight
            self.acknowledged.append(keys)
            self.live.ledger.add("regenerated key", keys["primaryKey"])
            self.in_flight = False


def test_sigkill_during_key_regeneration_loses_no_acknowledged_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ledger = SecretLedger()
    server = RunningServer.start(data)
    live = LivePlatform(server, ledger)
    names = [f"ep-keys-{n}" for n in range(4)]
    try:
        code = live.echo_code()
        for name in names:
            live.endpoint(name, "Key")
            live.keys(name)
        live.deploy(names[0], "blue", code)
        workers = [Regenerator(LivePlatform(server, ledger), name) for name in names]
        stop = threading.Event()
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
        for thread in threads:
            thread.start()
        wait_until(lambda: all(len(w.acknowledged) >= 2 for w in workers), timeout=60)
        sigkill(server)
        stop.set()
        for thread in threads:
            thread.join(15)
        for worker in workers:
            worker.live.close()
    finally:
        live.close()

    restarted = RunningServer.start(data)
    live = LivePlatform(restarted, ledger)
    try:
        for worker in workers:
            path = live.endpoint_id(worker.endpoint)
            assert settle(live, path) == "Succeeded"
            keys = live.keys(worker.endpoint)
            assert keys["primaryKey"] != keys["secondaryKey"]
            last = worker.acknowledged[-1]
            assert keys["secondaryKey"] == last["secondaryKey"]  # never touched
            if not worker.in_flight:
                assert keys == last  # acknowledged, so kept
            # A regeneration still works after the restart.
            answer = live.ok("POST", f"{path}/regenerateKeys", json={"keyType": "Secondary"})
            assert live.wait_operation(answer) == "Succeeded"
        scored = live.keys(names[0])
        live.wait_scoring(names[0], scored["primaryKey"])
        live.wait_scoring(names[0], scored["secondaryKey"])
        time.sleep(1.5)
        assert ledger.found_in_files(data) == []
    finally:
        live.close()
        restarted.stop()
    assert integrity(data) == "ok"


# --- instances killed under load ----------------------------------------------------------------


@dataclass
class Load:
    """Threads scoring back to back until stopped (bounded: count and time per thread)."""

    live: LivePlatform
    endpoint: str
    key: str
    statuses: Counter[str] = field(default_factory=Counter)
    slowest: float = 0.0
    after: list[int] = field(default_factory=list)  # statuses since the mark
    _mark: bool = False

    def mark(self) -> None:
        self.after.clear()
        self._mark = True

    def run(self, stop: threading.Event) -> None:
        url = self.live.score_url(self.endpoint)
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(verify=self.live.server.verify, timeout=10.0) as client:
            for n in Budget(20_000, 90):
                if stop.is_set():
                    return
                started = time.monotonic()
                try:
                    status = str(client.post(url, json={"n": n}, headers=headers).status_code)
                except httpx.HTTPError as error:
                    status = type(error).__name__
                self.slowest = max(self.slowest, time.monotonic() - started)
                self.statuses[status] += 1
                if self._mark and status.isdigit():
                    self.after.append(int(status))


@contextlib.contextmanager
def loaded(load: Load, threads: int) -> Iterator[Load]:
    stop = threading.Event()
    workers = [threading.Thread(target=load.run, args=(stop,), daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield load
    finally:
        stop.set()
        for worker in workers:
            worker.join(15)


def test_instances_killed_under_load_give_503_or_success_and_never_a_hang(
    tmp_path: Path,
) -> None:
    with RunningServer.start(tmp_path / "data") as server:
        live = LivePlatform(server)
        try:
            live.endpoint("ep-kill", "Key")
            live.deploy("ep-kill", "blue", live.echo_code(), instances=2, liveness_period="PT1S")
            key = live.keys("ep-kill")["primaryKey"]
            live.wait_scoring("ep-kill", key)
            kills = 0
            with loaded(Load(live, "ep-kill", key), threads=6) as load:
                time.sleep(2)
                for victims in ([0], [1], [0, 1]):
                    pids = instance_pids(server)
                    assert len(pids) == 2
                    for index in victims:
                        os.kill(pids[index], signal.SIGKILL)
                        kills += 1
                    time.sleep(3)
                # The supervisor brings both back; the gateway serves again by itself.
                wait_until(lambda: len(instance_pids(server)) == 2, timeout=60)
                load.mark()
                wait_until(lambda: load.after[-20:] == [200] * 20, timeout=60)
            print(f"\nkills: {kills}; answers: {dict(load.statuses)}; slowest {load.slowest:.2f}s")
            assert load.statuses["200"] > 100
            assert set(load.statuses) <= {"200", "502", "503"}, load.statuses
            assert load.slowest < 10.0
        finally:
            live.close()


def test_a_killed_instance_that_refuses_connections_costs_no_502(tmp_path: Path) -> None:
    with RunningServer.start(tmp_path / "data") as server:
        live = LivePlatform(server)
        try:
            live.endpoint("ep-refuse", "Key")
            live.deploy("ep-refuse", "blue", live.echo_code(), instances=2)
            key = live.keys("ep-refuse")["primaryKey"]
            live.wait_scoring("ep-refuse", key)
            victim = instance_pids(server)[0]
            os.kill(victim, signal.SIGKILL)
            # Scored once it has exited: while it is being torn down its listening socket still
            # completes connections, and a request written to one is lost with it — a 502 that
            # must stay one (the request may have reached the instance). From then on its port
            # refuses, and it stays in the routing table until the change feed drops it.
            wait_until(lambda: exited(victim), timeout=10, interval=0.002)
            statuses = Counter(live.score("ep-refuse", key).status_code for _ in Budget(100, 20))
            assert 502 not in statuses, statuses
        finally:
            live.close()


# --- the database away for a while ---------------------------------------------------------------


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    why_not = PostgresServer.available()
    if why_not is not None:
        pytest.skip(f"PostgreSQL unavailable: {why_not}")
    server = PostgresServer.start()
    with server.running():
        yield server


def _pg_ctl(postgres: PostgresServer, *args: str) -> None:
    command = ["pg_ctl", "-D", str(postgres.directory / "data"), *args]
    if postgres.owner_is_postgres:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def test_the_database_away_gateway_keeps_serving_control_plane_503_both_recover(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    url = postgres_server.create_database("outage")
    env = {"PROPYLON_DATABASE_URL": url}
    with RunningServer.start(tmp_path / "data", env=env) as server:
        live = LivePlatform(server)
        try:
            live.endpoint("ep-outage", "Key")
            live.deploy("ep-outage", "blue", live.echo_code())
            keys = live.keys("ep-outage")
            live.wait_scoring("ep-outage", keys["primaryKey"])
            path = live.endpoint_id("ep-outage")
            with loaded(Load(live, "ep-outage", keys["primaryKey"]), threads=2) as load:
                _pg_ctl(postgres_server, "-m", "immediate", "stop")
                load.mark()
                control = []
                for _ in Budget(20, 8):
                    started = time.monotonic()
                    control.append(live.call("GET", path).status_code)
                    assert time.monotonic() - started < 10.0  # answered, not hung
                    time.sleep(0.3)
                outage = list(load.after)
                _pg_ctl(
                    postgres_server,
                    "-l",
                    str(postgres_server.directory / "log"),
                    "-o",
                    f"-p {postgres_server.port} -k {postgres_server.directory} "
                    "-c listen_addresses=127.0.0.1 -c fsync=off",
                    "-w",
                    "start",
                )
                wait_until(lambda: live.call("GET", path).status_code == 200, timeout=60)
            assert control
            assert set(control[-5:]) == {503}, control
            assert outage
            assert set(outage) == {200}, Counter(outage)
            assert set(load.statuses) == {"200"}, load.statuses
            # The change feed follows again: a regenerated key reaches the gateway.
            answer = live.ok("POST", f"{path}/regenerateKeys", json={"keyType": "Primary"})
            assert live.wait_operation(answer) == "Succeeded"
            fresh = live.keys("ep-outage")["primaryKey"]
            live.wait_scoring("ep-outage", fresh, timeout=15)
            wait_until(lambda: live.score("ep-outage", keys["primaryKey"]).status_code == 401)
        finally:
            live.close()


# --- the disk full under the traffic log ---------------------------------------------------------


@pytest.fixture
def tiny_traffic_dir(tmp_path: Path) -> Iterator[Path]:
    """``DATA/logs/traffic`` on a 64 KiB tmpfs (needs root and mount(2); skipped otherwise)."""
    data = tmp_path / "data"
    traffic = data / "logs" / "traffic"
    traffic.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(traffic)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(traffic)], capture_output=True, check=False)


def test_a_full_disk_under_the_traffic_log_does_not_stop_scoring(tiny_traffic_dir: Path) -> None:
    data = tiny_traffic_dir
    traffic = data / "logs" / "traffic"
    with RunningServer.start(data) as server:
        live = LivePlatform(server)
        try:
            live.endpoint("ep-full", "Key")
            live.deploy("ep-full", "blue", live.echo_code())
            key = live.keys("ep-full")["primaryKey"]
            live.wait_scoring("ep-full", key)
            body = {"padding": "x" * 2000}
            statuses = Counter(
                live.score("ep-full", key, body).status_code for _ in Budget(600, 60)
            )
            time.sleep(2)  # a few flushes against the full disk
            assert os.statvfs(traffic).f_bavail == 0  # the disk really is full
            statuses.update(live.score("ep-full", key, body).status_code for _ in Budget(100, 30))
            assert set(statuses) == {200}, statuses
            assert statuses[200] >= 300  # far more records than 64 KiB holds (~600 B each)
            assert live.http.get(f"{live.gateway}/healthz").status_code == 200
            # Room again: the log writes again by itself (the batch that met the full disk is
            # dropped, so it takes the traffic that comes after).
            log_file = traffic / "ep-full.jsonl"
            log_file.unlink()
            written = False
            for _ in Budget(200, 20):
                assert live.score("ep-full", key).status_code == 200
                if log_file.exists() and log_file.stat().st_size > 0:
                    written = True
                    break
                time.sleep(0.1)
            assert written, server.log_text()[-4000:]
        finally:
            live.close()
