"""`run` and `runbooks`: run a runbook here, over SSH or on the ops queue; list the runbooks."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from invoke import Context

from runbooks.cli import render
from runbooks.cli.apps import container, health_app, inventory_dir
from runbooks.cli.errors import exit_with, operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, REASON_HELP, run_id, task, whole
from runbooks.cli.output import emit

if TYPE_CHECKING:
    from runbooks.service import RunRequest


def run_book(request: RunRequest, as_json: bool) -> None:
    """Run `request` here with live progress, then its recap; exit 1 when a host failed."""
    from runbooks import service

    app = container()
    with operator_errors():
        prepared = service.prepare(app, request, service.environ_with_dotenv(os.environ))
        progress = None if as_json else render.ConsoleProgress(prepared.redactor)
        result = service.execute(app, prepared, request.arguments(), progress)
    redactor = prepared.redactor
    emit(redactor.value(result.to_dict()), as_json, lambda _: render.print_recap(result, redactor))
    exit_with(0 if result.ok else 1)


def send_book(request: RunRequest, wait: int, as_json: bool, slices: int = 1) -> None:
    """`run BOOK --remote`: send the book to the ops queue (as `slices` tasks); with --wait,
    show the recorded run (one run, however many slices)."""
    from dataclasses import replace

    from celery_app.celery import make_app
    from runbooks.ops_queue import sender
    from runbooks.ops_queue.requests import books_dir
    from runbooks.service import environ_with_dotenv

    if request.diff:
        refuse("--diff prints on this console: run without --remote to see the diff")
    if request.retry_failed or request.inventory_dir:
        refuse("--remote runs with the worker's inventory; drop --retry-failed and --inventory")
    app = health_app("", "")  # the embedded default's Redis is started, as any command would
    celery = make_app(app.settings)
    request = replace(request, books_dir=books_dir(environ_with_dotenv(os.environ)))
    with operator_errors():
        who = sender.admitted(app, request)
        sent = sender.submit(app, celery, request, who, os.environ, wait, slices)
    if sent.refused:
        refuse(sent.refused, code=1)
    if sent.gave_up:
        data = {"request": sent.request_id, "run": sent.seen, "error": sent.gave_up}
        emit(data, as_json, lambda _: None)
        refuse(sent.gave_up, code=1)
    if sent.run is None:
        parts = f" as {slices} slices" if slices > 1 else ""
        message = f"sent {request.book!r} to the ops queue{parts} (request {sent.request_id})"
        emit(
            {"request": sent.request_id, "run": None},
            as_json,
            lambda _: print(f"{message}; `invoke history` shows it once a worker starts it"),
        )
        return
    if sent.run["name"] == "runbook.refused":
        emit(sent.run, as_json, lambda _: None)
        why = f"the ops worker refused request {sent.request_id}: {sent.run['message']}"
        refuse(why, code=1)
    emit(sent.run, as_json, render.print_run)
    exit_with(0 if sent.run["status"] == "ok" else 1)


@task(
    name="run",
    help={
        "book": "the runbook: a name from `invoke runbooks` or a path to a .yml file",
        "env": "the environment (inventory/<env>.yml; default local: this machine)",
        "limit": "only these hosts or groups: web-1,workers or a glob, !name excludes",
        "tags": "only steps with these tags (comma-separated)",
        "skip_tags": "skip steps with these tags",
        "check": "check mode: report what would change, change nothing (with diffs)",
        "diff": "show a unified diff of what file/template steps change (masked like all output)",
        "retry_failed": "rerun only the hosts that failed in this run id (`invoke history`)",
        "inventory": "the inventory folder (default ./inventory)",
        "remote": "send the run to the ops queue: a worker inside the network runs it",
        "wait": "with --remote: wait up to this many seconds (0 to 86400) for the result",
        "slices": "with --remote: split the hosts into this many tasks (1 to 64) that any ops "
        "workers run; one run in the history",
        **JSON_HELP,
        **REASON_HELP,
    },
)
def run(
    c: Context,
    book: str,
    env: str = "local",
    limit: str = "",
    tags: str = "",
    skip_tags: str = "",
    check: bool = False,
    diff: bool = False,
    json: bool = False,
    retry_failed: str = "",
    inventory: str = "",
    remote: bool = False,
    wait: str = "0",
    slices: str = "",
    reason: str = "",
) -> None:
    """Run a runbook on an environment's hosts; live progress, then a recap per host."""
    from runbooks.ops_queue.requests import MAX_SLICES
    from runbooks.service import RunRequest

    rerun = run_id(retry_failed, " for --retry-failed") if retry_failed else None
    seconds = whole(wait, "--wait", 0, 86_400)
    if slices and not remote:
        refuse("--slices splits a run across ops workers: add --remote (or drop --slices)")
    parts = whole(slices, "--slices", 1, MAX_SLICES) if slices else 1
    container()
    request = RunRequest(
        book,
        environment=env,
        limit=limit or None,
        tags=tags,
        skip_tags=skip_tags,
        check=check,
        diff=diff,
        retry_failed=rerun,
        inventory_dir=inventory_dir(inventory),
    )
    if remote:  # on the ops queue
        send_book(request, seconds, json, parts)
    else:
        run_book(request, json)


@task(name="runbooks", help=JSON_HELP)
def list_books(c: Context, json: bool = False) -> None:
    """List the runbooks with their descriptions."""
    from runbooks import service

    emit(service.describe_books(), json, render.print_books)
