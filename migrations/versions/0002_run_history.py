"""run history: ops runs, their hosts and steps

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 05:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("environment", sa.String(length=100), nullable=False),
        sa.Column("operator", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("check_mode", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_runs")),
    )
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.create_index("ix_ops_runs_started_at", ["started_at"], unique=False)

    op.create_table(
        "ops_run_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False),
        sa.Column("ok", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("rescued", sa.Integer(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["ops_runs.id"],
            name=op.f("fk_ops_run_hosts_run_id_ops_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_run_hosts")),
    )
    with op.batch_alter_table("ops_run_hosts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ops_run_hosts_run_id"), ["run_id"], unique=False)

    op.create_table(
        "ops_run_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("rc", sa.Integer(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rescued", sa.Boolean(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["ops_runs.id"],
            name=op.f("fk_ops_run_steps_run_id_ops_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ops_run_steps")),
    )
    with op.batch_alter_table("ops_run_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ops_run_steps_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ops_run_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_run_steps_run_id"))
    op.drop_table("ops_run_steps")
    with op.batch_alter_table("ops_run_hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ops_run_hosts_run_id"))
    op.drop_table("ops_run_hosts")
    with op.batch_alter_table("ops_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_ops_runs_started_at")
    op.drop_table("ops_runs")
