"""Post a payment request to the ledger exactly once, under its wallet's fenced lock.

Posting reads the request and its accounts with row locks inside one transaction, refuses a
stale fencing token, and either writes a balanced posting (status ``posted``) or records the
business outcome (``rejected``: insufficient funds). A request that is no longer pending is a
no-op: that is how duplicate deliveries are absorbed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from celery_app import ledger
from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, StaleFence
from celery_app.locks import FencedLocks, Grant
from celery_app.models import Account, LedgerEntry, PaymentRequest, Posting


@dataclass(frozen=True)
class Outcome:
    """What posting a request did: posted, rejected, or duplicate (already final)."""

    request_id: int
    result: str
    status: str
    reason: str | None = None


def locks(container: Container) -> FencedLocks:
    """Build the fenced lock service on the locks role, floored by SQL's highest token."""

    def sql_floor() -> int:
        with container.uow() as uow:
            return int(uow.session.scalar(select(func.coalesce(func.max(Account.fence), 0))) or 0)

    return FencedLocks(
        container.redis("locks"),
        lambda resource: container.keyspace.lock(resource),
        container.keyspace.fence_counter,
        sql_floor,
        container.settings.lock_ttl_ms,
    )


def wallet_of(request: PaymentRequest) -> int:
    """The account whose lock serialises this request: the student's wallet."""
    return request.credit_account_id if request.kind == "top_up" else request.debit_account_id


def peek(container: Container, request_id: int) -> tuple[str, str | None, int]:
    """Return the request's status, reason and wallet without locking anything."""
    with container.uow() as uow:
        request = uow.session.get(PaymentRequest, request_id)
        if request is None:
            raise InvalidRequest(f"no payment request with id {request_id}")
        return request.status, request.reason, wallet_of(request)


def post_request(container: Container, request_id: int, lock_service: FencedLocks) -> Outcome:
    """Post request `request_id` once; later calls return a duplicate outcome."""
    status, reason, wallet = peek(container, request_id)
    if status != "pending":
        return Outcome(request_id, "duplicate", status, reason)
    with lock_service.hold(f"account:{wallet}") as grant:
        return commit_request(container, request_id, grant)


def commit_request(container: Container, request_id: int, grant: Grant) -> Outcome:
    """Write the request's posting in one transaction if `grant`'s token is still current."""
    with container.uow() as uow:
        session = uow.session
        request = session.scalars(
            select(PaymentRequest).where(PaymentRequest.id == request_id).with_for_update()
        ).one()
        if request.status != "pending":
            return Outcome(request_id, "duplicate", request.status, request.reason)
        wallet = wallet_of(request)
        fenced = session.execute(
            update(Account)
            .where(Account.id == wallet, Account.fence < grant.token)
            .values(fence=grant.token)
        )
        if fenced.rowcount != 1:  # type: ignore[attr-defined]
            raise StaleFence(
                f"fencing token {grant.token} on account {wallet} was superseded; "
                "this lock holder stalled past its lock's expiry"
            )
        ids = sorted({request.debit_account_id, request.credit_account_id})
        rows = session.execute(
            select(Account.id, Account.balance, Account.kind)
            .where(Account.id.in_(ids))
            .order_by(Account.id)
            .with_for_update()
        ).all()
        balances = {row.id: row.balance for row in rows}
        kinds = {row.id: row.kind for row in rows}
        posting = ledger.transfer(
            request.debit_account_id, request.credit_account_id, request.amount
        )
        now = dt.datetime.now(dt.UTC)
        short = ledger.shortfall(posting, balances, kinds)
        request.updated_at = now
        if short:
            request.status = "rejected"
            request.reason = f"insufficient funds: short by {short} halalas"
            uow.commit()
            return Outcome(request_id, "rejected", "rejected", request.reason)
        write_posting(session, posting, kind=request.kind, request_id=request.id, fence=grant.token)
        request.status = "posted"
        request.posted_at = now
        uow.commit()
        return Outcome(request_id, "posted", "posted")


def write_posting(
    session: Session,
    posting: ledger.Posting,
    *,
    kind: str,
    request_id: int | None = None,
    settlement_batch_id: int | None = None,
    fence: int = 0,
) -> Posting:
    """Insert a posting, its entries, and apply its deltas to the stored balances."""
    row = Posting(
        kind=kind, request_id=request_id, settlement_batch_id=settlement_batch_id, fence=fence
    )
    session.add(row)
    session.flush()
    session.add_all(
        LedgerEntry(posting_id=row.id, account_id=e.account, amount=e.amount)
        for e in posting.entries
    )
    for account, delta in posting.deltas().items():
        session.execute(
            update(Account).where(Account.id == account).values(balance=Account.balance + delta)
        )
    return row
