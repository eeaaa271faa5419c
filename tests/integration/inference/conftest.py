"""Fixtures that start real inference-server processes on loopback (see inference_instances)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from inference_instances import EXAMPLES, Instance, StartInstance, free_port


@pytest.fixture
def start_instance(tmp_path: Path) -> Iterator[StartInstance]:
    """Start ``python -m propylon.inference`` for a code dir; every instance is stopped after."""
    started: list[Instance] = []

    def start(
        app_root: Path,
        *,
        env: dict[str, str] | None = None,
        uds: bool = False,
        args: tuple[str, ...] = (),
    ) -> Instance:
        stderr_path = tmp_path / f"instance-{len(started)}.stderr"
        environment = {
            **os.environ,
            "AML_APP_ROOT": str(app_root),
            "AZUREML_ENTRY_SCRIPT": "score.py",
            **(env or {}),
        }
        if uds:
            socket_path = str(tmp_path / f"instance-{len(started)}.sock")
            listen = ["--uds", socket_path]
            url = "http://instance"
        else:
            port = free_port()
            socket_path = None
            listen = ["--port", str(port)]
            url = f"http://127.0.0.1:{port}"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "propylon.inference", *listen, *args],
                env=environment,
                cwd=app_root,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        instance = Instance(process, url, stderr_path, socket_path)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        if instance.process.poll() is None:
            instance.process.kill()
            instance.process.wait()


@pytest.fixture(scope="session")
def trained_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/model-1 trained into a temp dir: ``<dir>/model/sklearn_regression_model.pkl``."""
    pytest.importorskip(
        "sklearn", reason="the sample model needs scikit-learn (the examples extra)"
    )
    spec = importlib.util.spec_from_file_location("model1_train", EXAMPLES / "model-1" / "train.py")
    assert spec is not None
    assert spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    out = tmp_path_factory.mktemp("model-1")
    train.main(["--out", str(out)])
    return out
