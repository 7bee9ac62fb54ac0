"""`queue.*`: the broker's queues."""

from __future__ import annotations

from typing import Any

from invoke import Collection, Context

from runbooks.cli.apps import redis_app, run_recorded
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, REASON_HELP, task
from runbooks.cli.output import emit


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def render_queues(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'queue':<12} {'waiting':>8} {'unacked':>8} {'oldest waiting':>15} {'oldest unacked':>15}"
    )
    for r in rows:
        waiting = _age(r["oldest_waiting"]) if r["waiting_age_known"] else "unknown"
        name = r["name"] + (" $" if r["money"] else "")
        print(
            f"{name:<12} {r['waiting']:>8} {r['unacked']:>8} {waiting:>15} "
            f"{_age(r['oldest_unacked']):>15}"
        )


@task(help={**ON_REDIS_HELP, **JSON_HELP})
def size(c: Context, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Show each queue's depth, unacked messages and the age of its oldest message."""
    from celery_app.ops import queues

    app = redis_app(env, inventory)
    with operator_errors():
        stats = queues.queue_stats(app.redis("broker"))
    emit([s.as_dict() for s in stats], json, render_queues)


@task(
    help={
        "queue": "the queue to purge, as queue.size names it",
        "yes": "confirm: the queue's waiting messages are deleted",
        "force": "allow purging a money queue (then it needs an approval: --reason)",
        **ON_REDIS_HELP,
        **REASON_HELP,
    }
)
def purge(
    c: Context,
    queue: str,
    yes: bool = False,
    force: bool = False,
    env: str = "",
    inventory: str = "",
    reason: str = "",
) -> None:
    """Delete every waiting message of QUEUE (money queues need --force); recorded in history."""
    from celery_app.ops import queues

    app = redis_app(env, inventory)
    with operator_errors():
        queues.check_purge(queue, force=force)  # refused: nothing written, not even history
    if not yes:
        refuse(f"purging {queue!r} deletes its waiting messages; add --yes")
    _, message = run_recorded(
        app,
        "queue.purge",
        env,
        lambda: queues.purge(app.redis("broker"), queue, force=force),
        lambda removed: f"purged {removed} waiting messages from {queue!r}",
        queue=queue,
        force=force,
    )
    print(f"{message}; unacked messages kept")


ns = Collection("queue", size, purge)
