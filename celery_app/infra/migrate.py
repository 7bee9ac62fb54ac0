"""Apply and inspect the Alembic schema (`invoke db.migrate`, `invoke db.current`)."""

from __future__ import annotations

import re

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from celery_app.errors import InvalidRequest
from celery_app.infra.db import database_errors
from celery_app.inputs import shown
from celery_app.settings import PROJECT_ROOT

MIGRATIONS = PROJECT_ROOT / "migrations"
# head, heads, base, 0003, +1, -1, 0003+1, branch@head, branch@+1: what alembic can resolve
REVISION = re.compile(
    r"(?:[A-Za-z0-9_]{1,40}@)?(?:[A-Za-z0-9_]{1,40}|[A-Za-z0-9_]{0,40}[+-][0-9]{1,4})"
)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind `engine` up to `revision`; never down (InvalidRequest)."""
    check_revision(revision)
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    script = ScriptDirectory.from_config(config)
    try:
        with database_errors(engine), engine.begin() as connection:
            now = MigrationContext.configure(connection).get_current_revision()
            check_upgrade(script, now, revision)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except CommandError as exc:  # an unknown or unreachable --revision
        first = (str(exc).strip().splitlines() or ["no such revision"])[0]
        raise InvalidRequest(f"--revision {shown(revision)}: {first}") from None


def upgrade_from(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade as :func:`upgrade` does; return the database's revision before and after."""
    before = current(engine)
    upgrade(engine, revision)
    return before, current(engine)


def check_revision(revision: str) -> None:
    """Refuse what cannot name a revision (alembic asserts, with no message, on '' and 'x@')."""
    if not REVISION.fullmatch(revision):
        got = shown(revision) if revision else "an empty value"
        raise InvalidRequest(
            f"--revision: expected a revision such as head, 0003 or +1 (invoke db.current shows "
            f"them), got {got}"
        )


def check_upgrade(script: ScriptDirectory, now: str | None, revision: str) -> None:
    """Refuse a `revision` below the database's `now`: this command only upgrades."""
    if now is None or revision.startswith("+"):  # relative upgrades: alembic checks them
        return
    below = {r.revision for r in script.iterate_revisions(now, "base")} - {now}
    targets = () if revision.startswith("-") else script.get_revisions(revision)  # or CommandError
    if not targets or any(t is not None and t.revision in below for t in targets):
        raise InvalidRequest(
            f"--revision {shown(revision)} is below the database's {now}: downgrades are not "
            "done by this command (db.migrate only upgrades)"
        )


def current(engine: Engine) -> str | None:
    """Return the database's revision, or None when it has never been migrated."""
    with database_errors(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head(engine: Engine) -> str | None:
    """Return the newest revision the code ships."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    return ScriptDirectory.from_config(config).get_current_head()
