"""The user's scoring script: loading it, checking its shape, and turning a request into arguments.

Azure's contract (``azureml-inference-server-http``): the file named by ``AZUREML_ENTRY_SCRIPT``,
relative to ``AML_APP_ROOT``, is imported as the module ``entry_module`` and must define ``init()``
(called once) and ``run(...)``, called per request in one of three ways:

* undecorated ``run(raw_data)``: the POST body decoded as UTF-8 text (GET: the query arguments,
  each parsed as JSON, as a JSON object text);
* ``@rawhttp`` ``run(request)``: the :class:`~propylon.inference.aml_request.AMLRequest`;
* ``@input_schema`` (inference-schema) ``run(a, b, ...)``: each parameter taken by name from a
  JSON-object body, which the decorator then converts to the declared type.

``run`` may also take ``request_headers`` (a ``dict`` of the request's headers). Besides ``run``,
a script may define the model-inference routes ``chat_completions(body)``, ``embeddings(body)``
and ``info()``; a script with one of the first two may leave ``run`` out. Example::

    script = ScoringScript.load(Path("/app/onlinescoring/score.py"))
    script.init()
    output = script.run(**script.score_arguments(request))
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from propylon.inference.aml_request import AMLRequest, is_rawhttp
from propylon.inference.errors import BadRequest, ScriptError, UnsupportedMediaType
from propylon.inference.shims import REAL_RAWHTTP_MODULES

__all__ = ["InputMode", "ScoringScript"]

_HEADERS_PARAMETER = "request_headers"


class InputMode(enum.Enum):
    """How ``run`` wants its input (Azure: JsonStringInput, RawRequestInput, ObjectInput)."""

    TEXT = "text"
    RAW_REQUEST = "rawhttp"
    SCHEMA = "input_schema"


@dataclass(frozen=True)
class ScoringScript:
    """A loaded scoring script: its entry points and how to call ``run``."""

    path: Path
    module: ModuleType
    init_function: Callable[[], Any]
    run: Callable[..., Any] | None
    input_mode: InputMode = InputMode.TEXT
    parameters: tuple[inspect.Parameter, ...] = ()
    wants_request_headers: bool = False
    chat_completions: Callable[..., Any] | None = None
    embeddings: Callable[..., Any] | None = None
    info: Callable[[], Any] | None = None

    @classmethod
    def load(cls, path: Path, *, module_name: str = "entry_module") -> ScoringScript:
        """Import ``path`` as ``module_name``; :class:`ScriptError` unless it can serve."""
        module = _import_file(path, module_name)
        init_function = getattr(module, "init", None)
        if not callable(init_function):
            raise ScriptError(f"The scoring script {path} does not define an init() function.")
        chat_completions = _callable(module, "chat_completions")
        embeddings = _callable(module, "embeddings")
        # Azure SDK "driver" scripts forward to the real script's run(); call that one directly,
        # as Azure does, so inference-schema sees the decorated function.
        driver = getattr(module, "driver_module", None)
        run_owner = driver if isinstance(driver, ModuleType) and hasattr(driver, "run") else module
        run = _callable(run_owner, "run")
        if run is None and chat_completions is None and embeddings is None:
            raise ScriptError(f"The scoring script {path} does not define a run() function.")
        mode, parameters, wants_headers = (
            _analyse_run(run) if run is not None else (InputMode.TEXT, (), False)
        )
        return cls(
            path=path,
            module=module,
            init_function=init_function,
            run=run,
            input_mode=mode,
            parameters=parameters,
            wants_request_headers=wants_headers,
            chat_completions=chat_completions,
            embeddings=embeddings,
            info=_callable(module, "info"),
        )

    def init(self) -> None:
        """Call the script's ``init()``; its exception propagates unchanged."""
        self.init_function()

    def score_arguments(self, request: AMLRequest) -> dict[str, Any]:
        """The keyword arguments of ``run`` for this request (GET or POST).

        Raises :class:`BadRequest` / :class:`UnsupportedMediaType` with Azure's messages.
        """
        kwargs: dict[str, Any]
        if self.input_mode is InputMode.RAW_REQUEST:
            kwargs = {self.parameters[0].name: request}
        elif self.input_mode is InputMode.TEXT:
            kwargs = {self.parameters[0].name: _text_input(request)}
        else:
            kwargs = _schema_input(request, self.parameters)
        if self.wants_request_headers:
            kwargs[_HEADERS_PARAMETER] = dict(request.headers)
        return kwargs


def _import_file(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"The scoring script {path} is not a Python file that can be imported.")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, so that pickling, dataclasses and typing can find the module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError as exc:
        sys.modules.pop(module_name, None)
        raise ScriptError(f"The scoring script {path} does not exist.") from exc
    except BaseException as exc:
        sys.modules.pop(module_name, None)
        raise ScriptError(f"Importing the scoring script {path} raised {exc!r}.") from exc
    return module


def _callable(owner: object, name: str) -> Callable[..., Any] | None:
    value = getattr(owner, name, None)
    return value if callable(value) else None


def _analyse_run(
    run: Callable[..., Any],
) -> tuple[InputMode, tuple[inspect.Parameter, ...], bool]:
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError) as exc:
        raise ScriptError(f"Cannot read the signature of run(): {exc}") from exc
    accepted = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind not in accepted for p in signature.parameters.values()):
        raise ScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
    wants_headers = _HEADERS_PARAMETER in signature.parameters
    parameters = tuple(p for p in signature.parameters.values() if p.name != _HEADERS_PARAMETER)
    if not parameters:
        raise ScriptError("run() needs to accept an argument for input data.")
    raw = is_rawhttp(run) or _real_rawhttp_requested()
    decorated = _schema_decorated(run)
    if raw and decorated:
        raise ScriptError("run() cannot be decorated with both @rawhttp and @input_schema.")
    if raw:
        return InputMode.RAW_REQUEST, parameters, wants_headers
    if decorated:
        return InputMode.SCHEMA, parameters, wants_headers
    return InputMode.TEXT, parameters, wants_headers


def _real_rawhttp_requested() -> bool:
    """Azure's own ``rawhttp`` (when that package is installed) sets a module global instead."""
    return any(
        getattr(sys.modules.get(name), "_rawHttpRequested", False) is True
        for name in REAL_RAWHTTP_MODULES
    )


def _schema_decorated(run: Callable[..., Any]) -> bool:
    # Only a script that imported inference-schema can be decorated with it; never import it here.
    schema_util = sys.modules.get("inference_schema.schema_util")
    if schema_util is None:
        return False
    return bool(schema_util.is_schema_decorated(run))


def _parse_json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _query_input(request: AMLRequest) -> dict[str, Any]:
    """Query arguments as values: each parsed as JSON if it is JSON; repeated names become lists."""
    return {
        key: (
            _parse_json_value(values[0])
            if len(values) == 1
            else [_parse_json_value(v) for v in values]
        )
        for key, values in request.args.lists()
    }


def _text_input(request: AMLRequest) -> str:
    if request.method == "GET":
        return json.dumps(_query_input(request))
    try:
        return str(request.data, "utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Input cannot be decoded as UTF-8: {exc}") from None


def _schema_input(request: AMLRequest, parameters: tuple[inspect.Parameter, ...]) -> dict[str, Any]:
    if request.method == "GET":
        body: Any = _query_input(request)
    else:
        if not request.is_json:
            raise UnsupportedMediaType("Expects Content-Type to be application/json")
        raw = request.data
        try:
            body = json.loads(raw)
        except ValueError as exc:
            if raw:
                raise BadRequest(f"POST body could not be decoded as JSON: {exc}") from None
            raise BadRequest("POST body is empty. Expecting a JSON dictionary.") from None
        if not isinstance(body, dict):
            raise BadRequest("POST body should be a JSON dictionary.")
    kwargs: dict[str, Any] = {}
    for parameter in parameters:
        value = body.get(parameter.name, parameter.default)
        if value is inspect.Parameter.empty:
            raise BadRequest(f"A value is not provided for the {parameter.name!r} parameter.")
        kwargs[parameter.name] = value
    return kwargs
