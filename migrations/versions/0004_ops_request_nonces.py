"""ops request nonces: a signed runbook request runs once

Each signed request on the ops queue carries a nonce; the worker that accepts it inserts the
nonce here, so the same request sent again (a replay) hits the primary key and is refused.
Rows older than a request's lifetime are pruned as new ones arrive.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ops_request_nonces",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ops_request_nonces_received_at", "ops_request_nonces", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_ops_request_nonces_received_at", "ops_request_nonces")
    op.drop_table("ops_request_nonces")
