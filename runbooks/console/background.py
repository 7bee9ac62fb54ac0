"""Actions that take tens of seconds (deploy, rollback, a graceful restart) run in a thread of
the console process, not in the request.

The request starts the thread and waits only until the action's history record is open
(:func:`runbooks.engine.history.announcing`: the first record opened in the thread is the
action's own), then redirects to that record's page, which shows it running and, once closed,
its outcome. What fails before the record opens (a bad ref, the access gate's refusal, an
approval request) is raised in the request, as the command line raises it before anything
runs: nothing was recorded, nothing acted.

The thread acts as the signed-in operator doing the command (the gate judges it as it would
judge `invoke deploy ...`). Its progress, the engine's listener and the deploy's `say`, is
built in one place, :func:`progress`: a live view of a running action adds its listener there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from celery_app.errors import ServiceUnavailable
from runbooks.access.context import signed_in_as
from runbooks.engine import history

if TYPE_CHECKING:
    from runbooks.console.auth import Viewer
    from runbooks.console.wiring import Console
    from runbooks.engine.executor import Listener

Say = Callable[[str], None]
Work = Callable[["Listener | None", Say], object]
OPEN_WAIT = 60.0  # seconds the request waits for the record (git, inventory, SQL: usually ms)
log = logging.getLogger("runbooks.console")


@dataclass
class Action:
    """One action in its thread: what it runs as, and the record it opened (once it did)."""

    command: str
    opened: Future[int] = field(default_factory=Future)

    @property
    def run_id(self) -> int | None:
        return self.opened.result() if self.opened.done() and not self.failed() else None

    def failed(self) -> bool:
        return self.opened.done() and self.opened.exception() is not None

    def open(self, run_id: int) -> None:
        if not self.opened.done():  # later records (a deploy's phases) are its own business
            self.opened.set_result(run_id)


def progress(action: Action, console: Console) -> tuple[Listener | None, Say]:
    """The one place a background action's progress is built: the listener the engine calls
    per batch, step and host, and the `say` a deploy calls per phase. The engine records and
    streams each run's steps itself (a deploy's phases are runs of their own, the restart is a
    book run); what `say` tells goes to the action's record's live events
    (:mod:`runbooks.engine.run_events`) once the record is open, for its page."""
    from runbooks.engine import run_events

    def say(line: str) -> None:
        log.debug("run %s: %s", action.run_id, line)
        if action.run_id is not None:
            run_events.writer(console.app, action.run_id, console.redactor).say(line)

    return None, say


class Running:
    """The console's background actions, to wait for at shutdown (a deploy is not cut off)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()

    def start(self, name: str, body: Callable[[], None]) -> None:
        def run() -> None:
            try:
                body()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def count(self) -> int:
        with self._lock:
            return len(self._threads)

    def join(self) -> None:
        """Wait for every running action to end (each closes its own record)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


async def start(
    console: Console,
    viewer: Viewer,
    command: str,
    typed: Mapping[str, Any],
    work: Work,
) -> int:
    """Run `work(listener, say)` in a thread as `viewer` doing `command` (with `typed`, its
    arguments as the command line names them); return the id of the record it opened.

    Raises what `work` raised before it opened a record (AccessDenied, ApprovalPending, a
    refusal of its input); ServiceUnavailable when no record opened within OPEN_WAIT.
    """
    action = Action(command)

    def body() -> None:
        listener, say = progress(action, console)
        try:
            with signed_in_as(viewer.name, command, typed), history.announcing(action.open):
                work(listener, say)
        except BaseException as exc:
            if not action.opened.done():
                action.opened.set_exception(exc)
                return
            # Its record is closed with the outcome; the log names only the run.
            log.warning("run %s (%s) ended with %s", action.run_id, command, type(exc).__name__)
        if not action.opened.done():
            action.opened.set_exception(ServiceUnavailable(f"{command} opened no record"))

    console.running.start(f"console {command}", body)
    try:
        return await run_in_threadpool(action.opened.result, OPEN_WAIT)
    except TimeoutError:
        raise ServiceUnavailable(
            f"{command} has not opened its history record after {OPEN_WAIT:.0f} s; it may "
            "still start: look at the Runs page before trying again"
        ) from None
