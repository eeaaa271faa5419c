"""``python -m propylon.inference``: the command an instance supervisor starts.

Arguments override the environment variables of :mod:`propylon.inference.settings` (as Azure's
``azmlinfsrv`` does). Example::

    AML_APP_ROOT=examples/model-1/onlinescoring AZUREML_MODEL_DIR=examples/model-1 \\
        python -m propylon.inference --port 5001
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from propylon.errors import ConfigurationError
from propylon.inference.settings import InferenceSettings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m propylon.inference",
        description="Serve a scoring script (init()/run()) as Azure ML's inference server does.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5001, help="TCP port (default 5001, as Azure)")
    parser.add_argument("--uds", help="listen on this Unix domain socket instead of host:port")
    parser.add_argument(
        "--unix-socket",
        help="also listen on this Unix domain socket, besides host:port (the gateway's way in)",
    )
    parser.add_argument("--app-root", type=Path, help="code directory (AML_APP_ROOT)")
    parser.add_argument("--entry-script", help="scoring script, relative to the app root")
    parser.add_argument("--model-dir", type=Path, help="model directory (AZUREML_MODEL_DIR)")
    parser.add_argument("--worker-count", type=int, help="requests in user code at once")
    parser.add_argument(
        "--timeout-keep-alive", type=int, default=65, help="idle keep-alive seconds (default 65)"
    )
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        help="seconds to let in-flight requests finish after SIGTERM (default 30)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, set up JSON logging, serve; the process exit status."""
    args = _parser().parse_args(argv)
    try:
        settings = InferenceSettings.from_env()
        if args.worker_count is not None and args.worker_count < 1:
            raise ConfigurationError("--worker-count must be at least 1.")
    except ConfigurationError as exc:
        print(f"propylon.inference: {exc}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(
        settings,
        app_root=args.app_root.resolve() if args.app_root else settings.app_root,
        entry_script=args.entry_script or settings.entry_script,
        model_dir=args.model_dir.resolve() if args.model_dir else settings.model_dir,
        worker_count=args.worker_count or settings.worker_count,
    )
    # Scripts read these variables themselves (reference §3.9), so flags must reach them too.
    os.environ["AML_APP_ROOT"] = str(settings.app_root)
    if settings.model_dir is not None:
        os.environ["AZUREML_MODEL_DIR"] = str(settings.model_dir)

    from propylon.inference.logs import configure_logging
    from propylon.inference.server import serve

    configure_logging(settings.log_level)
    return serve(
        settings,
        host=args.host,
        port=args.port,
        uds=args.uds,
        unix_socket=args.unix_socket,
        timeout_keep_alive=args.timeout_keep_alive,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
