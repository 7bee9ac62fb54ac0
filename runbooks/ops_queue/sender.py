"""Send a book to the `ops` queue, from the operator's side; wait for the run it becomes.

The sender checks the book exists here, asks the broker which workers consume ``ops`` (and
whether they have the runbook task: a node started without ``-I runbooks.ops_queue.runner``
would discard the request), signs the request (:mod:`runbooks.ops_queue.requests`) and sends
it; with a wait, it polls the run history until the worker has recorded the run's end.

    sent = sender.submit(app, celery, RunRequest("facts"), "ana", os.environ, wait=60)
    sent.refused or sent.gave_up or sent.run   # nothing sent / no finished run / the run

With ``slices`` above 1 it sends that many signed ``runbook.slice`` requests instead, sharing
one request id (each with its own nonce); the workers write them into one run
(:mod:`runbooks.ops_queue.slices`), which the wait finds by that id like any other.

The worker's side is :mod:`runbooks.ops_queue.runner`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.exceptions import OperationalError as BrokerError

from celery_app.errors import ServiceUnavailable
from runbooks.deploy.layout import OPS_QUEUE, OPS_RUNNER
from runbooks.engine import history
from runbooks.engine.book_files import book_path
from runbooks.errors import NotFound
from runbooks.ops_queue import requests as ops_requests
from runbooks.service import RunRequest, environ_with_dotenv, split

if TYPE_CHECKING:
    from celery import Celery

    from celery_app.bootstrap import Container

TASK = "runbook.run"  # the tasks runbooks.ops_queue.runner registers
SLICE_TASK = "runbook.slice"


@dataclass(frozen=True)
class Sent:
    """What became of a request: `refused` (nothing sent, and why), or sent as `request_id`;
    with a wait, `run` is the recorded run once it ended, else `gave_up` says why not."""

    request_id: str = ""
    refused: str = ""
    run: dict[str, Any] | None = None
    seen: Mapping[str, Any] | None = None  # the run's history row as last seen while waiting
    gave_up: str = ""


def submit(
    app: Container,
    celery: Celery,
    request: RunRequest,
    requested_by: str,
    environ: Mapping[str, str],
    wait_seconds: float = 0,
    slices: int = 1,
) -> Sent:
    """Send `request` to the ops queue (as `slices` slices when above 1) unless no consumer
    could run it; wait up to `wait_seconds` (0: do not wait) for the run to end, return it."""
    check(request, environ_with_dotenv(environ))  # before asking the workers anything
    task = SLICE_TASK if slices > 1 else TASK
    consumers = ops_consumers(celery, task=task)
    refused = refusal(consumers, task)
    if refused:
        return Sent(refused=refused)
    if slices > 1:
        request_id = send_slices(
            celery, request, requested_by, environ_with_dotenv(environ), slices
        )
    else:
        request_id = send(celery, request, requested_by, environ_with_dotenv(environ))
    if not wait_seconds:
        return Sent(request_id)
    seen = wait(app.sessions, request_id, wait_seconds)
    if seen is None or seen["status"] == "running":
        return Sent(
            request_id, seen=seen, gave_up=gave_up(request_id, wait_seconds, seen, consumers)
        )
    return Sent(request_id, run=history.get_run(app.sessions, int(seen["id"])), seen=seen)


def admitted(app: Container, request: RunRequest) -> str:
    """Who sends the book (the worker's record names them): judged here by the access gate,
    as a run here would be, approval included (the command line's `run --remote` and the
    console's start form both ask here)."""
    from runbooks.access import gate
    from runbooks.engine.book import load_book

    book = load_book(book_path(request.book, request.books_dir))
    why = f"book {book.name} requires approval ({book.path})" if book.approval else None
    intent = gate.Intent(
        "runbook", book.name, request.environment, request.arguments(), request.check, why
    )
    return gate.admit_apart(app.sessions, intent).operator


def check(request: RunRequest, environ: Mapping[str, str]) -> None:
    """The book is a name this checkout has (a typo fails here, not on the worker), and this
    process holds the signing key; NotFound or SigningKeyMissing otherwise."""
    book_path(request.book, request.books_dir)
    if not ops_requests.BOOK_NAME.fullmatch(request.book):
        raise NotFound(
            f"--remote runs books by name (a name `invoke runbooks` lists), got {request.book!r}"
        )
    ops_requests.signing_key(environ)


def _fields(request: RunRequest) -> dict[str, Any]:
    return {
        "book": request.book,
        "environment": request.environment,
        "limit": request.limit,
        "tags": split(request.tags),
        "skip_tags": split(request.skip_tags),
        "check": request.check,
    }


def send(celery: Celery, request: RunRequest, requested_by: str, environ: Mapping[str, str]) -> str:
    """Check the request, sign it, send it to ops; return its request id."""
    check(request, environ)
    signed = ops_requests.sign(_fields(request), requested_by, environ)
    celery.send_task(TASK, args=[signed], queue=OPS_QUEUE, retry_policy={"max_retries": 2})
    return str(signed["body"]["nonce"])


def send_slices(
    celery: Celery, request: RunRequest, requested_by: str, environ: Mapping[str, str], count: int
) -> str:
    """Check the request, sign `count` slices of it (all signed before any is sent), send them
    to ops; return the run's request id, which every slice names."""
    check(request, environ)
    if not 1 < count <= ops_requests.MAX_SLICES:
        raise ValueError(f"slices must be 2..{ops_requests.MAX_SLICES}, got {count}")
    run = uuid.uuid4().hex
    signed = [
        ops_requests.sign(
            _fields(request), requested_by, environ, part=ops_requests.SliceRef(run, i, count)
        )
        for i in range(count)
    ]
    for message in signed:
        celery.send_task(
            SLICE_TASK, args=[message], queue=OPS_QUEUE, retry_policy={"max_retries": 2}
        )
    return run


def ops_consumers(celery: Celery, timeout: float = 1.0, task: str = TASK) -> dict[str, bool]:
    """Each worker node that consumes `ops` -> whether it has the runbook `task` registered.

    A node consuming `ops` without the task (started without ``-I runbooks.ops_queue.runner``)
    discards a request as unregistered, so the sender asks first.
    """
    try:
        queues = celery.control.inspect(timeout=timeout).active_queues() or {}
        nodes = sorted(n for n, qs in queues.items() if any(q["name"] == OPS_QUEUE for q in qs))
        if not nodes:
            return {}
        inspect = celery.control.inspect(timeout=timeout, destination=nodes, limit=len(nodes))
        registered = inspect.registered() or {}
    except (OSError, BrokerError) as exc:
        raise ServiceUnavailable(f"broker did not answer: {exc} (is Redis up?)") from exc
    return {n: any(t.split()[0] == task for t in registered.get(n, [])) for n in nodes}


def refusal(consumers: Mapping[str, bool], task: str = TASK) -> str:
    """Why a request should not be sent ('' when a consumer can run it)."""
    if consumers and not any(consumers.values()):
        return (
            f"{', '.join(consumers)} consume{'s' if len(consumers) == 1 else ''} the ops queue "
            f"without the {task} task and would discard the request: restart "
            f"{'it' if len(consumers) == 1 else 'them'} with `-I {OPS_RUNNER}` "
            "(invoke workers.restart does), nothing was sent"
        )
    return ""


def find_run(sessions: Any, request_id: str, newest: int = 200) -> Mapping[str, Any] | None:
    """The recorded run a remote request started (None until the worker has recorded it)."""
    for run in history.list_runs(sessions, newest):
        if run.get("arguments", {}).get("request") == request_id:
            return run
    return None


def wait(sessions: Any, request_id: str, timeout: float) -> Mapping[str, Any] | None:
    """Wait up to `timeout` seconds for the run to finish; return it (None if it never began)."""
    deadline = time.monotonic() + timeout
    found = None
    while time.monotonic() < deadline:
        found = find_run(sessions, request_id)
        if found is not None and found["status"] != "running":
            return found
        time.sleep(0.25)
    return found


def gave_up(
    request_id: str, waited: float, run: Mapping[str, Any] | None, consumers: Mapping[str, bool]
) -> str:
    """Why `run --remote --wait` stopped waiting, with what to look at next."""
    if run is not None:
        return (
            f"run {run['id']} (request {request_id}) still running after {waited:.0f}s: "
            f"`invoke history.show {run['id']}` shows it when it ends"
        )
    if not consumers:
        return (
            f"no worker consumes the ops queue: request {request_id} waits there until one "
            f"does (start one with the ops queue: invoke workers.start or a deploy)"
        )
    return (
        f"request {request_id} not started after {waited:.0f}s: "
        f"{', '.join(n for n, ok in consumers.items() if ok)} consume ops but are busy; "
        f"`invoke history` shows it once one starts it"
    )
