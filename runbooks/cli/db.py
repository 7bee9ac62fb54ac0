"""`db.*`: the database's schema."""

from __future__ import annotations

from invoke import Collection, Context

from runbooks.cli.apps import container
from runbooks.cli.errors import operator_errors
from runbooks.cli.flags import JSON_HELP, task
from runbooks.cli.output import emit


@task(
    help={
        "revision": "the revision to upgrade to (default head); one below the database's is "
        "refused: this command only upgrades, downgrades are not done by it"
    }
)
def migrate(c: Context, revision: str = "head") -> None:
    """Upgrade the database to the newest schema (or up to --revision); never downgrades."""
    from celery_app.infra import migrate

    with operator_errors():
        migrate.check_revision(revision)  # refused before the database is opened
    app = container()
    with operator_errors():
        before, after = migrate.upgrade_from(app.engine, revision)
    print(f"database {'already at' if before == after else 'migrated to'} {after}")


@task(help=JSON_HELP)
def current(c: Context, json: bool = False) -> None:
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


ns = Collection("db", migrate, current)
