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
from runbooks.cli import db as db_cli
from runbooks.cli import demo as demo_cli
from runbooks.cli import docker as docker_cli
from runbooks.cli import failed as failed_cli
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


# --- cache ----------------------------------------------------------------------------------


# --- queue ----------------------------------------------------------------------------------


# --- failed ---------------------------------------------------------------------------------


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


ns = Collection(db_cli.ns)
ns.add_collection(workers_ns)
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

ns.add_collection(failed_cli.ns)
ns.add_collection(docker_cli.ns)
ns.add_task(demo_cli.demo)
ns.add_task(demo_cli.stop)


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
