"""``GET /swagger.json``: the OpenAPI document of a scoring script, as Azure's server builds it.

Two sources, in Azure's order of preference (reference §4.2, §4.6):

1. a document the author ships in ``AML_APP_ROOT``: ``swagger.json`` or ``swagger2.json`` (version
   2), ``swagger3.json`` (versions 3 and 3.1);
2. a document generated from inference-schema's ``@input_schema`` / ``@output_schema`` on
   ``run()``, for each version the decorators support — only when the script uses that package.

With neither, the route answers 404, as it does on Azure for a version the script cannot offer.
The query parameter ``version`` picks ``2`` (default), ``3`` or ``3.1``. Example::

    docs = SwaggerDocuments.build(script, app_root=Path("/app"))
    docs.get("3")["openapi"]   # '3.0.3'
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from propylon.inference.errors import NotFound
from propylon.inference.user_script import InputMode, ScoringScript

__all__ = ["SwaggerDocuments"]

# Each version's aliases, and the inference-schema version string that enables it.
_VERSIONS: dict[str, tuple[str, ...]] = {"2": ("2", "2.0"), "3": ("3", "3.0"), "3.1": ("3.1",)}
_USER_FILES: dict[str, tuple[str, ...]] = {
    "2": ("swagger.json", "swagger2.json"),
    "3": ("swagger3.json",),
    "3.1": ("swagger3.json",),
}


@dataclass(frozen=True)
class SwaggerDocuments:
    """The documents a script offers, by canonical version (``2``, ``3``, ``3.1``)."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        script: ScoringScript,
        *,
        app_root: Path,
        service_name: str = "ML service",
        service_version: str = "1.0",
    ) -> SwaggerDocuments:
        documents: dict[str, dict[str, Any]] = {}
        for version in _VERSIONS:
            document = _user_document(app_root, version)
            if document is None:
                document = _generated_document(script, version, service_name, service_version)
            if document is not None:
                documents[version] = document
        return cls(documents)

    def get(self, requested: str | None) -> dict[str, Any]:
        """The document for ``requested`` (default 2); :class:`NotFound` with Azure's reason."""
        requested = requested or "2"
        version = next((v for v, aliases in _VERSIONS.items() if requested in aliases), None)
        available = ", ".join(sorted(self.documents))
        if version is None:
            raise NotFound(
                f"Swagger version [{requested}] is not valid. Supported versions: [{available}]."
            )
        document = self.documents.get(version)
        if document is None:
            raise NotFound(
                f"Swagger version [{requested}] is not supported for the scoring script. "
                f"Supported swagger versions: [{available}]. A document is generated when run() "
                "is decorated with inference-schema's @input_schema/@output_schema, or read from "
                "swagger.json / swagger2.json / swagger3.json in the app root."
            )
        return document


def _user_document(app_root: Path, version: str) -> dict[str, Any] | None:
    for name in _USER_FILES[version]:
        path = app_root / name
        if path.is_file() and path.stat().st_size > 0:
            document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            if version == "3.1":
                document = {**document, "openapi": "3.1.0"}
            return document
    return None


def _generated_document(
    script: ScoringScript, version: str, service_name: str, service_version: str
) -> dict[str, Any] | None:
    if script.run is None or script.input_mode is not InputMode.SCHEMA:
        return None
    schema_util = sys.modules.get("inference_schema.schema_util")
    if schema_util is None:
        return None
    supported = {str(v) for v in schema_util.get_supported_versions(script.run)}
    if not supported & set(_VERSIONS[version]):
        return None
    service_input = copy.deepcopy(schema_util.get_input_schema(script.run))
    service_output = copy.deepcopy(schema_util.get_output_schema(script.run))
    builder: Callable[..., dict[str, Any]] = _swagger2 if version == "2" else _openapi3
    document = builder(service_name, service_version, service_input, service_output)
    if version == "3.1":
        document["openapi"] = "3.1.0"
    return document


_SCORE_DESCRIPTION = "Run web service's model and get the prediction output"
_HEALTH_DESCRIPTION = "Simple health check endpoint to ensure the service is up at any given point."
_ERROR_DESCRIPTION = "The service failed to execute due to an error."
_ERROR_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}


def _info(service_name: str, service_version: str) -> dict[str, str]:
    return {
        "title": service_name,
        "description": f"API specification for the Azure Machine Learning service {service_name}",
        "version": service_version,
    }


def _swagger2(
    service_name: str, service_version: str, service_input: Any, service_output: Any
) -> dict[str, Any]:
    error = {"description": _ERROR_DESCRIPTION, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": _info(service_name, service_version),
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Bearer": {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "description": "For example: Bearer abc123",
            }
        },
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {"description": "The service is up.", "schema": {"type": "string"}},
                        "default": error,
                    },
                }
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": "The input payload for the model.",
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The model's prediction.",
                            "schema": {"$ref": "#/definitions/ServiceOutput"},
                        },
                        "default": error,
                    },
                }
            },
        },
        "definitions": {
            "ServiceInput": service_input,
            "ServiceOutput": service_output,
            "ErrorResponse": _ERROR_SCHEMA,
        },
    }


def _openapi3(
    service_name: str, service_version: str, service_input: Any, service_output: Any
) -> dict[str, Any]:
    def json_content(ref: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}

    error = {"description": _ERROR_DESCRIPTION, "content": json_content("ErrorResponse")}
    return {
        "openapi": "3.0.3",
        "info": _info(service_name, service_version),
        "security": [{"Bearer": []}],
        "paths": {
            "/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {
                            "description": "The service is up.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": error,
                    },
                }
            },
            "/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": "The input payload for the model.",
                        "content": json_content("ServiceInput"),
                    },
                    "responses": {
                        "200": {
                            "description": "The model's prediction.",
                            "content": json_content("ServiceOutput"),
                        },
                        "default": error,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "Bearer": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "For example: Bearer abc123",
                }
            },
            "schemas": {
                "ServiceInput": service_input,
                "ServiceOutput": service_output,
                "ErrorResponse": _ERROR_SCHEMA,
            },
        },
    }
