"""Run a book the way the command line does: load, redact, record in history, execute.

This is the API the commands (and later ops code) call; it takes the wired container (settings
and SQL sessions from :mod:`celery_app.bootstrap`) and the environment mapping, and reads nothing
global itself.

    result = run_book(app, RunRequest("facts", environment="staging"), environ=os.environ)
    result = run_steps(app, "restart workers", [{"shell": "systemctl restart celery"}],
                       environment="production", environ=os.environ, limit="workers")
    result = run_python(app, "queue.purge", purge_fn, environment="local", environ=os.environ)

Every run is recorded first (a `running` row, before any host is connected to) and finished
with each host's and step's outcome, so a run that cannot be recorded does not start; a row that
cannot be finished is a warning (`runbooks.engine.history`), and the run's result is still returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbooks.actions import Actions, builtins, with_python
from runbooks.actions.base import Outcome, StepContext
from runbooks.engine import history, run_events
from runbooks.engine.book import Book, inline_book, load_book
from runbooks.engine.book_files import book_path
from runbooks.engine.executor import Executor, Fanout, Listener, RunOptions
from runbooks.engine.inventory import Inventory, load_environment
from runbooks.engine.redact import RedactingFilter, Redactor, for_settings
from runbooks.engine.results import RunResult
from runbooks.errors import NotFound


@dataclass(frozen=True)
class RunRequest:
    """What the operator asked for (`invoke run BOOK --env ... --limit ...`)."""

    book: str
    environment: str = "local"
    limit: str | None = None
    tags: Sequence[str] = ()
    skip_tags: Sequence[str] = ()
    check: bool = False
    diff: bool = False
    retry_failed: int | None = None
    extra_vars: Mapping[str, Any] = field(default_factory=dict)
    inventory_dir: Path | None = None
    books_dir: Path | None = None

    def arguments(self) -> dict[str, Any]:
        return {
            "book": self.book,
            "env": self.environment,
            "limit": self.limit,
            "tags": list(self.tags),
            "skip_tags": list(self.skip_tags),
            "check": self.check,
            "retry_failed": self.retry_failed,
            **({"diff": True} if self.diff else {}),
        }


@dataclass
class Prepared:
    """A loaded book and inventory with the redactor that covers both."""

    book: Book
    inventory: Inventory
    redactor: Redactor
    options: RunOptions


def environ_with_dotenv(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` over the `.env` file it names (MAQSAFY_ENV_FILE, default the project's .env)."""
    from celery_app.settings import env_file_path, read_dotenv

    return {**read_dotenv(env_file_path(environ)), **environ}


def split(values: str | Sequence[str] | None) -> list[str]:
    """`a,b` or ["a", "b,c"] -> ["a", "b", "c"]."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def prepare(app: Any, request: RunRequest, environ: Mapping[str, str]) -> Prepared:
    """Load and validate everything a run needs; raise before anything runs."""
    book = load_book(book_path(request.book, request.books_dir), environ=environ)
    return _prepare_loaded(app, book, request, environ)


def _prepare_loaded(
    app: Any, book: Book, request: RunRequest, environ: Mapping[str, str]
) -> Prepared:
    inventory = load_environment(request.environment, environ, request.inventory_dir)
    become = request.extra_vars.get("become_password")
    secrets = [*inventory.secrets, *book.secrets, *([str(become)] if become else [])]
    redactor = for_settings(app.settings, secrets)
    limit = ",".join(split(request.limit)) or None
    if request.retry_failed is not None:
        run, failed = history.failed_hosts(app.sessions, request.retry_failed)
        if run["name"] != book.name or run["environment"] != inventory.environment:
            raise NotFound(
                f"run {request.retry_failed} was {run['name']} on {run['environment']}, "
                f"not {book.name} on {inventory.environment}"
            )
        if not failed:
            raise NotFound(f"run {request.retry_failed} has no failed host to retry")
        chosen = {h.name for h in inventory.select(book.hosts, limit)} & set(failed)
        if not chosen:
            raise NotFound(
                f"the hosts that failed in run {request.retry_failed} ({', '.join(failed)}) "
                "are not selected by this book and --limit"
            )
        limit = ",".join(h for h in inventory.hosts if h in chosen)
    options = RunOptions(
        check=request.check,
        limit=limit,
        tags=frozenset(split(request.tags)),
        skip_tags=frozenset(split(request.skip_tags)),
        extra_vars=dict(request.extra_vars),
        diff=request.diff,
    )
    return Prepared(book, inventory, redactor, options)


@contextmanager
def run_log(path: Path | None, redactor: Redactor) -> Iterator[None]:
    """Log the run's steps to `path`, every line redacted."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger("runbooks")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def default_log_path(app: Any) -> Path:
    return Path(app.settings.var_dir) / "log" / "runbooks.log"


def execute(
    app: Any,
    prepared: Prepared,
    arguments: Mapping[str, Any],
    listener: Listener | None = None,
    log_path: Path | None = None,
    operator: str | None = None,
) -> RunResult:
    """Record, run and finish recording one prepared run; return the result (run_id set).

    The record is judged by the access gate (a book with `approval: required` needs an
    approval); `operator` is given only by a caller that verified who asked (the ops worker).
    `listener` hears the run's progress beside its live events (:mod:`run_events`).
    """
    book, inventory, redactor = prepared.book, prepared.inventory, prepared.redactor
    executor = Executor(book, inventory, prepared.options, listener)
    executor.hosts()  # fail on a bad --limit before anything is recorded
    run_id = history.start_run(
        app.sessions,
        "runbook",
        book.name,
        inventory.environment,
        arguments,
        prepared.options.check,
        redactor,
        operator,
        approval=f"book {book.name} requires approval ({book.path})" if book.approval else None,
    )
    events = run_events.writer(app, run_id, redactor)
    executor.listener = Fanout(listener, events)
    result = RunResult(
        book.name,
        inventory.environment,
        prepared.options.check,
        run_id=run_id,
        arguments=dict(arguments),
    )
    with run_log(log_path if log_path is not None else default_log_path(app), redactor):
        logging.getLogger("runbooks.run").info(
            "run %s: %s on %s %s", run_id, book.name, inventory.environment, dict(arguments)
        )
        try:
            executor.run(result)
        except BaseException as exc:  # recorded as interrupted, then re-raised
            result.stopped = f"interrupted: {type(exc).__name__}: {exc}".rstrip(": ")
            raise
        finally:
            with history.closing(run_id, book.name):  # a row left open hides no outcome
                history.finish_run(app.sessions, run_id, result, redactor)
            events.end(result.status, result.stopped or "")
            announce_failure(app, prepared, result)
    return result


def announce_failure(app: Any, prepared: Prepared, result: RunResult) -> None:
    """A run that failed (not check mode, not a deploy's phase: the deploy says it) is the
    `run.failed` notification of the environment's webhooks that want it."""
    inventory = prepared.inventory
    if result.ok or result.check or result.book.startswith("deploy.") or not inventory.notify:
        return
    from runbooks.notify import notify

    failed = result.failed
    notify(
        inventory,
        "run.failed",
        {
            "summary": f"run {result.run_id} ({result.book}) failed on {inventory.environment}: "
            + (result.stopped or f"{len(failed)} host(s) failed"),
            "book": result.book,
            "run_id": result.run_id,
            "operator": result.arguments.get("requested_by") or history.operator_name(),
            "hosts": [f"{n}: {h.status} {h.message}".strip() for n, h in failed.items()],
            "stopped": result.stopped,
        },
        settings=app.settings,
        redactor=prepared.redactor,
    )


def run_book(
    app: Any,
    request: RunRequest,
    environ: Mapping[str, str],
    listener: Listener | None = None,
    log_path: Path | None = None,
) -> tuple[RunResult, Redactor]:
    """Run the book `request` names; return the result and the redactor for its output."""
    prepared = prepare(app, request, environ)
    return execute(app, prepared, request.arguments(), listener, log_path), prepared.redactor


def run_steps(
    app: Any,
    name: str,
    steps: list[dict[str, Any]],
    *,
    environment: str,
    environ: Mapping[str, str],
    limit: str | None = None,
    check: bool = False,
    hosts: str = "all",
    serial: int | str | None = None,
    listener: Listener | None = None,
    inventory_dir: Path | None = None,
    max_fail_percentage: float | None = None,
    vars: Mapping[str, Any] | None = None,
    actions: Actions | None = None,
) -> tuple[RunResult, Redactor]:
    """Run steps written in Python (dicts shaped like a book's steps) on `environment`; their
    actions from `actions` (default the built-ins)."""
    document: dict[str, Any] = {"hosts": hosts, "steps": steps, "vars": dict(vars or {})}
    if serial is not None:
        document["serial"] = serial
    if max_fail_percentage is not None:
        document["max_fail_percentage"] = max_fail_percentage
    book = inline_book(name, document, actions, environ)
    request = RunRequest(
        name, environment=environment, limit=limit, check=check, inventory_dir=inventory_dir
    )
    prepared = _prepare_loaded(app, book, request, environ)
    return execute(app, prepared, request.arguments(), listener), prepared.redactor


def run_python(
    app: Any,
    name: str,
    fn: Callable[[StepContext, dict[str, Any]], Outcome],
    *,
    environment: str,
    environ: Mapping[str, str],
    limit: str | None = None,
    check: bool = False,
    read_only: bool = False,
    params: Mapping[str, Any] | None = None,
    listener: Listener | None = None,
    inventory_dir: Path | None = None,
) -> tuple[RunResult, Redactor]:
    """Run a Python callable once per host (with that host's target) through the engine."""
    action = f"python.{name}"
    return run_steps(
        app,
        name,
        [{"name": name, action: dict(params or {})}],
        environment=environment,
        environ=environ,
        limit=limit,
        check=check,
        listener=listener,
        inventory_dir=inventory_dir,
        actions=with_python(builtins(), action, fn, read_only=read_only),
    )


def describe_books(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every book under runbooks/books with its description and tags (invalid ones say why)."""
    from runbooks.engine.book_files import list_books
    from runbooks.errors import BookError

    found = []
    for path in list_books(directory):
        try:
            book = load_book(path)
            found.append(
                {
                    "name": path.stem,
                    "description": book.description,
                    "hosts": book.hosts,
                    "steps": len(book.steps),
                    "tags": sorted(book.tags),
                    "error": None,
                }
            )
        except BookError as exc:
            found.append(
                {
                    "name": path.stem,
                    "description": "",
                    "hosts": "",
                    "steps": 0,
                    "tags": [],
                    "error": str(exc),
                }
            )
    return found
