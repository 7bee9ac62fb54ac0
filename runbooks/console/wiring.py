"""What every page works on, built once by the entry point and kept on the Starlette app."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_app.infra.redaction import mask_patterns
from celery_app.stores.login import ACCOUNT_POLICY, ADDRESS_POLICY, LoginGuard, LoginPolicy
from celery_app.stores.sessions import SessionPolicy, SessionStore
from runbooks.console.background import Running
from runbooks.console.watch import Latest
from runbooks.engine.redact import Redactor, for_settings

log = logging.getLogger("maqsafy.console")

if TYPE_CHECKING:
    from celery import Celery
    from starlette.requests import Request

    from celery_app.bootstrap import Container
    from celery_app.ops.failed_tasks import Send
    from celery_app.ops.status import Status
    from celery_app.ops.workers import NodeStatus
    from runbooks.engine.run_events import RunEvents


@dataclass(frozen=True)
class Console:
    """The app (SQL, Redis roles), a Celery app to talk to workers and send tasks, the
    platform's session store and login guard, the redactor of what pages show, and the
    environment books are sent to the ops queue with (the ops signing key, the books folder);
    for deploys and restarts, as the command line has them: the inventory folder (None:
    ./inventory) and the checkout refs are deployed from."""

    app: Container
    celery: Celery
    sessions: SessionStore
    guard: LoginGuard
    redactor: Redactor
    workers_timeout: float = 1.0  # how long a ping waits for workers to answer
    workers_every: float = 5.0  # how often the workers are pinged (pages show the last answer)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    inventory_dir: Path | None = None
    repo: Path = field(default_factory=Path.cwd)
    samples_every: float = 60.0  # how often the queues are sampled for the Queues chart
    watch: Latest[list[NodeStatus]] = field(init=False, repr=False, compare=False)
    sampler: Latest[int] = field(init=False, repr=False, compare=False)
    # the Queues charts last drawn, per window (pages/queues.py): drawn again once a minute
    drawings: dict[int, tuple[Any, Any]] = field(
        init=False, default_factory=dict, repr=False, compare=False
    )
    running: Running = field(init=False, repr=False, compare=False, default_factory=Running)

    def __post_init__(self) -> None:
        from celery_app.ops import workers

        def ping() -> list[NodeStatus]:
            return workers.status(self.celery, self.workers_timeout)

        object.__setattr__(self, "watch", Latest(ping, self.workers_every))
        object.__setattr__(self, "sampler", Latest(self.sample_queues, self.samples_every))

    def sample_queues(self) -> int:
        """Store the queues' numbers as this minute's sample (the Queues chart's data)."""
        from celery_app.ops import queue_samples

        try:
            return queue_samples.sample(self.app.redis("broker"), self.app.keyspace)
        except Exception as exc:  # the next minute tries again; the page says what it has
            log.warning("queue sample not taken: %s", mask_patterns(str(exc)))
            raise

    def start(self) -> None:
        """Start what the console runs in the background from its first second: the queue
        sampler (the workers' ping starts with the first page that shows them)."""
        self.sampler.start()

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
        self.sampler.close()
        self.running.join()

    def events(self) -> RunEvents:
        """Runs' live events (the broker's Redis, where the runs write them)."""
        from runbooks.engine import run_events

        return run_events.store(self.app)

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
    on its `ratelimit` role (the platform's own stores, with their default policies); books
    are sent to the ops queue with `environ` over the `.env` file (default: none)."""
    from runbooks.service import environ_with_dotenv

    return Console(
        app=app,
        celery=celery,
        sessions=SessionStore.from_container(app, session),
        guard=LoginGuard.from_container(app, account, address),
        redactor=for_settings(app.settings),
        workers_timeout=workers_timeout,
        environ=environ_with_dotenv(environ or {}),
        inventory_dir=inventory_dir,
        repo=repo or Path.cwd(),
    )


def of(request: Request) -> Console:
    """The console a request is served by."""
    console: Console = request.app.state.console
    return console
