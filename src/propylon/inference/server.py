"""Running :class:`InferenceApp` under uvicorn (httptools, uvloop) as an instance process.

The only module that imports uvicorn. It adds what an instance supervisor needs on top of
uvicorn's graceful shutdown:

* exit status 0 after a SIGTERM/SIGINT drain (uvicorn would re-raise the signal and die by it);
* exit status 3 when the script cannot be imported or ``init()`` raises (Azure's code), 4 when
  the address cannot be bound (2, from the command line, for bad settings);
* no hang on exit while a thread is still inside ``run()``/``init()`` (Python cannot stop it).

Example::

    code = serve(InferenceSettings.from_env(), host="127.0.0.1", port=5001)
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import threading
from collections.abc import Generator

import uvicorn

from propylon.inference.app import InferenceApp
from propylon.inference.errors import ScriptError
from propylon.inference.settings import InferenceSettings

__all__ = ["EXIT_CANNOT_LISTEN", "EXIT_SCRIPT_FAILED", "serve"]

EXIT_SCRIPT_FAILED = 3  # Azure's inference server exits with 3 when the script cannot start
EXIT_CANNOT_LISTEN = 4

logger = logging.getLogger("propylon.inference")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Same handlers as uvicorn, minus its re-raise of the signal after the drain: a supervisor
        # that asked for a stop should see a clean exit, not death by SIGTERM.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stop_signals = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in stop_signals}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(
    settings: InferenceSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 5001,
    uds: str | None = None,
    unix_socket: str | None = None,
    timeout_keep_alive: int = 65,
    timeout_graceful_shutdown: int = 30,
) -> int:
    """Serve until stopped; the process exit status (0, 3 or 4, see above). ``uds`` listens on a
    Unix socket instead of ``host:port``, ``unix_socket`` on one besides it (mode 0600, removed
    on exit)."""
    exit_code = 0

    def on_failure(error: ScriptError) -> None:
        nonlocal exit_code
        exit_code = EXIT_SCRIPT_FAILED
        server.should_exit = True

    app = InferenceApp(settings, on_failure=on_failure)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        uds=uds,
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        ws="none",
        lifespan="on",
        interface="asgi3",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        # Longer than a pooling client's idle expiry, so the gateway never reuses a connection
        # that this server is closing at the same moment.
        timeout_keep_alive=timeout_keep_alive,
        timeout_graceful_shutdown=timeout_graceful_shutdown,
    )
    server = _Server(config)
    sockets = None
    if unix_socket is not None:
        try:
            sockets = [_tcp_socket(host, port), _unix_socket(unix_socket)]
        except OSError as exc:
            logger.error("Cannot listen: %s", exc)
            return EXIT_CANNOT_LISTEN
    try:
        server.run(sockets=sockets)
    except SystemExit:
        # uvicorn's way out when it cannot bind (it has logged why), even while init() runs.
        exit_code = EXIT_CANNOT_LISTEN
    finally:
        if unix_socket is not None:
            with contextlib.suppress(OSError):
                os.unlink(unix_socket)
    stuck = app.runner.running
    if stuck:
        # Pool threads are not daemons: returning would make the interpreter wait for them.
        logger.warning("Exiting while %d call(s) into the scoring script are still running", stuck)
        logging.shutdown()
        os._exit(exit_code)
    return exit_code


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _unix_socket(path: str) -> socket.socket:
    """A socket at ``path`` (a leftover of an earlier run is replaced) that only this user may
    connect to."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except OSError:
        sock.close()
        raise
    return sock
