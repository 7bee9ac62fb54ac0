"""indexes for the lists the console pages: failed tasks by task and queue, runs by name

- `failed_tasks (task_name, id)` and `(queue, id)`: `failed.list --task X` / `--queue Q` (and
  the console's filters) walk the primary key backwards and skip rows of other tasks; for a
  task with few failures among 1,000,000 rows that is the whole table (~700 ms on PostgreSQL).
  With the name first and the id second a filtered page is read from the index in id order.
- `ops_runs (name, id)`: the deploy log (`invoke deploy.log`, the console's Deploys page) reads
  every `deploy` and `deploy.rollback` row to know each entry's previous release; without it,
  a scan of the whole run history.

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
    with op.batch_alter_table("failed_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_failed_tasks_task_name_id", ["task_name", "id"], unique=False)
        batch_op.create_index("ix_failed_tasks_queue_id", ["queue", "id"], unique=False)
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.create_index("ix_ops_runs_name_id", ["name", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_ops_runs_name_id")
    with op.batch_alter_table("failed_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_failed_tasks_queue_id")
        batch_op.drop_index("ix_failed_tasks_task_name_id")
