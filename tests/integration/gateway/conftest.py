"""One gateway and a few echo-model instances, shared by the gateway's integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from gateway_harness import EchoInstance, InProcessGateway


@pytest.fixture(scope="session")
def instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EchoInstance]]:
    """``fast``; ``slow`` (run() sleeps 1 s); ``failing`` (run() raises: the server answers 500)."""
    logs = tmp_path_factory.mktemp("instances")
    started = {
        "fast": EchoInstance.start("fast", logs, workers=8),
        "fast2": EchoInstance.start("fast2", logs, workers=8),
        "slow": EchoInstance.start("slow", logs, ECHO_SLEEP_SECONDS="1"),
        "failing": EchoInstance.start("failing", logs, ECHO_FAIL="run"),
    }
    try:
        for instance in started.values():
            instance.wait_ready()
        yield started
    finally:
        for instance in started.values():
            instance.stop()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    running = InProcessGateway.start(tmp_path_factory.mktemp("gateway") / "data")
    try:
        yield running
    finally:
        running.stop()
