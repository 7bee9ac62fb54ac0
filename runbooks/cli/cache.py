"""`cache.*`: the cache role's keys."""

from __future__ import annotations

import sys

from invoke import Collection, Context

from runbooks.cli.apps import redis_app, run_recorded
from runbooks.cli.errors import operator_errors
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, REASON_HELP, task
from runbooks.cli.output import emit


def progress(done: int) -> None:
    print(f"... {done} cache keys so far", file=sys.stderr, flush=True)


@task(
    help={
        "namespace": "clear one namespace only",
        "pattern": "clear keys matching a glob that starts with PREFIX:cache:",
        "check": "count what would be deleted; delete nothing",
        **ON_REDIS_HELP,
        **JSON_HELP,
        **REASON_HELP,
    }
)
def clear(
    c: Context,
    namespace: str | None = None,
    pattern: str | None = None,
    check: bool = False,
    env: str = "",
    inventory: str = "",
    json: bool = False,
    reason: str = "",
) -> None:
    """Delete cache keys only (never queues, sessions, rate limits or locks)."""
    from celery_app.stores import cache

    app = redis_app(env, inventory)
    with operator_errors():
        cache.clear_pattern(app.keyspace, namespace, pattern)  # refused: no history row
        if check:
            report = cache.clear_for(app, namespace=namespace, pattern=pattern, check=True)
        else:
            report, _ = run_recorded(
                app,
                "cache.clear",
                env,
                lambda: cache.clear_for(
                    app, namespace=namespace, pattern=pattern, progress=progress
                ),
                lambda r: f"deleted {r.deleted} cache keys by {r.method}",
                namespace=namespace,
                pattern=pattern,
            )
    emit(
        report.as_dict(),
        json,
        lambda d: print(
            f"{d['matched']} cache keys would be deleted ({d['pattern']}); nothing changed"
            if d["check"]
            else f"deleted {d['deleted']} cache keys ({d['pattern']}) by {d['method']} "
            f"in {d['seconds']:.2f}s; other roles' keys untouched"
        ),
    )


ns = Collection("cache", clear)
