"""ops_runs by name: the deploy log reads only deploys and rollbacks

The deploy log (`invoke deploy.log`, the console's Deploys page) reads every `deploy` and
`deploy.rollback` row, oldest first, to know each entry's previous release. Without an index
on the name that is a scan of the whole run history (100,000 runs: ~25 ms on PostgreSQL before
any row is used); `(name, id)` gives those rows in id order from the index.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.create_index("ix_ops_runs_name_id", ["name", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_ops_runs_name_id")
