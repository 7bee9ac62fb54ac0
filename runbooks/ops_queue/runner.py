"""Run a book as a Celery task on the `ops` queue, from inside the network; the result is history.

An operator's laptop may reach the broker but not the hosts (or the hosts only from inside): the
book is sent as ``runbook.run`` to the ``ops`` queue, a worker inside the network runs it through
the same engine, and the run is recorded in SQL like any other, with ``remote`` and
``requested_by`` in its arguments and a request id the sender waits on.

Requests are signed (:mod:`runbooks.ops_queue.requests`): a worker runs only a request signed with
the ops key it holds, fresh, never seen before, for an environment it serves; anything else is
refused and the refusal recorded.

The worker that serves ``ops`` loads this module itself (the app never imports ``runbooks/``)::

    celery -A celery_app worker -Q ops -I runbooks.ops_queue.runner

The task is acknowledged when it starts (not late): a book is not idempotent in general, so a
worker lost mid-run leaves the run recorded as ``running`` rather than running it twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError as BrokerError

from celery_app import bootstrap
from celery_app.celery import app
from celery_app.errors import ServiceUnavailable
from runbooks.deploy.layout import OPS_QUEUE, OPS_RUNNER
from runbooks.engine import history
from runbooks.engine.book import book_path
from runbooks.engine.redact import for_settings
from runbooks.errors import NotFound, RunbookError
from runbooks.ops_queue import requests as ops_requests
from runbooks.service import RunRequest, environ_with_dotenv, execute, prepare, split

TASK = "runbook.run"


@app.task(name=TASK, acks_late=False)
def run_remote(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run the book a signed request names on this worker; refuse (and record) anything else.

    Anything may arrive here (anyone who can write to the broker can send it), so the message
    is taken apart only after its signature, age, nonce and environment check out.
    """
    container = bootstrap.get()
    environ = environ_with_dotenv(os.environ)
    message = args[0] if len(args) == 1 and not kwargs else {"args": list(args)[:4]}
    try:
        envelope = ops_requests.verify(message, environ)
        ops_requests.consume(container.sessions, envelope.nonce)
    except ops_requests.RequestRefused as exc:
        record_refusal(container, message, str(exc))
        return {"refused": str(exc)}
    run = RunRequest(**envelope.fields)
    try:  # a book or inventory this worker does not have: said in the history, not lost
        prepared = prepare(container, run, environ)
    except RunbookError as exc:
        record_refusal(container, message, f"cannot run here: {exc}")
        return {"refused": str(exc)}
    arguments = {
        **run.arguments(),
        "remote": True,
        "request": envelope.nonce,
        "requested_by": envelope.requested_by,
    }
    result = execute(container, prepared, arguments)
    return {"run_id": result.run_id, "ok": result.ok}


def record_refusal(container: Any, message: Any, reason: str) -> None:
    """A refused request is history too: what it claimed to be, and why it did not run."""
    claimed = ops_requests.claimed(message)
    history.record_command(
        container.sessions,
        "runbook.refused",
        environment=claimed.get("environment", ""),
        arguments={**claimed, "request": claimed.get("nonce", ""), "remote": True},
        status="failed",
        message=reason,
        operator="(unverified)",
        redactor=for_settings(container.settings),
    )


def send(celery: Celery, request: RunRequest, requested_by: str, environ: Mapping[str, str]) -> str:
    """Check the book exists here, sign the request, send it to ops; return its request id."""
    book_path(request.book, request.books_dir)  # a typo fails here, not on the worker
    if not ops_requests.BOOK_NAME.fullmatch(request.book):
        raise NotFound(
            f"--remote runs books by name (a name `invoke runbooks` lists), got {request.book!r}"
        )
    signed = ops_requests.sign(
        {
            "book": request.book,
            "environment": request.environment,
            "limit": request.limit,
            "tags": split(request.tags),
            "skip_tags": split(request.skip_tags),
            "check": request.check,
        },
        requested_by,
        environ,
    )
    celery.send_task(TASK, args=[signed], queue=OPS_QUEUE, retry_policy={"max_retries": 2})
    return str(signed["body"]["nonce"])


def ops_consumers(celery: Celery, timeout: float = 1.0) -> dict[str, bool]:
    """Each worker node that consumes `ops` -> whether it has the runbook task registered.

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
    return {n: any(t.split()[0] == TASK for t in registered.get(n, [])) for n in nodes}


def refusal(consumers: Mapping[str, bool]) -> str:
    """Why a request should not be sent ('' when a consumer can run it)."""
    if consumers and not any(consumers.values()):
        return (
            f"{', '.join(consumers)} consume{'s' if len(consumers) == 1 else ''} the ops queue "
            f"without the {TASK} task and would discard the request: restart "
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
