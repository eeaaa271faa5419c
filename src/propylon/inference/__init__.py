"""The inference server that runs inside every deployment instance (Azure's score.py contract).

``python -m propylon.inference --port 5001`` imports the scoring script named by
``AZUREML_ENTRY_SCRIPT`` (relative to ``AML_APP_ROOT``), calls its ``init()`` once and serves
``run()`` on ``POST /score``, with liveness on ``GET /`` and readiness on ``GET /readyz``. Scripts
written for Azure run unmodified, including ``@rawhttp`` / ``AMLResponse`` ones. Importing this
package has no side effects; uvicorn is imported only when serving. Example::

    from propylon.inference import InferenceApp, InferenceSettings

    app = InferenceApp(InferenceSettings.from_env())   # an ASGI app
"""

from propylon.inference.aml_request import AMLRequest, rawhttp
from propylon.inference.aml_response import AMLResponse
from propylon.inference.app import InferenceApp, Lifecycle
from propylon.inference.settings import InferenceSettings
from propylon.inference.user_script import InputMode, ScoringScript

__all__ = [
    "AMLRequest",
    "AMLResponse",
    "InferenceApp",
    "InferenceSettings",
    "InputMode",
    "Lifecycle",
    "ScoringScript",
    "rawhttp",
]
