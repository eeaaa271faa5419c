"""Stand-ins for the ``azureml`` modules that existing scoring scripts import.

Scripts written for Azure start with ``from azureml.contrib.services.aml_request import
AMLRequest, rawhttp`` (or the newer ``azureml_inference_server_http.api.aml_request``). Where the
real package is installed it is left alone; where it is not, :func:`install_azureml_shims` puts
small modules into ``sys.modules`` that export Propylon's compatible classes, so the script runs
unmodified. The server calls it once before it imports the script — never at import time of
Propylon. Example::

    installed = install_azureml_shims()
    # ['azureml.contrib.services.aml_request', ...] when azureml is not installed
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from propylon.inference import aml_request, aml_response

__all__ = ["REAL_RAWHTTP_MODULES", "install_azureml_shims"]

_EXPORTS: dict[str, dict[str, object]] = {
    "aml_request": {"AMLRequest": aml_request.AMLRequest, "rawhttp": aml_request.rawhttp},
    "aml_response": {"AMLResponse": aml_response.AMLResponse},
}

_PACKAGES = ("azureml.contrib.services", "azureml_inference_server_http.api")

# Azure's own rawhttp records its use in this module global rather than on the function.
REAL_RAWHTTP_MODULES = tuple(f"{package}.aml_request" for package in _PACKAGES)


def install_azureml_shims() -> list[str]:
    """Register a stand-in for each ``azureml`` API module that cannot be imported; their names."""
    installed: list[str] = []
    for package in _PACKAGES:
        for leaf, exports in _EXPORTS.items():
            name = f"{package}.{leaf}"
            if name in sys.modules or _importable(name):
                continue
            module = ModuleType(
                name, f"Propylon's stand-in for {name} (see propylon.inference.shims)."
            )
            for attribute, value in exports.items():
                setattr(module, attribute, value)
            module.__all__ = list(exports)  # type: ignore[attr-defined]
            _attach(name, module)
            installed.append(name)
    return installed


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        # A missing parent package raises instead of answering None.
        return False


def _attach(name: str, module: ModuleType) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = _package(parent_name)
    sys.modules[name] = module
    setattr(parent, leaf, module)


def _package(name: str) -> ModuleType:
    """The package ``name``: the real one if importable, else an empty stand-in package."""
    existing = sys.modules.get(name)
    if existing is not None:
        return existing
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    package = ModuleType(name, f"Propylon's stand-in package {name}.")
    package.__path__ = []
    parent_name, _, leaf = name.rpartition(".")
    if parent_name:
        setattr(_package(parent_name), leaf, package)
    sys.modules[name] = package
    return package
