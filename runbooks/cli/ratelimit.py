"""`ratelimit.*`: rate limits and login lockouts in the ratelimit role."""

from __future__ import annotations

from invoke import Collection, Context

from runbooks.cli.apps import redis_app, run_recorded
from runbooks.cli.errors import operator_errors
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, task
from runbooks.cli.output import emit, print_fields

HELP = {
    "key": "topup:PARENT, login:account:ACCOUNT or login:address:IP",
    **ON_REDIS_HELP,
    **JSON_HELP,
}


@task(help=HELP)
def show(c: Context, key: str, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Show a rate limit or login lock: what is left, when allowed again."""
    from celery_app.stores import ratelimit

    app = redis_app(env, inventory)
    with operator_errors():
        data = ratelimit.show(app, key)
    emit(data, json, print_fields)


@task(help=HELP)
def reset(c: Context, key: str, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Clear a rate limit or unlock a locked-out login; recorded in the history."""
    from celery_app.stores import ratelimit

    app = redis_app(env, inventory)
    with operator_errors():
        kind, subject = ratelimit.parse_key(app, key)  # a bad key writes nothing
    data, message = run_recorded(
        app,
        "ratelimit.reset",
        env,
        lambda: ratelimit.reset(app, key),
        lambda d: f"{kind} {subject}: {'cleared' if d['cleared'] else 'nothing to clear'}",
        key=f"{kind}:{subject}",
    )
    emit(data, json, lambda _: print(message))


ns = Collection("ratelimit", show, reset)
