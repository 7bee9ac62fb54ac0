"""Invoke entry point: a thin command line over runbooks/ and celery_app/.

`invoke --list` shows every command; `invoke --help NAME` its flags. Errors an operator can fix
exit non-zero with one line; nothing here holds logic of its own.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from invoke import Collection, Context, Exit, Task
from invoke import task as invoke_task

from celery_app.errors import MaqsafyError
from celery_app.infra.keyspace import QUEUES
from celery_app.infra.redaction import mask_patterns
from celery_app.inputs import shown
from runbooks.cli import audit as audit_cli
from runbooks.cli import cache as cache_cli
from runbooks.cli import maintenance as maintenance_cli
from runbooks.cli import metrics as metrics_cli
from runbooks.cli import queue as queue_cli
from runbooks.cli import ratelimit as ratelimit_cli
from runbooks.cli import redis as redis_cli
from runbooks.cli import sessions as sessions_cli
from runbooks.cli import status as status_cli
from runbooks.errors import LocatedError

WORKER_QUEUES = ",".join(QUEUES)  # every queue the app declares


def quiet_broken_pipe() -> None:
    """Let `invoke status | head -3` end quietly (exit 1) when the reader goes away.

    Not by SIGPIPE's default action: Python's signal docs warn that it would also kill the
    process without a word whenever a socket (Redis, SSH, a metrics scrape) closes mid-write.
    """

    def to_devnull() -> None:  # the final flush at exit then has nowhere to fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())

    def flush() -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            to_devnull()

    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, BrokenPipeError):
            to_devnull()
        else:
            previous(kind, value, tb)

    sys.excepthook = hook
    atexit.register(flush)


quiet_broken_pipe()


def history_warnings_on_stderr() -> None:
    """A history row that could not be closed: one `warning:` line on stderr
    (runbooks.engine.history logs it; the command's own outcome and exit code stay as they were)."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logging.getLogger("runbooks.engine.history").addHandler(handler)


history_warnings_on_stderr()


class OpsTask(Task):
    """A task whose flags never take `-h` as their short form: `invoke TASK -h` is help.

    Invoke gives each flag its first free letter, so `--host` and `--hours` took `-h`. Its
    flags can be read more than once (Invoke's get_arguments uses up the help texts).
    """

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, {*taken_names, "h"})

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> Any:
        kept = dict(self.help)
        try:
            return super().get_arguments(ignore_unknown_help)
        finally:
            self.help = kept


def task(*args: Any, **kwargs: Any) -> Any:
    """Invoke's @task, making OpsTask tasks."""
    return invoke_task(*args, klass=OpsTask, **kwargs)


# A value from the command line the system refused as a path: one line, not a traceback.
PATH_ERRNOS = {"ENAMETOOLONG", "ENOENT", "ENOTDIR", "EISDIR", "EACCES", "ELOOP", "EINVAL"}


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the project's errors, SQL that failed, and a path or text the system refused (a
    value typed on the command line) into a one-line message and exit code 2."""
    import errno

    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        yield
    except LocatedError as exc:  # "FILE:LINE: FIELD: problem", the problem already masked
        raise Exit(f"error: {exc}", code=2) from None
    except MaqsafyError as exc:  # secret patterns masked: a message may quote a host's output
        raise Exit(f"error: {mask_patterns(str(exc))}", code=2) from None
    except OSError as exc:  # other OSErrors are not about a value given: a traceback
        if errno.errorcode.get(exc.errno or 0) not in PATH_ERRNOS or exc.filename is None:
            raise
        raise Exit(f"error: {shown(exc.filename)}: {exc.strerror}", code=2) from None
    except UnicodeError as exc:  # a name that cannot be encoded (idna: a label too long)
        raise Exit(f"error: a value cannot be used as text or a name: {exc}", code=2) from None
    except (OperationalError, ProgrammingError) as exc:  # down, or not migrated yet
        from celery_app import bootstrap
        from celery_app.infra.db import describe_error

        built = bootstrap.get.cache_info().currsize
        url = bootstrap.get().settings.database_url if built else "(DATABASE_URL)"
        raise Exit(f"error: {describe_error(exc, url)}", code=2) from None


def container() -> Any:
    from celery_app import bootstrap

    with operator_errors():
        return bootstrap.get()


def celery_module() -> Any:
    """`celery_app.celery`, imported only once settings loaded here (bad ones: exit 2, one line)."""
    container()
    import celery_app.celery

    return celery_app.celery


def whole(text: str, flag: str, low: int, high: int = 2**63 - 1) -> int:
    """Parse a whole-number flag (declared `str`, so Invoke never parses it): else exit 2."""
    from celery_app.inputs import whole_number

    with operator_errors():
        return whole_number(text, flag, low, high)


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as one JSON document for scripts, or through `render` for people."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render(data)


INVENTORY_HELP = "with --env: the inventory folder (default ./inventory)"


# --- db -------------------------------------------------------------------------------------


@task(
    help={
        "revision": "the revision to upgrade to (default head); one below the database's is "
        "refused: this command only upgrades, downgrades are not done by it"
    }
)
def db_migrate(c: Context, revision: str = "head") -> None:
    """Upgrade the database to the newest schema (or up to --revision); never downgrades."""
    from celery_app.infra import migrate

    with operator_errors():
        migrate.check_revision(revision)  # refused before the database is opened
    app = container()
    with operator_errors():
        before = migrate.current(app.engine)
        migrate.upgrade(app.engine, revision)
        after = migrate.current(app.engine)
    print(f"database {'already at' if before == after else 'migrated to'} {after}")


@task(help={"json": "print one JSON document"})
def db_current(c: Context, json: bool = False) -> None:
    """Show the database's schema revision and the newest the code ships."""
    from celery_app.infra import migrate

    app = container()
    with operator_errors():
        data = {"current": migrate.current(app.engine), "head": migrate.head(app.engine)}
    emit(
        data,
        json,
        lambda d: print(
            f"current {d['current'] or '(none: run invoke db.migrate)'}, head {d['head']}"
        ),
    )


db = Collection("db")
db.add_task(db_migrate, "migrate")
db.add_task(db_current, "current")


# --- cache ----------------------------------------------------------------------------------


# --- queue ----------------------------------------------------------------------------------


# --- failed ---------------------------------------------------------------------------------

REMOTE_HELP = {
    "env": "run on a host of this inventory environment over SSH (its own database)",
    "host": "with --env: the host to run on (default: first of group app, workers, all)",
    "inventory": "with --env: the inventory folder (default ./inventory)",
}


def on_remote_host(
    env: str, host: str, inventory: str, command: str, argv: list[str], read_only: bool = True
) -> None:
    """Run `invoke COMMAND ARGV` on a host of `env`, print what it printed, exit as it did."""
    import os
    import sys
    from pathlib import Path

    from runbooks.reach.host_cli import run_remote

    app = container()
    with operator_errors():
        out = run_remote(
            app,
            env,
            command,
            argv,
            os.environ,
            host=host or None,
            inventory_dir=Path(inventory) if inventory else None,
            read_only=read_only,
        )
    if out.unreachable:
        raise Exit(f"error: {out.host} unreachable: {out.unreachable}", code=1)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.rc:
        raise Exit(code=out.rc)


def remote_args(**flags: Any) -> list[str]:
    from runbooks.reach.host_cli import forward_args

    positional = flags.pop("_positional", ())
    return forward_args(positional, **flags)


def _render_failed(page: dict[str, Any]) -> None:
    for r in page["rows"]:
        print(
            f"{r['id']:>8}  {r['failed_at'][:19]}  {r['queue']:<11} {r['task_name']:<20} "
            f"{r['exception'][:60]}"
        )
    if not page["rows"]:
        print("no failed tasks")
    if page["next_before"]:
        print(f"more: --before {page['next_before']}")


@task(
    help={
        "queue": "only this queue",
        "task": "only this task name",
        "since": "failed at or after: ISO date/time or an age like 2h, 3d",
        "limit": "rows per page (default 50)",
        "before": "the page below this id (as the previous page said)",
        "json": "print one JSON document",
        **REMOTE_HELP,
    }
)
def failed_list(
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

    if env and env != "local":
        args = remote_args(
            queue=queue, task=task, since=since, limit=limit, before=before, json=json
        )
        return on_remote_host(env, host, inventory, "failed.list", args)

    rows = whole(limit, "--limit", 1, ft.MAX_LIMIT)
    below = None if before is None else whole(before, "--before", 1)
    app = container()
    with operator_errors():
        page = ft.list_failed(
            app.uow,
            queue=queue,
            task=task,
            since=since,
            limit=rows,
            before=below,
        )
    data = {"rows": [r.as_dict() for r in page.rows], "next_before": page.next_before}
    emit(data, json, _render_failed)


@task(help={"id": "the id failed.list shows", "json": "print one JSON document", **REMOTE_HELP})
def failed_show(
    c: Context, id: str, json: bool = False, env: str = "", host: str = "", inventory: str = ""
) -> None:
    """Show one failed task with its arguments and traceback."""
    from celery_app.ops import failed_tasks as ft

    if env and env != "local":
        args = remote_args(_positional=[id], json=json)
        return on_remote_host(env, host, inventory, "failed.show", args)

    app = container()
    with operator_errors():
        row = ft.show(app.uow, ft.parse_id(id))
    emit(
        row.as_dict(full=True),
        json,
        lambda d: print(
            "\n".join(f"{k}: {v}" for k, v in d.items() if k != "traceback")
            + f"\ntraceback:\n{d['traceback']}"
        ),
    )


@task(
    help={
        "ids": "ids as failed.list shows them: 12 or 12,13; or all",
        "queue": "with all: only this queue",
        "json": "print one JSON document",
        **REMOTE_HELP,
    }
)
def failed_retry(
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

    if env and env != "local":
        args = remote_args(_positional=[ids], queue=queue, json=json)
        return on_remote_host(env, host, inventory, "failed.retry", args, read_only=False)

    app = container()
    with operator_errors():
        every = ids.strip().lower() == "all"
        chosen = None if every else ft.parse_ids(ids)
        ft.check(app.uow, chosen, queue)  # refused: nothing written, not even history
        with recorded(app, "failed.retry", env, ids=chosen or "all", queue=queue) as record:
            report = ft.retry(app.uow, ft.sender(), chosen, all_rows=every, queue=queue)
            record.message = f"retried {len(report.retried)} failed tasks"
    emit(report.as_dict(), json, lambda d: print(f"retried {d['count']} failed tasks"))


@task(help={"ids": "ids as failed.list shows them: 12 or 12,13", **REMOTE_HELP})
def failed_forget(c: Context, ids: str, env: str = "", host: str = "", inventory: str = "") -> None:
    """Delete failed tasks by id: 12 or 12,13 (Laravel's queue:forget); recorded in history."""
    from celery_app.ops import failed_tasks as ft

    if env and env != "local":
        args = remote_args(_positional=[ids])
        return on_remote_host(env, host, inventory, "failed.forget", args, read_only=False)

    app = container()
    with operator_errors():
        chosen = ft.parse_ids(ids)
        ft.check(app.uow, chosen)  # refused: nothing written, not even history
        with recorded(app, "failed.forget", env, ids=chosen) as record:
            deleted = ft.forget(app.uow, chosen)
            record.message = f"forgot {deleted} failed tasks"
    print(f"forgot {deleted} failed tasks")


@task(help={"hours": "only those older than this many hours", **REMOTE_HELP})
def failed_flush(
    c: Context, hours: str | None = None, env: str = "", host: str = "", inventory: str = ""
) -> None:
    """Delete every failed task, or those older than --hours (Laravel's queue:flush); recorded."""
    from celery_app.ops import failed_tasks as ft

    if env and env != "local":
        args = remote_args(hours=hours)
        return on_remote_host(env, host, inventory, "failed.flush", args, read_only=False)

    older = None if hours is None else whole(hours, "--hours", 0, ft.MAX_HOURS)
    app = container()
    with operator_errors():
        ft.check(app.uow)  # a database down or not migrated: said before anything is recorded
        with recorded(app, "failed.flush", env, hours=older) as record:
            deleted = ft.flush(app.uow, older)
            record.message = f"flushed {deleted} failed tasks"
    print(f"flushed {deleted} failed tasks")


@task(help={"hours": "delete those older than this many hours (default 24)", **REMOTE_HELP})
def failed_prune(
    c: Context, hours: str = "24", env: str = "", host: str = "", inventory: str = ""
) -> None:
    """Delete failed tasks older than --hours, 24 by default (queue:prune-failed); recorded."""
    from celery_app.ops import failed_tasks as ft

    if env and env != "local":
        args = remote_args(hours=hours)
        return on_remote_host(env, host, inventory, "failed.prune", args, read_only=False)

    older = whole(hours, "--hours", 0, ft.MAX_HOURS)
    app = container()
    with operator_errors():
        ft.check(app.uow)  # a database down or not migrated: said before anything is recorded
        with recorded(app, "failed.prune", env, hours=older) as record:
            deleted = ft.prune(app.uow, older)
            record.message = f"pruned {deleted} failed tasks older than {older}h"
    print(f"pruned {deleted} failed tasks older than {older}h")


failed_ns = Collection("failed")
failed_ns.add_task(failed_list, "list")
failed_ns.add_task(failed_show, "show")
failed_ns.add_task(failed_retry, "retry")
failed_ns.add_task(failed_forget, "forget")
failed_ns.add_task(failed_flush, "flush")
failed_ns.add_task(failed_prune, "prune")

# --- sessions -------------------------------------------------------------------------------


def recorded(app: Any, name: str, env: str, **arguments: Any) -> Any:
    """Record the ops command run inside the block in the run history, redacted."""
    from runbooks.engine import history
    from runbooks.engine.redact import for_settings

    return history.recording(
        app.sessions,
        name,
        environment=env or "local",
        arguments=arguments,
        redactor=for_settings(app.settings),
    )


# --- ratelimit ------------------------------------------------------------------------------


# --- redis ----------------------------------------------------------------------------------


# --- redis health (issue 6): ping, doctor ---------------------------------------------------


# --- docker (issue 6): the platform page's Docker checks, here or on an environment's hosts ----

DOCKER_HELP = {
    "env": "run on this environment's hosts (inventory/<env>.yml; default: this machine)",
    "limit": "with --env: only these hosts or groups",
    "inventory": "the inventory folder (default ./inventory)",
    "json": "print one JSON document",
}


def on_docker_hosts(env: str, limit: str, inventory: str, read: Callable[[Any], Any]) -> Any:
    """Run `read(target)` on each host; return {host: value or error text}, and whether all ok."""
    import os
    from pathlib import Path

    from runbooks.connectors.targets import LocalTarget, open_target
    from runbooks.engine.inventory import load_environment
    from runbooks.engine.redact import for_settings
    from runbooks.errors import HostUnreachable
    from runbooks.facts.docker import DockerUnavailable
    from runbooks.service import environ_with_dotenv

    app = container()
    with operator_errors():
        if env:
            found = load_environment(
                env, environ_with_dotenv(os.environ), Path(inventory) if inventory else None
            )
            hosts, secrets = found.select(limit=limit or None), found.secrets
        else:
            hosts, secrets = [], ()
    redactor = for_settings(app.settings, secrets)
    results: dict[str, Any] = {}
    ok = True
    for host in hosts or [None]:
        name = host.name if host else "localhost"
        try:
            target = open_target(host) if host else LocalTarget()
            try:
                results[name] = read(target)
            finally:
                target.close()
        except (DockerUnavailable, HostUnreachable) as exc:  # a fact about the host: exit 1
            results[name] = {"error": str(exc)}
            ok = False
    return redactor.value(results), ok


def _docker_exit(ok: bool) -> None:
    if not ok:
        raise Exit(code=1)


def _print_docker_errors(data: dict[str, Any]) -> dict[str, Any]:
    for host, value in data.items():
        if isinstance(value, dict) and "error" in value:
            print(f"{host}: {value['error']}")
    return {h: v for h, v in data.items() if not (isinstance(v, dict) and "error" in v)}


@task(help=DOCKER_HELP)
def docker_ps(
    c: Context, env: str = "", limit: str = "", inventory: str = "", json: bool = False
) -> None:
    """List containers (docker ps -a) on this machine or each host; Redis ones marked."""
    from runbooks.facts import docker

    data, ok = on_docker_hosts(
        env, limit, inventory, lambda t: [f.as_dict() for f in docker.containers(t)]
    )

    def render(d: dict[str, Any]) -> None:
        for host, rows in _print_docker_errors(d).items():
            print(f"{host}: {len(rows)} container(s)")
            for r in rows:
                mark = " <- redis" if "redis" in (r["name"] + r["image"]).lower() else ""
                print(f"  {r['name']:<24} {r['image']:<24} {r['status']:<22} {r['networks']}{mark}")

    emit(data, json, render)
    _docker_exit(ok)


@task(
    help={
        **DOCKER_HELP,
        "service": "the container, by the name docker.ps shows",
        "tail": "how many lines (default 100)",
    }
)
def docker_logs(
    c: Context,
    service: str,
    tail: str = "100",
    env: str = "",
    limit: str = "",
    inventory: str = "",
    json: bool = False,
) -> None:
    """Show the last lines of a container's log (docker logs), secrets masked."""
    from runbooks.facts import docker

    lines = whole(tail, "--tail", 1, 100_000)
    with operator_errors():
        docker.check_service(service)
    data, ok = on_docker_hosts(env, limit, inventory, lambda t: docker.logs(t, service, lines))

    def render(d: dict[str, Any]) -> None:
        for host, text in _print_docker_errors(d).items():
            print(f"--- {host}: {service}")
            print(text.rstrip())

    emit(data, json, render)
    _docker_exit(ok)


@task(help=DOCKER_HELP)
def docker_networks(
    c: Context, env: str = "", limit: str = "", inventory: str = "", json: bool = False
) -> None:
    """List Docker networks and the containers on each (are the app and Redis on one?)."""
    from runbooks.facts import docker

    data, ok = on_docker_hosts(
        env, limit, inventory, lambda t: [n.as_dict() for n in docker.networks(t)]
    )

    def render(d: dict[str, Any]) -> None:
        for host, rows in _print_docker_errors(d).items():
            for n in rows:
                print(f"{host}: {n['name']:<20} {n['driver']:<8} {', '.join(n['containers'])}")

    emit(data, json, render)
    _docker_exit(ok)


docker_ns = Collection("docker")
docker_ns.add_task(docker_ps, "ps")
docker_ns.add_task(docker_logs, "logs")
docker_ns.add_task(docker_networks, "networks")


def run_on_ops_queue(app: Any, request: Any, wait: int, as_json: bool) -> None:
    """`run BOOK --remote`: send the book to the ops queue; with --wait, show the recorded run."""
    import os

    from celery_app.celery import make_app
    from runbooks.cli.render import print_run
    from runbooks.engine import history
    from runbooks.ops_queue import sender as remote
    from runbooks.service import environ_with_dotenv

    if request.retry_failed or request.inventory_dir:
        raise Exit(
            "error: --remote runs with the worker's inventory; drop --retry-failed and --inventory",
            2,
        )
    if wait < 0:
        raise Exit("error: --wait: expected seconds, 0 or more", 2)
    celery = make_app(app.settings)
    with operator_errors():
        consumers = remote.ops_consumers(celery)
        refused = remote.refusal(consumers)
        if refused:
            raise Exit(f"error: {refused}", code=1)
        request_id = remote.send(
            celery, request, history.operator_name(), environ_with_dotenv(os.environ)
        )
        run = remote.wait(app.sessions, request_id, wait) if wait else None
    if run is None or run["status"] == "running":
        if wait:
            why = remote.gave_up(request_id, wait, run, consumers)
            emit({"request": request_id, "run": run, "error": why}, as_json, lambda _: None)
            raise Exit(f"error: {why}", code=1)
        message = f"sent {request.book!r} to the ops queue (request {request_id})"
        emit(
            {"request": request_id, "run": None},
            as_json,
            lambda _: print(f"{message}; `invoke history` shows it once a worker starts it"),
        )
        return
    with operator_errors():
        data = history.get_run(app.sessions, int(run["id"]))
    if data["name"] == "runbook.refused":
        emit(data, as_json, lambda _: None)
        raise Exit(f"error: the ops worker refused request {request_id}: {data['message']}", 1)
    emit(data, as_json, print_run)
    if data["status"] != "ok":
        raise Exit(code=1)


# --- end redis health -----------------------------------------------------------------------

# --- demo -----------------------------------------------------------------------------------


@task(
    help={
        "purchases": "purchases to submit, 1 to 1000000 (default 2000)",
        "wallets": "student wallets, 1 to 100000 (default 200)",
        "merchants": "canteen merchants, 1 to 1000 (default 5)",
        "json": "print the summary as one JSON document",
    }
)
def demo(
    c: Context,
    purchases: str = "2000",
    wallets: str = "200",
    merchants: str = "5",
    json: bool = False,
) -> None:
    """Run a school day of payments end to end: migrate, worker, submit, settle, reconcile."""
    from celery_app.dev.demo import run_demo

    counts = (
        whole(purchases, "--purchases", 1, 1_000_000),
        whole(wallets, "--wallets", 1, 100_000),
        whole(merchants, "--merchants", 1, 1_000),
    )
    app = container()
    with operator_errors():
        from celery_app.celery import app as celery
        from celery_app.celery import enqueue

        summary = run_demo(
            app,
            enqueue,
            celery.send_task,
            *counts,
            progress=None if json else demo_progress(),
        )
    emit(summary.as_dict(), json, render_demo)
    if not summary.ledger_balanced or summary.pending:
        raise Exit("demo: the ledger did not balance or requests are still pending", code=1)


def demo_progress() -> Callable[[str, int, int], None]:
    """A one-line progress display on stderr for the demo's phases."""
    import sys

    last = {"phase": "", "at": 0.0}

    def show(phase: str, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if not sys.stderr.isatty() and done < total:
            return  # in logs and pipes, one line per finished phase
        if phase == last["phase"] and done < total and now - float(last["at"]) < 0.2:
            return
        last.update(phase=phase, at=now)
        label = {"submit": "submitting", "post": "posting", "done": "done"}.get(phase, phase)
        sys.stderr.write(f"\r{label:<10} {done:>6}/{total:<6}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def render_demo(d: dict[str, Any]) -> None:
    sar = d["settled_total_halalas"] / 100
    print(f"demo day {d['run']}: {d['wallets']} wallets, {d['merchants']} merchants")
    print(f"  submitted            {d['submitted']}")
    print(f"  duplicates absorbed  {d['duplicates_absorbed']}")
    print(f"  posted               {d['posted']}")
    print(f"  rejected             {d['rejected']} (insufficient funds)")
    print(f"  still pending        {d['pending']}")
    if d["settlement_created"]:
        print(
            f"  settlement {d['settlement_date']}: {d['settled_merchants']} merchants paid "
            f"{sar:,.2f} SAR"
        )
    else:  # one batch per business day: this run's takings wait for the next day's batch
        print(
            f"  settlement {d['settlement_date']}: already run earlier today "
            f"({d['settled_merchants']} merchants, {sar:,.2f} SAR); this run's purchases "
            "are paid out in the next day's batch"
        )
    print(
        f"  ledger balanced      {'yes' if d['ledger_balanced'] else 'NO'}"
        f" ({d['discrepancies']} discrepancies)"
    )
    print(f"  took                 {d['seconds']:.1f}s")


@task(help={"force": "stop it even while workers started here still use it"})
def stop(c: Context, force: bool = False) -> None:
    """Stop the embedded default's private Redis under ./var (if it runs)."""
    from celery_app.infra.embedded import stop_embedded_redis
    from celery_app.ops.workers import MultiSupervisor

    app = container()
    run_dir = app.settings.var_dir / "run"
    busy = sorted(
        p.stem for p in run_dir.glob("*.pid") if MultiSupervisor(run_dir).pid(p.stem) is not None
    )
    if busy and not force:
        raise Exit(
            f"error: workers still use this Redis ({', '.join(busy)}): stop them first "
            "(invoke workers.stop --nodes ...), or pass --force",
            code=2,
        )
    if not stop_embedded_redis(app.settings.var_dir):
        where = "" if app.settings.embedded_redis else " (REDIS_* points elsewhere)"
        print(f"the embedded Redis under {app.settings.var_dir} is not running{where}")
        return
    print(f"stopped the embedded Redis under {app.settings.var_dir}")


# --- runbooks -------------------------------------------------------------------------------


@task(
    help={
        "book": "the runbook: a name from `invoke runbooks` or a path to a .yml file",
        "env": "the environment (inventory/<env>.yml; default local: this machine)",
        "limit": "only these hosts or groups: web-1,workers or a glob, !name excludes",
        "tags": "only steps with these tags (comma-separated)",
        "skip_tags": "skip steps with these tags",
        "check": "check mode: report what would change, change nothing",
        "json": "print one JSON document",
        "retry_failed": "rerun only the hosts that failed in this run id (`invoke history`)",
        "inventory": "the inventory folder (default ./inventory)",
        "remote": "send the run to the ops queue: a worker inside the network runs it",
        "wait": "with --remote: wait up to this many seconds (0 to 86400) for the result",
    }
)
def run_runbook(
    c: Context,
    book: str,
    env: str = "local",
    limit: str = "",
    tags: str = "",
    skip_tags: str = "",
    check: bool = False,
    json: bool = False,
    retry_failed: str = "",
    inventory: str = "",
    remote: bool = False,
    wait: str = "0",
) -> None:
    """Run a runbook on an environment's hosts; live progress, then a recap per host."""
    import os
    from pathlib import Path

    from runbooks import service
    from runbooks.cli import render

    rerun = run_id(retry_failed, " for --retry-failed") if retry_failed else None
    seconds = whole(wait, "--wait", 0, 86_400)
    app = container()
    request = service.RunRequest(
        book,
        environment=env,
        limit=limit or None,
        tags=tags,
        skip_tags=skip_tags,
        check=check,
        retry_failed=rerun,
        inventory_dir=Path(inventory) if inventory else None,
    )
    if remote:  # issue 6: on the ops queue
        run_on_ops_queue(app, request, seconds, json)
        return
    with operator_errors():
        prepared = service.prepare(app, request, service.environ_with_dotenv(os.environ))
        progress = None if json else render.ConsoleProgress(prepared.redactor)
        result = service.execute(app, prepared, request.arguments(), progress)
    redactor = prepared.redactor
    emit(redactor.value(result.to_dict()), json, lambda _: render.print_recap(result, redactor))
    if not result.ok:
        raise Exit(code=1)


def run_id(text: str, flag: str = "") -> int:
    """Parse a run id as `invoke history` shows it; anything else: one line, exit 2."""
    from celery_app.inputs import record_id

    with operator_errors():
        return record_id(text, "run", "`invoke history`", flag)


@task(help={"json": "print one JSON document"})
def runbooks_list(c: Context, json: bool = False) -> None:
    """List the runbooks with their descriptions."""
    from runbooks import service
    from runbooks.cli import render

    emit(service.describe_books(), json, render.print_books)


@task(
    help={
        "last": "how many runs to show, 1 to 1000 (default 20)",
        "json": "print one JSON document",
    }
)
def history_list(c: Context, last: str = "20", json: bool = False) -> None:
    """List recorded runs (runbooks and ops commands), newest first."""
    from runbooks.cli import render
    from runbooks.engine import history

    count = whole(last, "--last", 1, 1000)
    app = container()
    with operator_errors():
        runs = history.list_runs(app.sessions, count)
    emit(runs, json, render.print_history)


@task(help={"id": "the run id `invoke history` shows", "json": "print one JSON document"})
def history_show(c: Context, id: str, json: bool = False) -> None:
    """Show one recorded run: arguments, each host's and step's outcome."""
    from runbooks.cli import render
    from runbooks.engine import history

    run = run_id(id)
    app = container()
    with operator_errors():
        data = history.get_run(app.sessions, run)
    emit(data, json, render.print_run)


history_ns = Collection("history")
history_ns.add_task(history_list, "list", default=True)
history_ns.add_task(history_show, "show")

# --- end runbooks ---------------------------------------------------------------------------

# --- workers --------------------------------------------------------------------------------

WORKER_HELP = {
    "nodes": "worker node names, comma-separated (default w1)",
    "queues": f"queues the nodes consume (default {WORKER_QUEUES})",
    "concurrency": "processes per node, 1 to 256 (default 2)",
    "timeout": "seconds (1 to 86400) to wait for running tasks at a warm shutdown (default 60)",
    "env": "run on an inventory environment's worker hosts (runbook workers-restart)",
    "limit": "with --env: only these hosts or groups",
    "check": "with --env: say what would change, change nothing",
    "inventory": "with --env: the inventory folder (default ./inventory)",
    "json": "print one JSON document",
}


def celery_control() -> Any:
    """The Celery app for remote control; starts the embedded Redis when that is the broker."""
    from celery_app.infra.embedded import ensure_embedded_redis

    settings = container().settings
    celery = celery_module().app
    if settings.embedded_redis:
        with operator_errors():
            ensure_embedded_redis(settings.var_dir)
    return celery


def supervisor(queues: str, concurrency: int) -> Any:
    from celery_app.infra.keyspace import queue_names
    from celery_app.ops.workers import MultiSupervisor
    from runbooks.deploy import layout

    with operator_errors():  # refused before any worker starts
        chosen = queue_names(queues)
    app = container()
    return MultiSupervisor(
        app.settings.var_dir / "run",
        queues=chosen,
        concurrency=concurrency,
        include=tuple(layout.includes(chosen)),  # ops carries runbook requests
    )


def node_list(nodes: str) -> list[str]:
    from celery_app.inputs import node_names

    with operator_errors():
        return node_names(nodes)


@task(help={"json": WORKER_HELP["json"]})
def workers_status(c: Context, json: bool = False) -> None:
    """Show each worker: queues consumed, active and reserved tasks, release, uptime."""
    from celery_app.ops import workers

    with operator_errors():
        nodes = [n.as_dict() for n in workers.status(celery_control())]

    def render(rows: list[dict[str, Any]]) -> None:
        if not rows:
            print("no worker answered (start one: invoke workers.start)")
        for r in rows:
            print(
                f"{r['name']:<28} release {r['release']:<12} up {r['uptime'] or 0:>6}s  "
                f"active {r['active']:>3}  reserved {r['reserved']:>3}  "
                f"queues {','.join(r['queues'])}"
            )

    emit(nodes, json, render)
    if not nodes:
        raise Exit(code=1)


@task(help={"json": WORKER_HELP["json"]})
def workers_ping(c: Context, json: bool = False) -> None:
    """Ping every worker over the broker; exit 1 when none answers."""
    from celery_app.ops import workers

    with operator_errors():
        names = workers.ping(celery_control())
    emit(names, json, lambda n: print("\n".join(f"{x}: pong" for x in n) or "no worker answered"))
    if not names:
        raise Exit(code=1)


@task(help={k: WORKER_HELP[k] for k in ("nodes", "queues", "concurrency")})
def workers_start(
    c: Context, nodes: str = "w1", queues: str = WORKER_QUEUES, concurrency: str = "2"
) -> None:
    """Start worker nodes on this machine (celery multi, pidfiles under ./var/run)."""
    from celery_app.ops import workers

    names = node_list(nodes)
    processes = whole(concurrency, "--concurrency", 1, 256)
    sup = supervisor(queues, processes)
    arguments = {"nodes": names, "queues": list(sup.queues), "concurrency": processes}
    with operator_errors(), recorded(container(), "workers.start", "", **arguments) as record:
        already = sup.running(names)
        started = sup.start(names)
        host = workers._hostname()
        if started:
            workers.verify(celery_control(), [f"{n}@{host}" for n in started], sup.queues, 60)
        record.message = f"started {', '.join(started) or 'none'}; already running: " + (
            ", ".join(already) or "none"
        )
    if started:
        print(f"started and verified: {', '.join(started)}")
    if already:
        print(
            f"already running: {', '.join(already)} (left as they are; "
            "invoke workers.restart applies new --queues or --concurrency)"
        )


@task(help={k: WORKER_HELP[k] for k in ("nodes", "timeout")})
def workers_stop(c: Context, nodes: str = "w1", timeout: str = "60") -> None:
    """Warm-stop worker nodes on this machine: running tasks finish first."""
    seconds = whole(timeout, "--timeout", 1, 86_400)
    names = node_list(nodes)
    sup = supervisor("payments", 1)
    with operator_errors(), recorded(container(), "workers.stop", "", nodes=names) as record:
        running = sup.running(names)
        left = sup.stop(running, seconds)
        record.message = f"stopped {', '.join(n for n in running if n not in left) or 'none'}"
        if left:
            record.status = "failed"
            record.message = f"still running after {seconds}s: {', '.join(left)}"
    if left:
        raise Exit(f"error: still running after {seconds}s: {', '.join(left)}", code=1)
    if running:
        print(f"stopped: {', '.join(running)}")
    idle = [n for n in names if n not in running]
    if idle:
        print(f"not running: {', '.join(idle)}")


@task(help=WORKER_HELP)
def workers_restart(
    c: Context,
    nodes: str = "w1",
    queues: str = WORKER_QUEUES,
    concurrency: str = "2",
    timeout: str = "60",
    env: str = "",
    limit: str = "",
    check: bool = False,
    inventory: str = "",
    json: bool = False,
) -> None:
    """Restart workers gracefully: warm shutdown, start, verify ping and queues."""
    import sys

    from celery_app.ops import workers

    processes = whole(concurrency, "--concurrency", 1, 256)
    seconds = whole(timeout, "--timeout", 1, 86_400)
    if env and env != "local":
        run_runbook(
            c, "workers-restart", env=env, limit=limit, check=check, json=json, inventory=inventory
        )
        return
    names = node_list(nodes)
    sup = supervisor(queues, processes)  # a bad --queues is refused before the record opens
    app = container()
    with operator_errors(), recorded(app, "workers.restart", env, nodes=names) as rec:
        report = workers.restart(
            celery_control(),
            sup,
            names,
            timeout=seconds,
            progress=None if json else lambda m: print(m, file=sys.stderr, flush=True),
        )
        rec.message = f"restarted {', '.join(report.nodes)}; {report.redelivered} redelivered"
    emit(
        report.as_dict(),
        json,
        lambda d: print(
            f"restarted {', '.join(d['nodes'])}: stopped in {d['stopped_in']}s, "
            f"{d['redelivered']} prefetched message(s) handed back and redelivered, "
            f"verified {', '.join(d['verified'])}"
        ),
    )


workers_ns = Collection("workers")
workers_ns.add_task(workers_status, "status")
workers_ns.add_task(workers_ping, "ping")
workers_ns.add_task(workers_start, "start")
workers_ns.add_task(workers_stop, "stop")
workers_ns.add_task(workers_restart, "restart")

# --- deploy (issue 5) -----------------------------------------------------------------------

DEPLOY_HELP = {
    "env": "the environment (inventory/<env>.yml; default local: this machine)",
    "ref": "the git ref to deploy (default HEAD)",
    "to": "the release to roll back to (default: the one before each host's current)",
    "check": "check mode: say what would change, change nothing",
    "limit": "only these hosts or groups of the workers group",
    "serial": "hosts per batch: a count or a share like 25% (default 1; 0: all at once)",
    "max_fail": "stop after a batch whose failed share exceeds this percentage (default 0)",
    "json": "print one JSON document",
    "inventory": "the inventory folder (default ./inventory)",
}


def _deploy_args(env: str, inventory: str) -> tuple[Any, dict[str, str], Any]:
    import os
    from pathlib import Path

    from runbooks.service import environ_with_dotenv

    return container(), environ_with_dotenv(os.environ), Path(inventory) if inventory else None


def _deploy_output(report: Any, json: bool) -> None:
    emit(report.as_dict(), json, lambda _: print("\n".join(report.lines())))
    if not report.ok:
        raise Exit(code=1)


def _deploy_progress(app: Any, env: str, environ: Any, inventory: Any, json: bool) -> Any:
    import sys

    from runbooks.cli import render
    from runbooks.deploy import rollout

    if json:
        return None, rollout.quiet
    redactor = rollout.redactor_for(app, env, environ, inventory)
    return render.ConsoleProgress(redactor), lambda m: print(m, file=sys.stderr, flush=True)


@task(help={k: DEPLOY_HELP[k] for k in DEPLOY_HELP if k != "to"})
def deploy_run(
    c: Context,
    env: str = "local",
    ref: str = "HEAD",
    check: bool = False,
    limit: str = "",
    serial: str = "1",
    max_fail: str = "0",
    json: bool = False,
    inventory: str = "",
) -> None:
    """Deploy a git ref to the workers: build once, ship, migrate, restart per batch, verify."""
    from pathlib import Path

    from runbooks.deploy import rollout

    app, environ, directory = _deploy_args(env, inventory)
    with operator_errors():
        listener, say = _deploy_progress(app, env, environ, directory, json)
        request = rollout.DeployRequest(
            environment=env,
            ref=ref,
            check=check,
            limit=limit or None,
            serial=rollout.parse_serial(serial),
            max_fail=rollout.parse_max_fail(max_fail),
            repo=Path.cwd(),
            inventory_dir=directory,
        )
        report = rollout.deploy(app, request, environ, listener, say)
    _deploy_output(report, json)


@task(help={k: DEPLOY_HELP[k] for k in DEPLOY_HELP if k != "ref"})
def deploy_rollback(
    c: Context,
    env: str = "local",
    to: str | None = None,
    check: bool = False,
    limit: str = "",
    serial: str = "1",
    max_fail: str = "0",
    json: bool = False,
    inventory: str = "",
) -> None:
    """Switch the workers back to the previous release (or --to) and restart them."""
    from runbooks.deploy import rollout

    app, environ, directory = _deploy_args(env, inventory)
    with operator_errors():
        listener, say = _deploy_progress(app, env, environ, directory, json)
        report = rollout.rollback(
            app, env, environ, to, limit or None, serial, max_fail, check, directory,
            listener, say,
        )  # fmt: skip
    _deploy_output(report, json)


@task(help={k: DEPLOY_HELP[k] for k in ("env", "limit", "json", "inventory")})
def deploy_releases(
    c: Context, env: str = "local", limit: str = "", json: bool = False, inventory: str = ""
) -> None:
    """List each host's releases and which one is current."""
    from runbooks.deploy import rollout

    app, environ, directory = _deploy_args(env, inventory)
    with operator_errors():
        hosts = rollout.releases(app, env, environ, limit or None, directory)

    def render(rows: dict[str, dict[str, Any]]) -> None:
        for host, row in rows.items():
            print(f"{host}: {row['status']}" + (f" {row['message']}" if row["message"] else ""))
            for name in reversed(row["releases"]):
                mark = "*" if name == row["current"] else " "
                print(f"  {mark} {name}")
            for node, release in row["workers"].items():
                print(f"    worker {node}: {release}")

    emit(hosts, json, render)
    if any(row["status"] != "ok" for row in hosts.values()):
        raise Exit(code=1)


@task(help={k: DEPLOY_HELP[k] for k in ("env", "inventory")})
def deploy_unlock(c: Context, env: str = "local", inventory: str = "") -> None:
    """Force the environment's deploy lock open (when its deploy died); recorded."""
    from runbooks.deploy import rollout

    app, environ, directory = _deploy_args(env, inventory)
    with operator_errors():
        print(rollout.unlock(app, env, environ, directory))


deploy_ns = Collection("deploy")
deploy_ns.add_task(deploy_run, "deploy", default=True)
deploy_ns.add_task(deploy_rollback, "rollback")
deploy_ns.add_task(deploy_releases, "releases")
deploy_ns.add_task(deploy_unlock, "unlock")


ns = Collection(db)
ns.add_collection(workers_ns)
ns.add_task(demo)
ns.add_task(stop)
ns.add_collection(failed_ns)
ns.add_collection(docker_ns)  # issue 6
ns.add_task(run_runbook, "run")
ns.add_task(runbooks_list, "runbooks")
ns.add_collection(history_ns)
ns.add_collection(deploy_ns)  # issue 5

ns.add_collection(cache_cli.ns)
ns.add_collection(queue_cli.ns)
ns.add_collection(sessions_cli.ns)
ns.add_collection(ratelimit_cli.ns)
ns.add_collection(redis_cli.ns)
ns.add_task(status_cli.status)
ns.add_collection(metrics_cli.ns)
ns.add_collection(audit_cli.ns)
ns.add_collection(maintenance_cli.ns)


# --- the command line as a whole: Invoke's own parse errors, empty values ---------------------

PARSE_ERRORS = (
    (re.compile(r"No idea what '(.*)' is!", re.S), "unknown"),
    (re.compile(r"Flag <Argument: (\w+).*> needed value", re.S), "no value"),
    (re.compile(r"did not receive required positional arguments: (.*)", re.S), "positional"),
    (re.compile(r"Flag <Argument: (\w+).*> doesn't take any value", re.S), "takes none"),
)


def parse_error_line(message: str, task_name: str | None) -> str:
    """Invoke's ParseError `message` as an operator reads it: what is wrong, what to do."""
    help_for = f"invoke --help {task_name}" if task_name else "invoke --list"
    for pattern, kind in PARSE_ERRORS:
        match = pattern.search(message)
        if match is None:
            continue
        what = match.group(1)
        flag = "--" + what.replace("_", "-")
        if kind == "unknown" and not task_name and what.startswith("-"):
            return f"unknown flag {shown(what)} (invoke --help shows the core flags)"
        if kind == "unknown" and not task_name:
            return f"no task {shown(what)} (invoke --list shows them)"
        if kind == "unknown":
            if what.startswith("-"):
                return f"{task_name}: unknown flag {shown(what)} ({help_for} shows its flags)"
            return f"{task_name}: {shown(what)} is neither a task nor a value it takes ({help_for})"
        if kind == "no value":
            return f"{task_name}: {flag} needs a value ({help_for})"
        if kind == "positional":
            names = " ".join(n.strip("' ").upper() for n in what.split(","))
            return f"{task_name}: give {names} ({help_for})"
        return f"{task_name}: {flag} takes no value ({help_for})"
    return f"{shown(message, 200)[1:-1]} ({help_for})"


def typed(context: Any) -> str | None:
    """A task's name as typed: `deploy` rather than `deploy.deploy` (None: no task)."""
    names = [n for n in (context.name, *context.aliases) if n]
    return min(names, key=len) if names else None


def refuse_a_bad_command_line() -> None:
    """Every refusal, Invoke's own included, is one `error:` line and exit code 2.

    Stock Invoke prints its parse errors (an unknown flag, a flag without its value, a
    missing positional) its own way and exits 1, and offers a tasks file no hook for them.
    It imports this file after parsing its own flags and before parsing the tasks', so the
    tasks' parse is run here first, with Invoke's parser on what the running program left
    unparsed; a ParseError becomes `error: ...` (Exit, which Invoke prints and exits with).
    The same pass refuses an empty value for any flag or positional ("" would silently mean
    the default) and a `-h` taken as a positional value (`history.show -h`). Imported any
    other way (tests, Fabric), this does nothing.
    """
    from invoke.exceptions import ParseError
    from invoke.main import program
    from invoke.parser import Parser

    core = getattr(program, "core", None)
    if core is None or program.args.complete.value:  # not run by `invoke`, or completing
        return
    contexts = ns.to_contexts(ignore_unknown_help=program.config.tasks.ignore_unknown_help)
    try:
        parser = Parser(contexts=contexts, initial=program.initial_context)
        parsed = parser.parse_argv(core.unparsed)
    except ParseError as exc:
        name = typed(exc.context) if exc.context is not None else None
        raise Exit(f"error: {parse_error_line(str(exc), name)}", code=2) from None
    for context in parsed[1:]:  # [0]: core flags given among the tasks'
        name = typed(context)
        for arg in context.args.values():
            given = arg.value if arg.got_value else None
            shown_as = arg.names[0].upper() if arg.positional else f"--{arg.names[0]}"
            if isinstance(given, str) and not given.strip():
                leave = "" if arg.positional else " or leave the flag out"
                raise Exit(
                    f"error: {name}: {shown_as} is empty; give a value{leave} "
                    f"(invoke --help {name})",
                    code=2,
                )
            if arg.positional and given in ("-h", "--help"):
                raise Exit(
                    f"error: {name}: {given} came where {shown_as} goes; for help: "
                    f"invoke --help {name}",
                    code=2,
                )


refuse_a_bad_command_line()
