"""failed task ids are never reused on SQLite

SQLite hands the highest rowid out again once that row is deleted, so a failed task an
operator retried or forgot could have its id taken by the next failure. AUTOINCREMENT needs
the table recreated; PostgreSQL's sequences never reuse ids, so it changes nothing there.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _recreate(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "failed_tasks", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    _recreate(True)


def downgrade() -> None:
    _recreate(False)
