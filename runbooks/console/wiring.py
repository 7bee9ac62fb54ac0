"""What every page works on, built once by the entry point and kept on the Starlette app."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from celery_app.stores.login import ACCOUNT_POLICY, ADDRESS_POLICY, LoginGuard, LoginPolicy
from celery_app.stores.sessions import SessionPolicy, SessionStore
from runbooks.console.background import Running
from runbooks.console.watch import Latest
from runbooks.engine.redact import Redactor, for_settings

if TYPE_CHECKING:
    from celery import Celery
    from starlette.requests import Request

    from celery_app.bootstrap import Container
    from celery_app.ops.failed_tasks import Send
    from celery_app.ops.status import Status
    from celery_app.ops.workers import NodeStatus


@dataclass(frozen=True)
class Console:
    """The app (SQL, Redis roles), a Celery app to talk to workers and send tasks, the
    platform's session store and login guard, and the redactor of what pages show; for
    deploys and restarts, as the command line has them: the environment variables (over
    .env), the inventory folder (None: ./inventory) and the checkout refs are deployed from."""

    app: Container
    celery: Celery
    sessions: SessionStore
    guard: LoginGuard
    redactor: Redactor
    workers_timeout: float = 1.0  # how long a ping waits for workers to answer
    workers_every: float = 5.0  # how often the workers are pinged (pages show the last answer)
    environ: Mapping[str, str] = field(default_factory=dict)
    inventory_dir: Path | None = None
    repo: Path = field(default_factory=Path.cwd)
    watch: Latest[list[NodeStatus]] = field(init=False, repr=False, compare=False)
    running: Running = field(init=False, repr=False, compare=False, default_factory=Running)

    def __post_init__(self) -> None:
        from celery_app.ops import workers

        def ping() -> list[NodeStatus]:
            return workers.status(self.celery, self.workers_timeout)

        object.__setattr__(self, "watch", Latest(ping, self.workers_every))

    def workers(self) -> tuple[list[NodeStatus], dt.datetime]:
        """The workers as they last answered a ping, and when (at most `workers_every` ago)."""
        return self.watch.get(wait=self.workers_timeout + 30)

    def status(self) -> Status:
        """The `invoke status` screen's value, with the workers as they last answered."""
        from celery_app.ops import status as health

        return health.collect(self.app, lambda: [n.as_dict() for n in self.workers()[0]])

    def close(self) -> None:
        """Stop what the console runs in the background; wait for running actions to end."""
        self.watch.close()
        self.running.join()

    def sender(self) -> Send:
        """How `failed.retry` sends a task again (the command's own sender)."""
        from celery_app.ops import failed_tasks

        return failed_tasks.sender(self.celery)


def wire(
    app: Container,
    celery: Celery,
    *,
    account: LoginPolicy = ACCOUNT_POLICY,
    address: LoginPolicy = ADDRESS_POLICY,
    session: SessionPolicy | None = None,
    workers_timeout: float = 1.0,
    environ: Mapping[str, str] | None = None,
    inventory_dir: Path | None = None,
    repo: Path | None = None,
) -> Console:
    """The console over `app`: sessions on its `sessions` Redis role, sign-in attempts counted
    on its `ratelimit` role (the platform's own stores, with their default policies)."""
    return Console(
        app=app,
        celery=celery,
        sessions=SessionStore.from_container(app, session),
        guard=LoginGuard.from_container(app, account, address),
        redactor=for_settings(app.settings),
        workers_timeout=workers_timeout,
        environ=dict(environ or {}),
        inventory_dir=inventory_dir,
        repo=repo or Path.cwd(),
    )


def of(request: Request) -> Console:
    """The console a request is served by."""
    console: Console = request.app.state.console
    return console
