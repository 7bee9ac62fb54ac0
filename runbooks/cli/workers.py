"""`workers.*`: Celery worker nodes, on this machine or (restart) on an environment's hosts."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from invoke import Collection, Context

from celery_app.infra.keyspace import QUEUES
from runbooks.cli.apps import celery_module, container, inventory_dir, recorded
from runbooks.cli.errors import exit_with, operator_errors, refuse
from runbooks.cli.flags import INVENTORY_HELP, JSON_HELP, node_list, pick, task, whole
from runbooks.cli.output import emit

if TYPE_CHECKING:
    from celery import Celery

    from celery_app.ops.workers import MultiSupervisor

WORKER_QUEUES = ",".join(QUEUES)  # every queue the app declares
HELP = {
    "nodes": "worker node names, comma-separated (default w1)",
    "queues": f"queues the nodes consume (default {WORKER_QUEUES})",
    "concurrency": "processes per node, 1 to 256 (default 2)",
    "timeout": "seconds (1 to 86400) to wait for running tasks at a warm shutdown (default 60)",
    "env": "run on an inventory environment's worker hosts (runbook workers-restart)",
    "limit": "with --env: only these hosts or groups",
    "check": "with --env: say what would change, change nothing",
    "inventory": INVENTORY_HELP,
    **JSON_HELP,
}


def celery_control() -> Celery:
    """The Celery app for remote control; starts the embedded Redis when that is the broker."""
    from celery_app.infra.embedded import ensure_embedded_redis

    settings = container().settings
    celery: Celery = celery_module().app
    if settings.embedded_redis:
        with operator_errors():
            ensure_embedded_redis(settings.var_dir)
    return celery


def supervisor(queues: str, concurrency: int) -> MultiSupervisor:
    """The `celery multi` supervisor of this machine's nodes (pidfiles under ./var/run)."""
    from celery_app.infra.keyspace import queue_names
    from runbooks.deploy import layout

    with operator_errors():  # refused before any worker starts
        chosen = queue_names(queues)
    return layout.local_supervisor(container().settings.var_dir, chosen, concurrency)


@task(help=pick(HELP, "json"))
def status(c: Context, json: bool = False) -> None:
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
    exit_with(0 if nodes else 1)


@task(help=pick(HELP, "json"))
def ping(c: Context, json: bool = False) -> None:
    """Ping every worker over the broker; exit 1 when none answers."""
    from celery_app.ops import workers

    with operator_errors():
        names = workers.ping(celery_control())
    emit(names, json, lambda n: print("\n".join(f"{x}: pong" for x in n) or "no worker answered"))
    exit_with(0 if names else 1)


@task(help=pick(HELP, "nodes", "queues", "concurrency"))
def start(
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


@task(help=pick(HELP, "nodes", "timeout"))
def stop(c: Context, nodes: str = "w1", timeout: str = "60") -> None:
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
        refuse(f"still running after {seconds}s: {', '.join(left)}", code=1)
    if running:
        print(f"stopped: {', '.join(running)}")
    idle = [n for n in names if n not in running]
    if idle:
        print(f"not running: {', '.join(idle)}")


@task(help=HELP)
def restart(
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
    from celery_app.ops import workers

    processes = whole(concurrency, "--concurrency", 1, 256)
    seconds = whole(timeout, "--timeout", 1, 86_400)
    if env and env != "local":  # the workers-restart runbook on the environment's hosts
        from runbooks.cli.books import run_book
        from runbooks.service import RunRequest

        directory = inventory_dir(inventory)
        book = RunRequest(
            "workers-restart", env, limit or None, check=check, inventory_dir=directory
        )
        run_book(book, json)
        return
    names = node_list(nodes)
    sup = supervisor(queues, processes)  # a bad --queues is refused before the record opens
    with operator_errors(), recorded(container(), "workers.restart", env, nodes=names) as rec:
        report = workers.restart(
            celery_control(),
            sup,
            names,
            timeout=seconds,
            progress=None if json else lambda m: print(m, file=sys.stderr, flush=True),
        )
        rec.message = report.summary()
    emit(
        report.as_dict(),
        json,
        lambda d: print(
            f"restarted {', '.join(d['nodes'])}: stopped in {d['stopped_in']}s, "
            f"{d['redelivered']} prefetched message(s) handed back and redelivered, "
            f"verified {', '.join(d['verified'])}"
        ),
    )


ns = Collection("workers", status, ping, start, stop, restart)
