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

``runbook.run`` is acknowledged when it starts (not late): a book is not idempotent in
general, so a worker lost mid-run leaves the run recorded as ``running`` rather than running it
twice. ``runbook.slice`` (one slice of ``run --remote --slices N``) is acknowledged late and
requeued when its worker is lost: SQL knows which of its hosts already ran, so a slice taken
again runs only the rest (:mod:`runbooks.ops_queue.slices` says what happens to a host that was
mid-step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from celery_app import bootstrap
from celery_app.celery import app
from runbooks.engine import history, history_slices
from runbooks.engine.redact import for_settings
from runbooks.errors import NotFound, RunbookError
from runbooks.ops_queue import requests as ops_requests
from runbooks.ops_queue.sender import SLICE_TASK, TASK
from runbooks.ops_queue.slices import run_slice
from runbooks.service import RunRequest, environ_with_dotenv, execute, prepare


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
    ready = prepared_or_refused(container, message, envelope, environ, request=envelope.nonce)
    if isinstance(ready, dict):
        return ready
    prepared, arguments = ready
    # who signed the request is vouched for by the ops key: the record names them
    result = execute(container, prepared, arguments, operator=envelope.requested_by or "unknown")
    return {"run_id": result.run_id, "ok": result.ok}


@app.task(name=SLICE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def run_remote_slice(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run one slice of a sliced run a signed request names; refuse (and record) anything else.

    A slice may come again (its worker died; the broker restored it): its nonce seen before is
    not a replay to refuse, and past its age it still runs once its run has started; what is
    left to run is SQL's to say, so running it again runs only what no one finished.
    """
    container = bootstrap.get()
    environ = environ_with_dotenv(os.environ)
    message = args[0] if len(args) == 1 and not kwargs else {"args": list(args)[:4]}
    try:
        envelope = ops_requests.verify(message, environ, fresh=False)
        part = envelope.slice
        if part is None:
            raise ops_requests.RequestRefused(f"{SLICE_TASK} without a slice")
        if history_slices.find_run(container.sessions, part.request) is None:
            too_old = ops_requests.age_refusal(envelope.issued_at)
            if too_old:
                raise ops_requests.RequestRefused(too_old)
        with suppress(ops_requests.RequestRefused):  # delivered again: SQL says what is left
            ops_requests.consume(container.sessions, envelope.nonce)
    except ops_requests.RequestRefused as exc:
        record_refusal(container, message, str(exc))
        return {"refused": str(exc)}
    ready = prepared_or_refused(
        container, message, envelope, environ, request=part.request, slices=part.count
    )
    if isinstance(ready, dict):
        return ready
    prepared, arguments = ready
    holder = f"{self.request.hostname or 'worker'}:{os.getpid()}"
    try:
        done = run_slice(
            container,
            prepared,
            arguments,
            envelope.requested_by or "unknown",
            part,
            holder,
            container.settings.ops_slice_lease,
        )
    except NotFound as exc:  # --limit names no host of this worker's inventory
        record_refusal(container, message, f"cannot run here: {exc}")
        return {"refused": str(exc)}
    return {"run_id": done.run_id, "slices": [i + 1 for i in done.ran]}


def prepared_or_refused(
    container: Any, message: Any, envelope: Any, environ: Mapping[str, str], **said: Any
) -> tuple[Any, dict[str, Any]] | dict[str, str]:
    """The verified request made ready to run here, with the arguments its record keeps
    (`said`: the request id, the slices); or, for a book or inventory this worker does not
    have, the refusal, said in the history rather than lost."""
    run = RunRequest(
        **envelope.fields,
        inventory_dir=ops_requests.inventory_dir(environ),
        books_dir=ops_requests.books_dir(environ),
    )
    try:
        prepared = prepare(container, run, environ)
    except RunbookError as exc:
        record_refusal(container, message, f"cannot run here: {exc}")
        return {"refused": str(exc)}
    arguments = {
        **run.arguments(),
        "remote": True,
        **said,
        "requested_by": envelope.requested_by,
    }
    return prepared, arguments


def record_refusal(container: Any, message: Any, reason: str) -> None:
    """A refused request is history too: what it claimed to be, and why it did not run."""
    claimed = ops_requests.claimed(message)
    history.record_command(
        container.sessions,
        "runbook.refused",
        environment=claimed.get("environment", ""),
        arguments={
            **claimed,
            "request": claimed.get("run_request") or claimed.get("nonce", ""),
            "remote": True,
        },
        status="failed",
        message=reason,
        operator="(unverified)",
        redactor=for_settings(container.settings),
    )
