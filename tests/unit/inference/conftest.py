"""In-process harness for the inference server: a scoring script in a temp dir, the ASGI app,
an httpx client on it. No socket, no subprocess; ``tests/integration/inference`` runs the real one.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inference_harness import MakeApp, Serve, serving

from propylon.inference import InferenceApp, InferenceSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeApp]:
    """Write ``source`` as score.py (plus any ``files``) and build an app for it."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    module_names: list[str] = []

    def make(
        source: str,
        *,
        files: dict[str, str] | None = None,
        worker_count: int = 1,
        scoring_timeout_ms: int = 60_000,
        **app_kwargs: Any,
    ) -> InferenceApp:
        app_root = tmp_path / f"app-{len(module_names)}"
        app_root.mkdir()
        (app_root / "score.py").write_text(textwrap.dedent(source))
        for name, text in (files or {}).items():
            (app_root / name).write_text(text)
        settings = InferenceSettings(
            app_root=app_root,
            worker_count=worker_count,
            scoring_timeout_ms=scoring_timeout_ms,
            model_dir=app_root,
        )
        # A module name per script: inference-schema keys its registry by module and function.
        module_name = f"entry_module_{uuid.uuid4().hex}"
        module_names.append(module_name)
        return InferenceApp(settings, module_name=module_name, **app_kwargs)

    yield make
    for name in module_names:
        sys.modules.pop(name, None)


@pytest.fixture
def serve() -> Serve:
    """``async with serve(app) as client``: the app started, and an httpx client on it."""
    return serving
