"""sliced runs: each slice's holder and heartbeat; a host once per run

`invoke run BOOK --remote --slices N` runs one book as N tasks on the ops queue, all writing
one run. `ops_run_slices` holds each slice (keyed by the request and its index, so slices that
arrive at once open one run), the worker holding it and its heartbeat (a slice whose worker
died is taken over), and when it ended. A host is recorded once per run: a slice run again
after its worker died cannot count a host twice.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_run_slices",
        sa.Column("request", sa.String(length=64), nullable=False),
        sa.Column("slice", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("stopped", sa.Text(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["ops_runs.id"],
            name=op.f("fk_ops_run_slices_run_id_ops_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request", "slice", name=op.f("pk_ops_run_slices")),
    )
    with op.batch_alter_table("ops_run_slices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ops_run_slices_run_id"), ["run_id"], unique=False)
    # every writer records a host once per run (a mapping per run), so no row is in the way
    with op.batch_alter_table("ops_run_hosts", schema=None) as batch_op:
        batch_op.create_index("uq_ops_run_hosts_run_host", ["run_id", "host"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("ops_run_hosts", schema=None) as batch_op:
        batch_op.drop_index("uq_ops_run_hosts_run_host")
    with op.batch_alter_table("ops_run_slices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_run_slices_run_id"))
    op.drop_table("ops_run_slices")
