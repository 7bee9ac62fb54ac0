"""`failed.*`: failed tasks (Laravel's queue:failed family), here or on a host of --env.

Failed tasks are rows in an environment's own SQL database, behind its network: with --env,
a command runs on one of its hosts over SSH (`runbooks.reach.host_cli`) with the same flags.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from invoke import Collection, Context

from runbooks.cli.apps import celery_module, container, inventory_dir, run_recorded
from runbooks.cli.errors import exit_with, operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, REASON_HELP, task, whole
from runbooks.cli.output import emit

REMOTE_HELP = {
    "env": "run on a host of this inventory environment over SSH (its own database)",
    "host": "with --env: the host to run on (default: first of group app, workers, all)",
    "inventory": "with --env: the inventory folder (default ./inventory)",
}
Body = Callable[..., None]


def on_env_host(command: str, read_only: bool = True) -> Callable[[Body], Body]:
    """With --env (other than local), run `invoke COMMAND` with the task's other arguments on
    a host of that environment instead: print what it printed, exit as it did."""

    def wrap(body: Body) -> Body:
        signature = inspect.signature(body)

        @functools.wraps(body)
        def run(c: Context, *args: Any, **kwargs: Any) -> None:
            given = signature.bind(c, *args, **kwargs)
            given.apply_defaults()
            values = dict(list(given.arguments.items())[1:])  # [0]: the context
            env, host, inventory = (values.pop(k) for k in ("env", "host", "inventory"))
            values.pop("reason", None)  # judged here, on this machine's record
            if not env or env == "local":
                return body(c, *args, **kwargs)
            positional = [
                values.pop(p.name)
                for p in list(signature.parameters.values())[1:]
                if p.default is inspect.Parameter.empty
            ]
            on_remote_host(env, host, inventory, command, positional, values, read_only)

        return run

    return wrap


def on_remote_host(
    env: str,
    host: str,
    inventory: str,
    command: str,
    positional: list[str],
    flags: dict[str, Any],
    read_only: bool,
) -> None:
    """Run `invoke COMMAND ARGS` on a host of `env`, print what it printed, exit as it did."""
    from runbooks.reach.host_cli import forward_args, run_remote

    app = container()
    with operator_errors():
        out = run_remote(
            app,
            env,
            command,
            forward_args(positional, **flags),
            os.environ,
            host=host or None,
            inventory_dir=inventory_dir(inventory),
            read_only=read_only,
        )
    if out.unreachable:
        refuse(f"{out.host} unreachable: {out.unreachable}", code=1)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    exit_with(out.rc)


def render_failed(page: dict[str, Any]) -> None:
    for r in page["rows"]:
        print(
            f"{r['id']:>8}  {r['failed_at'][:19]}  {r['queue']:<11} {r['task_name']:<20} "
            f"{r['exception'][:60]}"
        )
    if not page["rows"]:
        print("no failed tasks")
    if page["next_before"]:
        print(f"more: --before {page['next_before']}")


def render_one(d: dict[str, Any]) -> None:
    print(
        "\n".join(f"{k}: {v}" for k, v in d.items() if k != "traceback")
        + f"\ntraceback:\n{d['traceback']}"
    )


@task(
    name="list",
    help={
        "queue": "only this queue",
        "task": "only this task name",
        "since": "failed at or after: ISO date/time or an age like 2h, 3d",
        "limit": "rows per page (default 50)",
        "before": "the page below this id (as the previous page said)",
        **JSON_HELP,
        **REMOTE_HELP,
    },
)
@on_env_host("failed.list")
def list_failed(
    c: Context,
    queue: str | None = None,
    task: str | None = None,
    since: str | None = None,
    limit: str = "50",
    before: str | None = None,
    json: bool = False,
    env: str = "",
    host: str = "",
    inventory: str = "",
) -> None:
    """List failed tasks, newest first (Laravel's queue:failed)."""
    from celery_app.ops import failed_tasks as ft

    rows = whole(limit, "--limit", 1, ft.MAX_LIMIT)
    below = None if before is None else whole(before, "--before", 1)
    app = container()
    with operator_errors():
        page = ft.list_failed(
            app.uow, queue=queue, task=task, since=since, limit=rows, before=below
        )
    data = {"rows": [r.as_dict() for r in page.rows], "next_before": page.next_before}
    emit(data, json, render_failed)


@task(help={"id": "the id failed.list shows", **JSON_HELP, **REMOTE_HELP})
@on_env_host("failed.show")
def show(
    c: Context, id: str, json: bool = False, env: str = "", host: str = "", inventory: str = ""
) -> None:
    """Show one failed task with its arguments and traceback."""
    from celery_app.ops import failed_tasks as ft

    app = container()
    with operator_errors():
        row = ft.show(app.uow, ft.parse_id(id))
    emit(row.as_dict(full=True), json, render_one)


@task(
    help={
        "ids": "ids as failed.list shows them: 12 or 12,13; or all",
        "queue": "with all: only this queue",
        **JSON_HELP,
        **REMOTE_HELP,
    }
)
@on_env_host("failed.retry", read_only=False)
def retry(
    c: Context,
    ids: str,
    queue: str | None = None,
    json: bool = False,
    env: str = "",
    host: str = "",
    inventory: str = "",
) -> None:
    """Re-enqueue failed tasks: IDS like 12 or 12,13, or all (Laravel's queue:retry); recorded."""
    from celery_app.ops import failed_tasks as ft

    app = container()
    with operator_errors():
        every = ids.strip().lower() == "all"
        chosen = None if every else ft.parse_ids(ids)
        ft.check(app.uow, chosen, queue)  # refused: nothing written, not even history
    report, _ = run_recorded(
        app,
        "failed.retry",
        env,
        lambda: ft.retry(
            app.uow, ft.sender(celery_module().app), chosen, all_rows=every, queue=queue
        ),
        lambda r: f"retried {len(r.retried)} failed tasks",
        ids=chosen or "all",
        queue=queue,
    )
    emit(report.as_dict(), json, lambda d: print(f"retried {d['count']} failed tasks"))


@task(help={"ids": "ids as failed.list shows them: 12 or 12,13", **REMOTE_HELP})
@on_env_host("failed.forget", read_only=False)
def forget(c: Context, ids: str, env: str = "", host: str = "", inventory: str = "") -> None:
    """Delete failed tasks by id: 12 or 12,13 (Laravel's queue:forget); recorded in history."""
    from celery_app.ops import failed_tasks as ft

    app = container()
    with operator_errors():
        chosen = ft.parse_ids(ids)
        ft.check(app.uow, chosen)  # refused: nothing written, not even history
    _, message = run_recorded(
        app,
        "failed.forget",
        env,
        lambda: ft.forget(app.uow, chosen),
        lambda deleted: f"forgot {deleted} failed tasks",
        ids=chosen,
    )
    print(message)


def delete_older(
    name: str, env: str, hours: int | None, delete: Callable[[Any], int], message: str
) -> None:
    """failed.flush and failed.prune: `delete(uow)` recorded, then `message` with the count."""
    from celery_app.ops import failed_tasks as ft

    app = container()
    with operator_errors():
        ft.check(app.uow)  # a database down or not migrated: said before anything is recorded
    _, said = run_recorded(app, name, env, lambda: delete(app.uow), message.format, hours=hours)
    print(said)


@task(help={"hours": "only those older than this many hours", **REMOTE_HELP, **REASON_HELP})
@on_env_host("failed.flush", read_only=False)
def flush(
    c: Context,
    hours: str | None = None,
    env: str = "",
    host: str = "",
    inventory: str = "",
    reason: str = "",
) -> None:
    """Delete every failed task, or those older than --hours (Laravel's queue:flush); recorded."""
    from celery_app.ops import failed_tasks as ft

    older = None if hours is None else whole(hours, "--hours", 0, ft.MAX_HOURS)
    delete = functools.partial(ft.flush, hours=older)
    delete_older("failed.flush", env, older, delete, "flushed {} failed tasks")


@task(help={"hours": "delete those older than this many hours (default 24)", **REMOTE_HELP})
@on_env_host("failed.prune", read_only=False)
def prune(
    c: Context, hours: str = "24", env: str = "", host: str = "", inventory: str = ""
) -> None:
    """Delete failed tasks older than --hours, 24 by default (queue:prune-failed); recorded."""
    from celery_app.ops import failed_tasks as ft

    older = whole(hours, "--hours", 0, ft.MAX_HOURS)
    delete = functools.partial(ft.prune, hours=older)
    delete_older(
        "failed.prune", env, older, delete, f"pruned {{}} failed tasks older than {older}h"
    )


ns = Collection("failed", list_failed, show, retry, forget, flush, prune)
