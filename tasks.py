"""Invoke entry point: a thin command line over runbooks/ and celery_app/.

`invoke --list` shows every command; `invoke --help NAME` its flags. Errors an operator can fix
exit non-zero with one line; nothing here holds logic of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from invoke import Collection, Context, Exit, task

from celery_app.errors import MaqsafyError


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn the project's errors into a one-line message and exit code 2."""
    try:
        yield
    except MaqsafyError as exc:
        raise Exit(f"error: {exc}", code=2) from None


def container() -> Any:
    from celery_app import bootstrap

    with operator_errors():
        return bootstrap.get()


def emit(data: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    """Print `data` as one JSON document for scripts, or through `render` for people."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render(data)


# --- db -------------------------------------------------------------------------------------


@task
def db_migrate(c: Context, revision: str = "head") -> None:
    """Migrate the database to the newest schema (or to --revision)."""
    from celery_app import migrate

    app = container()
    with operator_errors():
        before = migrate.current(app.engine)
        migrate.upgrade(app.engine, revision)
        after = migrate.current(app.engine)
    print(f"database {'already at' if before == after else 'migrated to'} {after}")


@task(help={"json": "print one JSON document"})
def db_current(c: Context, json: bool = False) -> None:
    """Show the database's schema revision and the newest the code ships."""
    from celery_app import migrate

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

ns = Collection(db)
