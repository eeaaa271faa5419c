"""What every command works with: its global options, the config dir, clients, output, progress.

A :class:`Session` is made per command by :func:`propylon.cli.command.command`. Clients are built
lazily from the signed-in profile (server URL, CA file) and the configured defaults, and share one
:class:`~propylon.client.http.Pipeline`. Tests replace the network and the credential through
:class:`Dependencies`, passed as Click's ``obj``::

    CliRunner().invoke(app, ["ml", "online-endpoint", "list"],
                       obj=Dependencies(transport=httpx.MockTransport(handler), credential=fake))
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from propylon.cli.output import OutputFormat, TableTransform, render
from propylon.client.authorization import AuthorizationClient
from propylon.client.cli_credential import CliCredential
from propylon.client.graph import GraphClient
from propylon.client.http import Pipeline, TokenCredential, Transport
from propylon.client.lro import Poller
from propylon.client.ml_client import MLClient
from propylon.client.profile import ConfigDir, Profile
from propylon.client.sign_in import SignIn
from propylon.errors import Unauthenticated

__all__ = ["Dependencies", "GlobalOptions", "Session"]

T = TypeVar("T")


@dataclass
class Dependencies:
    """Seams for tests: the HTTP transport, the credential, MSAL sign-in, the poll interval."""

    transport: Transport | None = None
    credential: TokenCredential | None = None
    sign_in: Callable[..., SignIn] = SignIn
    polling_interval: float = 1.0


@dataclass
class GlobalOptions:
    """The options every command takes, as ``az`` has them."""

    output: OutputFormat = OutputFormat.JSON
    query: str | None = None
    debug: bool = False
    only_show_errors: bool = False
    subscription: str | None = None
    resource_group: str | None = None
    workspace: str | None = None


@dataclass
class Session:
    options: GlobalOptions
    home: ConfigDir
    deps: Dependencies = field(default_factory=Dependencies)
    stdout: Console = field(default_factory=lambda: Console(soft_wrap=True, highlight=False))
    stderr: Console = field(
        default_factory=lambda: Console(stderr=True, soft_wrap=True, highlight=False)
    )
    _pipeline: Pipeline | None = field(default=None, init=False, repr=False)
    _profile: Profile | None = field(default=None, init=False, repr=False)

    # -- who and where ---------------------------------------------------------------------------

    def profile(self) -> Profile:
        if self._profile is None:
            profile = self.home.load_profile()
            if profile is None:
                raise Unauthenticated(
                    "Please run `propylon login` to set up an account.", code="NotSignedIn"
                )
            self._profile = profile
        return self._profile

    def subscription_id(self) -> str:
        if self.options.subscription:
            return self.options.subscription
        subscription = self.profile().subscription
        if subscription is None:
            raise Unauthenticated(
                "the signed-in account has no subscription; pass --subscription.",
                code="NoSubscription",
            )
        return subscription.id

    def default(self, key: str) -> str | None:
        return self.home.defaults().get(key)

    def resource_group(self) -> str:
        return self.options.resource_group or self.default("group") or ""

    def workspace(self) -> str:
        return self.options.workspace or self.default("workspace") or ""

    # -- clients -------------------------------------------------------------------------------

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            credential = self.deps.credential or CliCredential(self.home.path)
            self._pipeline = Pipeline(
                credential, ca_cert=self.profile().ca_cert, transport=self.deps.transport
            )
        return self._pipeline

    def ml_client(self) -> MLClient:
        pipeline = self.pipeline()
        assert pipeline.credential is not None
        return MLClient(
            pipeline.credential,
            self.subscription_id(),
            self.resource_group(),
            self.workspace(),
            server=self.profile().server,
            pipeline=pipeline,
            polling_interval=self.deps.polling_interval,
        )

    def authorization(self) -> AuthorizationClient:
        return AuthorizationClient(self.pipeline(), self.profile().server, self.subscription_id())

    def graph(self) -> GraphClient:
        return GraphClient(self.pipeline(), self.profile().server)

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()

    # -- output --------------------------------------------------------------------------------

    def emit(self, data: Any, *, table: TableTransform | None = None) -> None:
        """Print a result in the chosen format (nothing for ``None``, as ``az`` does)."""
        if data is None:
            return
        text = render(
            data,
            self.options.output,
            self.options.query,
            table_transform=table,
            color=self.stdout.is_terminal,
        )
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    def note(self, message: str) -> None:
        """A remark on stderr, silenced by ``--only-show-errors``."""
        if not self.options.only_show_errors:
            self.stderr.print(message, markup=False)

    def warn(self, message: str) -> None:
        if not self.options.only_show_errors:
            self.stderr.print(f"WARNING: {message}", markup=False, style="yellow")

    # -- long-running operations ---------------------------------------------------------------

    def wait(self, poller: Poller[T], title: str) -> T:
        """Poll to the end with a live status line (a spinner and elapsed time on a terminal,
        one line per status change otherwise)."""
        if poller.done() or self.options.only_show_errors:
            return poller.result()
        if self.stderr.is_terminal:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.stderr,
                transient=True,
            ) as progress:
                task = progress.add_task(f"{title}: {poller.status()}")
                while not poller.done():
                    poller.poll()
                    progress.update(task, description=f"{title}: {poller.status()}")
        else:
            last = poller.status()
            self.stderr.print(f"{title}: {last}", markup=False)
            while not poller.done():
                status = poller.poll()
                if status != last:
                    self.stderr.print(f"{title}: {status}", markup=False)
                    last = status
        return poller.result()
