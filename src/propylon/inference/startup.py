"""Getting the scoring script ready to serve, in the order Azure's server does it.

:func:`prepare_script` runs once per instance, in a thread of the user-code pool: register the
``azureml`` stand-in modules, put the code directories on ``sys.path``, import the script, call
its ``init()``, build its swagger documents. Any failure is a :class:`ScriptError` whose cause is
the script's own exception; :func:`log_model_dir` then lists the model directory, because a wrong
model path is the usual reason (Azure does the same). Example::

    script, swagger = prepare_script(settings)
"""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

from propylon.inference.errors import ScriptError
from propylon.inference.settings import InferenceSettings
from propylon.inference.shims import install_azureml_shims
from propylon.inference.swagger import SwaggerDocuments
from propylon.inference.user_script import ScoringScript

__all__ = ["log_model_dir", "prepare_script"]

logger = logging.getLogger("propylon.inference")

_MODEL_DIR_LISTING_LIMIT = 200


def prepare_script(
    settings: InferenceSettings, *, module_name: str = "entry_module"
) -> tuple[ScoringScript, SwaggerDocuments]:
    """Import the script and call ``init()`` once (Azure: once per worker); its documents."""
    install_azureml_shims()
    for path in settings.import_paths:
        if str(path) not in sys.path:
            sys.path.append(str(path))
    logger.info("Loading the scoring script %s", settings.script_path)
    script = ScoringScript.load(settings.script_path, module_name=module_name)
    logger.info("Calling init()", extra={"input_mode": script.input_mode.value})
    try:
        script.init()
    except BaseException as exc:
        raise ScriptError(f"The scoring script's init() raised {exc!r}.") from exc
    try:
        swagger = SwaggerDocuments.build(
            script,
            app_root=settings.app_root,
            service_name=settings.service_name,
            service_version=settings.service_version,
        )
    except (OSError, ValueError) as exc:
        logger.warning("No swagger document: %s", exc)
        swagger = SwaggerDocuments()
    return script, swagger


def log_model_dir(model_dir: Path | None) -> None:
    """Log the files under ``AZUREML_MODEL_DIR`` (at most 200), or that it is missing."""
    if model_dir is None or not model_dir.is_dir():
        logger.info("AZUREML_MODEL_DIR is %s", model_dir or "not set")
        return
    entries = (str(p.relative_to(model_dir)) for p in sorted(model_dir.rglob("*")))
    listing = list(itertools.islice(entries, _MODEL_DIR_LISTING_LIMIT + 1))
    logger.info(
        "Contents of AZUREML_MODEL_DIR %s",
        model_dir,
        extra={
            "files": listing[:_MODEL_DIR_LISTING_LIMIT],
            "truncated": len(listing) > _MODEL_DIR_LISTING_LIMIT,
        },
    )
