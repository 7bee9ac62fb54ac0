"""`sessions.*`: live login sessions in the sessions role."""

from __future__ import annotations

from invoke import Collection, Context

from runbooks.cli.apps import redis_app, run_recorded
from runbooks.cli.errors import operator_errors
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, task
from runbooks.cli.output import emit


@task(help={"user": "count only this user's sessions", **ON_REDIS_HELP, **JSON_HELP})
def count(
    c: Context, user: str | None = None, env: str = "", inventory: str = "", json: bool = False
) -> None:
    """Count live sessions, of everyone or of one user."""
    from celery_app.stores.sessions import count_sessions

    app = redis_app(env, inventory)
    with operator_errors():
        data = count_sessions(app, user)
    emit(
        data,
        json,
        lambda d: print(
            f"{d['sessions']} live session(s) of user {d['user']}"
            if d["user"]
            else f"{d['sessions']} live session(s) across {d['users']} user(s)"
        ),
    )


@task(help={"user": "the user to log out everywhere", **ON_REDIS_HELP, **JSON_HELP})
def revoke(c: Context, user: str, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Log one user out everywhere (after a credential leak); recorded in the history."""
    from celery_app.stores.sessions import check_user, revoke_sessions

    app = redis_app(env, inventory)
    with operator_errors():
        user = check_user(user)  # a bad id writes nothing, not even a history row
    data, message = run_recorded(
        app,
        "sessions.revoke",
        env,
        lambda: revoke_sessions(app, user),
        lambda d: f"revoked {d['revoked']} session(s) of user {user}",
        user=user,
    )
    emit(data, json, lambda _: print(message))


ns = Collection("sessions", count, revoke)
