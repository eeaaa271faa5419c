"""Python environments for deployments: one virtual environment per environment spec, cached.

An Azure environment is an image plus a conda file (reference §2.2 ``environment``). Propylon
assumes no container engine: the control plane turns the conda file into pip requirements and a
Python version (:class:`~propylon.runtime.base.EnvironmentSpec`), and this module builds a virtual
environment from them with the local Python under
``DATA_DIR/envs/<sha256 of the normalised spec>``. Every deployment asking for the same spec
reuses it; builds of the same spec wait on one lock (a file lock, so several server processes on
one data dir agree too). An empty spec runs in the server's own environment, and so does an
``image`` alone (with a warning in the set-up log). A failed build leaves nothing behind, so the
next apply tries again, and raises :class:`EnvironmentBuildFailed` with pip's output.

**Why each environment is layered over the server's own** (the effect of ``--system-site-packages``,
for the server's environment rather than the base interpreter's): the environment's
``site-packages`` holds only what pip had to install, and a ``.pth`` file adds the server's
``site-packages`` after it. So

* the inference server (``propylon``, uvicorn) imports in every instance without installing it
  there, which would need a package index and ~100 MB per environment;
* a requirement the server already satisfies (numpy, scikit-learn…) is not downloaded at all:
  builds work offline and environments stay a few kilobytes;
* what the environment does install comes first on ``sys.path``, so its pinned versions win —
  over the server's packages too: a pin that breaks what the server's packages need (an old
  numpy under the server's scikit-learn, an old uvicorn) breaks the instance, and pip says so
  in the set-up log ("pip's dependency resolver does not currently take into account…").

The cache key is :func:`~propylon.runtime.environment_specs.environment_key` of the spec, over
the local interpreter and the server's prefix, since an environment is only valid on top of the
one it was built on.

**Clean-up.** A finished environment has a marker file, ``.propylon-environment.json``, whose
modification time says when it was last used: written by the build, touched by every
:meth:`~EnvironmentBuilder.ensure` that reuses it and by every :meth:`~EnvironmentBuilder.prune`
that is told it is in use (so servers sharing the data dir see each other's environments in use).
:meth:`~EnvironmentBuilder.prune` deletes the environments that are not in use and have not been
used for a while, and unfinished builds as old. It deletes under the key's build lock, re-reading
the stamp once it holds it, so a build or a reuse in any process is never cut from under; and it
first renames the folder away, so the marker is gone before anything else is and a folder that
is half deleted is never taken for an environment. The server's own environment is never touched.

Example::

    builder = EnvironmentBuilder(data_dir / "envs")
    env = await builder.ensure(EnvironmentSpec(pip_requirements=("joblib",)), log=print)
    env.python   # PosixPath('…/envs/3f2a…/bin/python')
    builder.prune(in_use={env.key}, idle_seconds=7 * 86400)   # [PrunedEnvironment(key='9c1e…', …)]
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import site
import sys
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from propylon.runtime.base import EnvironmentSpec
from propylon.runtime.environment_specs import environment_key, normalise_environment, python_minor

__all__ = [
    "Environment",
    "EnvironmentBuildFailed",
    "EnvironmentBuilder",
    "PrunedEnvironment",
    "inherited_environment",
]

Log = Callable[[str], None]

logger = logging.getLogger("propylon.runtime")

_MARKER = ".propylon-environment.json"
_KEY = re.compile(r"^[0-9a-f]{64}$")
_LOCK_SUFFIX = ".lock"
_TRASH_PREFIX = ".pruning-"  # a folder being deleted: ``.pruning-<key>-<random>``
_LAYER_PTH = "_propylon_server_environment.pth"

# What an instance or a build inherits from the server's own environment: what a process needs to
# run and reach the network as the operator configured it. Everything else (PROPYLON_* settings,
# the database URL, the master key) stays in the server.
_INHERITED = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
        "TMPDIR", "TEMP", "TMP", "LD_LIBRARY_PATH", "PYTHONPATH",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    }
)  # fmt: skip
_INHERITED_PREFIXES = ("LC_", "PIP_")


def inherited_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's variables a child process may see (never ``PROPYLON_*`` or secrets)."""
    source = os.environ if environ is None else environ
    return {
        name: value
        for name, value in source.items()
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES)
    }


# -- building ----------------------------------------------------------------------------------


class EnvironmentBuildFailed(Exception):
    """The environment could not be built; ``output`` is what the installer printed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True)
class PrunedEnvironment:
    """What :meth:`EnvironmentBuilder.prune` removed: ``size`` bytes, last used at ``last_used``.

    ``complete`` is false for the leftovers of a build (or a clean-up) that did not finish.
    """

    key: str
    size: int
    last_used: float
    complete: bool


@dataclass(frozen=True)
class Environment:
    """Where an instance's Python lives; ``key`` is ``None`` for the server's own environment."""

    python: Path
    key: str | None = None
    root: Path | None = None


class EnvironmentBuilder:
    """Builds and caches environments under ``root`` (``DATA_DIR/envs``)."""

    def __init__(
        self,
        root: Path,
        *,
        pip_options: Sequence[str] = (),
        timeout: float = 1800.0,
        lock_poll: float = 0.1,
    ) -> None:
        self.root = root
        self.pip_options = tuple(pip_options)
        self.timeout = timeout
        self._lock_poll = lock_poll
        self._python = Path(sys.executable)
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        self._version = minor
        self._base = f"{sys.version.split()[0]} {sys.prefix}"

    @property
    def server_environment(self) -> Environment:
        return Environment(python=self._python)

    def key(self, spec: EnvironmentSpec) -> str:
        return environment_key(spec, base=self._base)

    async def ensure(self, spec: EnvironmentSpec, log: Log) -> Environment:
        """The environment for ``spec``, built unless cached; progress and pip output to ``log``."""
        if spec.is_server_environment:
            if spec.image:
                log(
                    f"WARNING: image {spec.image!r} is not run (no container engine); the "
                    "instances use the server's own Python environment. Give a conda file or pip "
                    "requirements for anything the scoring script needs beyond it."
                )
            log(f"Using the server's own Python environment ({self._python}).")
            return self.server_environment
        if spec.image:
            log(f"Image {spec.image!r} is not run (no container engine); building its conda file.")
        wanted = python_minor(spec.python_version)
        if wanted is not None and wanted != self._version:
            log(
                f"WARNING: the environment asks for Python {wanted}; it is built with the local "
                f"Python {self._version}."
            )
        key = self.key(spec)
        folder = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        async with self._locked(key, log):
            if (folder / _MARKER).is_file():
                log(f"Reusing environment {key[:12]} ({folder}).")
                self._mark_used(key)
                return self._environment(key)
            await self._build(spec, key, folder, log)
        return self._environment(key)

    def _environment(self, key: str) -> Environment:
        folder = self.root / key
        return Environment(python=folder / "bin" / "python", key=key, root=folder)

    def prune(
        self, in_use: Collection[str], idle_seconds: float, *, now: float | None = None
    ) -> list[PrunedEnvironment]:
        """Delete the environments not in ``in_use`` and not used for ``idle_seconds``.

        Also deletes unfinished builds as old, and the remains of a clean-up that was
        interrupted. The environments in ``in_use`` are marked used now. An environment whose
        lock someone holds (a build, a reuse, another clean-up) is left for the next time. This
        blocks for as long as deleting takes: call it in a thread. Example::

            removed = builder.prune({"3f2a…"}, idle_seconds=7 * 86400)
            sum(r.size for r in removed)   # bytes freed
        """
        if idle_seconds < 0:
            raise ValueError(f"idle_seconds must not be negative, not {idle_seconds!r}.")
        if not self.root.is_dir():
            return []
        for key in in_use:
            self._mark_used(key)
        cutoff = (time.time() if now is None else now) - idle_seconds
        candidates: set[str] = set()
        for entry in self.root.iterdir():
            name = entry.name
            if name.startswith(_TRASH_PREFIX):
                name = name.removeprefix(_TRASH_PREFIX).split("-", 1)[0]
            name = name.removesuffix(_LOCK_SUFFIX)
            if _KEY.match(name) and not _holds_server_environment(self.root / name):
                candidates.add(name)
        removed = [
            pruned
            for key in sorted(candidates)
            if (pruned := self._prune_key(key, cutoff, keep=key in in_use)) is not None
        ]
        if removed:
            freed = sum(pruned.size for pruned in removed)
            logger.info(
                "environment clean-up removed %d environments, %s freed",
                len(removed),
                _human_size(freed),
                extra={"environments": len(removed), "bytes": freed},
            )
        return removed

    def _prune_key(self, key: str, cutoff: float, *, keep: bool) -> PrunedEnvironment | None:
        if not self._prunable(key, cutoff, keep=keep):
            return None  # the common case, decided without taking the lock
        descriptor = self._try_lock(key)
        if descriptor is None:
            logger.info("environment %s is locked (a build or a reuse); not removed", key[:12])
            return None
        try:
            pruned = self._prune_locked(key, cutoff, keep=keep)
        finally:
            os.close(descriptor)
        if pruned is not None:
            logger.info(
                "removed %s %s, last used %s, %s freed",
                "environment" if pruned.complete else "unfinished environment",
                key[:12],
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(pruned.last_used)),
                _human_size(pruned.size),
                extra={"environment": key, "bytes": pruned.size},
            )
        return pruned

    def _prune_locked(self, key: str, cutoff: float, *, keep: bool) -> PrunedEnvironment | None:
        # Under the lock the stamp cannot change behind our back: read it again.
        if not self._prunable(key, cutoff, keep=keep):
            return None
        folder = self.root / key
        last_used = self._last_used(key)
        complete = (folder / _MARKER).is_file()
        stale = not keep and last_used < cutoff
        if stale and folder.is_dir() and not folder.is_symlink():
            # The rename takes the marker away with the folder in one step: whatever happens
            # next, nothing under ``<key>`` is left to be taken for an environment.
            folder.rename(self.root / f"{_TRASH_PREFIX}{key}-{os.urandom(4).hex()}")
        trash = sorted(self.root.glob(f"{_TRASH_PREFIX}{key}-*"))
        size = sum(_disk_usage(path) for path in trash)
        for path in trash:
            shutil.rmtree(path, ignore_errors=True)
            if path.exists():
                logger.warning("could not delete all of %s; trying again next time", path)
        if stale:
            # Unlinked while held: whoever opened it meanwhile notices and retries (_try_lock).
            with contextlib.suppress(FileNotFoundError):
                (self.root / f"{key}{_LOCK_SUFFIX}").unlink()
        if not trash:
            return None  # only a lock file was left
        return PrunedEnvironment(key, size, last_used, complete=complete and stale)

    def _prunable(self, key: str, cutoff: float, *, keep: bool) -> bool:
        if any(self.root.glob(f"{_TRASH_PREFIX}{key}-*")):
            return True
        return not keep and self._last_used(key) < cutoff

    def _last_used(self, key: str) -> float:
        """When ``key`` was last used: its marker, else its unfinished folder, else its lock."""
        folder = self.root / key
        for path in (folder / _MARKER, folder, self.root / f"{key}{_LOCK_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                return path.stat().st_mtime
        return float("-inf")

    def _mark_used(self, key: str) -> None:
        with contextlib.suppress(OSError):  # gone, or a read-only data dir: nothing to stamp
            os.utime(self.root / key / _MARKER)

    def _try_lock(self, key: str) -> int | None:
        """The key's build lock (its descriptor), or ``None`` if someone else holds it."""
        path = self.root / f"{key}{_LOCK_SUFFIX}"
        while True:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = os.fstat(descriptor)
                current = os.stat(path)
            except (BlockingIOError, FileNotFoundError) as exc:
                os.close(descriptor)
                if isinstance(exc, BlockingIOError):
                    return None
                continue
            except BaseException:
                os.close(descriptor)
                raise
            if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                return descriptor
            # prune unlinked the file we locked: that lock excludes no one, lock the new file.
            os.close(descriptor)

    @contextlib.asynccontextmanager
    async def _locked(self, key: str, log: Log) -> AsyncIterator[None]:
        # flock, polled without blocking: waiting stays cancellable and costs no thread; the lock
        # goes with the file descriptor, also when this process dies mid-build.
        waiting = False
        while (descriptor := self._try_lock(key)) is None:
            if not waiting:
                log(f"Waiting for another build of environment {key[:12]}.")
                waiting = True
            await asyncio.sleep(self._lock_poll)
        try:
            yield
        finally:
            os.close(descriptor)

    async def _build(self, spec: EnvironmentSpec, key: str, folder: Path, log: Log) -> None:
        started = time.monotonic()
        if folder.exists():  # noqa: ASYNC240 - one stat, under the build lock
            log(f"Removing the unfinished environment {key[:12]} left by an interrupted build.")
            await asyncio.to_thread(shutil.rmtree, folder, True)
        log(f"Building environment {key[:12]} in {folder}.")
        normalised = normalise_environment(spec)
        try:
            await self._run(
                [str(self._python), "-m", "venv", "--without-pip", str(folder)], log, "venv"
            )
            site_packages = folder / "lib" / f"python{self._version}" / "site-packages"
            (site_packages / _LAYER_PTH).write_text(_layer_lines())
            requirements = folder / "requirements.txt"
            requirements.write_text("\n".join(normalised["pip"]) + "\n")
            log("Requirements:\n" + requirements.read_text().rstrip())
            await self._run(
                [
                    str(folder / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "--progress-bar",
                    "off",
                    *self.pip_options,
                    "-r",
                    str(requirements),
                ],
                log,
                "pip install",
            )
        except BaseException:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, folder, True))
            raise
        marker = {"spec": normalised, "base": self._base, "built_at": time.time()}
        (folder / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        log(f"Environment {key[:12]} built in {time.monotonic() - started:.1f} s.")

    async def _run(self, argv: list[str], log: Log, what: str) -> None:
        environment = {**inherited_environment(), "PYTHONUNBUFFERED": "1", "PIP_NO_INPUT": "1"}
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environment,
            cwd=self.root,
        )
        assert process.stdout is not None
        output: list[str] = []

        async def relay() -> None:
            assert process.stdout is not None
            async for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                output.append(line)
                log(line)

        try:
            await asyncio.wait_for(asyncio.gather(relay(), process.wait()), self.timeout)
        except BaseException as exc:
            if process.returncode is None:
                process.kill()
                await asyncio.shield(process.wait())
            if isinstance(exc, TimeoutError):
                raise EnvironmentBuildFailed(
                    f"{what} did not finish within {self.timeout:g} s.", "\n".join(output)
                ) from None
            raise
        if process.returncode != 0:
            raise EnvironmentBuildFailed(
                f"{what} failed with exit code {process.returncode}.", "\n".join(output)
            )


def _layer_lines() -> str:
    """The ``.pth`` lines that put the server's environment after the environment's own."""
    directories = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE and site.getusersitepackages():
        directories.append(site.getusersitepackages())
    # A server run from a source tree (PYTHONPATH=src) has propylon outside any site directory.
    import propylon

    package_root = str(Path(propylon.__file__).resolve().parent.parent)
    lines = [f"import site; site.addsitedir({directory!r})" for directory in directories]
    if not any(package_root.startswith(str(Path(d).resolve())) for d in directories):
        lines.append(package_root)
    return "\n".join(lines) + "\n"


def _holds_server_environment(folder: Path) -> bool:
    """Whether the server's own environment is ``folder`` or inside it (never deleted)."""
    prefix = Path(sys.prefix).resolve()
    resolved = folder.resolve()
    return prefix == resolved or resolved in prefix.parents


def _disk_usage(path: Path) -> int:
    """Bytes in the files under ``path`` (symbolic links not followed)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _human_size(size: int) -> str:
    value, unit = float(size), "bytes"
    for larger in ("KB", "MB", "GB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
