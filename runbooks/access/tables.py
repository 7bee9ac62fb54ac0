"""The access tables (migration 0005), on the app's declarative Base like the history tables,
so :func:`runbooks.engine.history_tables.schema_metadata` covers them.

`operators` (name, role, scrypt hash, disabled), `operator_tokens` (sha256 of each API token,
its expiry, revoked or not, last use) and `approvals` (who asked for what, the digest of the
exact arguments, the environment, the reason; who decided, when it expires, the run it became).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from celery_app.infra.models import Base, utcnow


class Operator(Base):
    """One operator account."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | approver | admin
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(100), default="")


class OperatorToken(Base):
    """One API token (its sha256 only), revocable, with an expiry."""

    __tablename__ = "operator_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    operator_id: Mapped[int] = mapped_column(
        ForeignKey("operators.id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Approval(Base):
    """A request to run one command with exact arguments, and what became of it.

    status: pending -> approved | denied | expired; approved -> used (run once).
    """

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(100))  # the invoke task: failed.flush
    record: Mapped[str] = mapped_column(String(200))  # the history record it opens
    environment: Mapped[str] = mapped_column(String(100), default="")
    arguments: Mapped[str] = mapped_column(Text)  # the task's arguments (JSON), to run them
    digest: Mapped[str] = mapped_column(String(64))  # sha256 of the command and its arguments
    record_digest: Mapped[str] = mapped_column(String(64))  # sha256 of the record it opens
    why: Mapped[str] = mapped_column(Text, default="")  # what requires the approval
    reason: Mapped[str] = mapped_column(Text, default="")  # --reason
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
