"""What one inference server needs to know, read from the environment Azure defines for it.

The runtime starts an instance with Azure's container variables (reference §3.9 / §4.1):

=========================== ==================================================================
``AML_APP_ROOT``            the code directory (default: the working directory)
``AZUREML_ENTRY_SCRIPT``    the scoring script, relative to ``AML_APP_ROOT`` (default ``score.py``)
``AZUREML_SOURCE_DIRECTORY`` optional sub-directory of ``AML_APP_ROOT`` added to ``sys.path``
``AZUREML_MODEL_DIR``       the model directory; read by the script itself, listed on init failure
``WORKER_COUNT``            how many requests run user code at once (default 1, as Azure);
                            ``MAX_CONCURRENT_REQUESTS`` is read when ``WORKER_COUNT`` is unset
``SCORING_TIMEOUT_MS``      longest ``run()`` call before a 500 (default 3,600,000, as Azure)
``AZUREML_LOG_LEVEL``       log level of the server and the script (default INFO)
``SERVICE_NAME``            title of the generated swagger document (default "ML service")
``SERVICE_VERSION``         version of the generated swagger document (default "1.0")
=========================== ==================================================================

Example::

    settings = InferenceSettings.from_env({"AML_APP_ROOT": "/app", "WORKER_COUNT": "4"})
    settings.script_path   # PosixPath('/app/score.py')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from propylon.errors import ConfigurationError

__all__ = ["InferenceSettings"]

DEFAULT_ENTRY_SCRIPT = "score.py"
DEFAULT_WORKER_COUNT = 1
DEFAULT_SCORING_TIMEOUT_MS = 3_600_000


@dataclass(frozen=True)
class InferenceSettings:
    app_root: Path
    entry_script: str = DEFAULT_ENTRY_SCRIPT
    source_dir: str | None = None
    model_dir: Path | None = None
    worker_count: int = DEFAULT_WORKER_COUNT
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS
    log_level: str = "INFO"
    service_name: str = "ML service"
    service_version: str = "1.0"

    @property
    def script_path(self) -> Path:
        """The scoring script; an absolute ``AZUREML_ENTRY_SCRIPT`` stands on its own."""
        return self.app_root / self.entry_script

    @property
    def import_paths(self) -> list[Path]:
        """Directories the script imports its helpers from (appended to ``sys.path``)."""
        paths = [self.app_root]
        if self.source_dir:
            paths.append(self.app_root / self.source_dir)
        script_dir = self.script_path.parent
        if script_dir not in paths:
            paths.append(script_dir)
        return paths

    @property
    def scoring_timeout(self) -> float:
        return self.scoring_timeout_ms / 1000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InferenceSettings:
        """Read the settings; :class:`ConfigurationError` names the variable that is wrong."""
        env = os.environ if environ is None else environ
        app_root = Path(env.get("AML_APP_ROOT") or Path.cwd()).resolve()
        model_dir = env.get("AZUREML_MODEL_DIR")
        workers = env.get("WORKER_COUNT") or env.get("MAX_CONCURRENT_REQUESTS")
        return cls(
            app_root=app_root,
            entry_script=env.get("AZUREML_ENTRY_SCRIPT") or DEFAULT_ENTRY_SCRIPT,
            source_dir=env.get("AZUREML_SOURCE_DIRECTORY") or None,
            model_dir=Path(model_dir) if model_dir else None,
            worker_count=_positive_int(
                "WORKER_COUNT" if env.get("WORKER_COUNT") else "MAX_CONCURRENT_REQUESTS",
                workers,
                DEFAULT_WORKER_COUNT,
            ),
            scoring_timeout_ms=_positive_int(
                "SCORING_TIMEOUT_MS", env.get("SCORING_TIMEOUT_MS"), DEFAULT_SCORING_TIMEOUT_MS
            ),
            log_level=(env.get("AZUREML_LOG_LEVEL") or "INFO").upper(),
            service_name=env.get("SERVICE_NAME") or "ML service",
            service_version=env.get("SERVICE_VERSION") or "1.0",
        )


def _positive_int(name: str, raw: str | None, default: int) -> int:
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}.") from None
    if value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, not {raw!r}.")
    return value
