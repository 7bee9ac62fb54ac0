"""`history.*`: the recorded runs of runbooks and ops commands."""

from __future__ import annotations

from invoke import Collection, Context

from runbooks.cli import render
from runbooks.cli.apps import container
from runbooks.cli.errors import operator_errors
from runbooks.cli.flags import JSON_HELP, run_id, task, whole
from runbooks.cli.output import emit


@task(
    name="list",
    default=True,
    help={"last": "how many runs to show, 1 to 1000 (default 20)", **JSON_HELP},
)
def list_runs(c: Context, last: str = "20", json: bool = False) -> None:
    """List recorded runs (runbooks and ops commands), newest first."""
    from runbooks.engine import history

    count = whole(last, "--last", 1, 1000)
    app = container()
    with operator_errors():
        runs = history.list_runs(app.sessions, count)
    emit(runs, json, render.print_history)


@task(help={"id": "the run id `invoke history` shows", **JSON_HELP})
def show(c: Context, id: str, json: bool = False) -> None:
    """Show one recorded run: arguments, each host's and step's outcome."""
    from runbooks.engine import history

    run = run_id(id)
    app = container()
    with operator_errors():
        data = history.get_run(app.sessions, run)
    emit(data, json, render.print_run)


ns = Collection("history", list_runs, show)
