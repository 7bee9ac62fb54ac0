"""Post a payment request to the ledger exactly once, under its wallet's fenced lock.

Posting reads the request and its accounts with row locks inside one transaction, refuses a
stale fencing token, and either writes a balanced posting (status ``posted``) or records the
business outcome (``rejected``: insufficient funds). A request that is no longer pending is a
no-op: that is how duplicate deliveries are absorbed.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import Connection, case, func, insert, or_, select, text, update

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, StaleFence
from celery_app.infra.models import Account, LedgerEntry, PaymentRequest, Posting
from celery_app.money import ledger
from celery_app.money.locks import FencedLocks, Grant


@dataclass(frozen=True)
class Outcome:
    """What posting a request did: posted, rejected, or duplicate (already final)."""

    request_id: int
    result: str
    status: str
    reason: str | None = None


@functools.lru_cache(maxsize=8)
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


def wallet_of(kind: str, debit: int, credit: int) -> int:
    """The account whose lock serialises a request: the student's wallet."""
    return credit if kind == "top_up" else debit


def peek(container: Container, request_id: int) -> tuple[str, str | None, int]:
    """Return the request's status, reason and wallet: one read, no transaction, no lock."""
    with container.engine.connect() as conn:
        row = conn.execute(
            select(
                PaymentRequest.status,
                PaymentRequest.reason,
                PaymentRequest.kind,
                PaymentRequest.debit_account_id,
                PaymentRequest.credit_account_id,
            ).where(PaymentRequest.id == request_id)
        ).first()
        conn.rollback()
    if row is None:
        raise InvalidRequest(f"no payment request with id {request_id}")
    return row.status, row.reason, wallet_of(row.kind, row.debit_account_id, row.credit_account_id)


def post_request(container: Container, request_id: int, lock_service: FencedLocks) -> Outcome:
    """Post request `request_id` once; later calls return a duplicate outcome."""
    status, reason, wallet = peek(container, request_id)
    if status != "pending":
        return Outcome(request_id, "duplicate", status, reason)
    with lock_service.hold(f"account:{wallet}") as grant:
        return commit_request(container, request_id, grant)


def commit_request(container: Container, request_id: int, grant: Grant) -> Outcome:
    """Write the request's posting in one transaction if `grant`'s token is still current.

    Core statements, not the ORM, and few round trips: the fence check and the account row
    locks are one UPDATE ... RETURNING, the two balance changes one UPDATE.
    """
    with container.engine.connect() as conn, conn.begin():
        request = conn.execute(
            select(
                PaymentRequest.kind,
                PaymentRequest.debit_account_id,
                PaymentRequest.credit_account_id,
                PaymentRequest.amount,
                PaymentRequest.status,
                PaymentRequest.reason,
            )
            .where(PaymentRequest.id == request_id)
            .with_for_update()
        ).one()
        if request.status != "pending":
            return Outcome(request_id, "duplicate", request.status, request.reason)
        wallet = wallet_of(request.kind, request.debit_account_id, request.credit_account_id)
        ids = sorted({request.debit_account_id, request.credit_account_id})
        # Lock both rows; move the wallet's fence to our token only if it is still below it.
        rows = conn.execute(
            update(Account)
            .where(Account.id.in_(ids), or_(Account.id != wallet, Account.fence < grant.token))
            .values(fence=case((Account.id == wallet, grant.token), else_=Account.fence))
            .returning(Account.id, Account.balance, Account.kind)
        ).all()
        if wallet not in {row.id for row in rows}:
            raise StaleFence(
                f"fencing token {grant.token} on account {wallet} was superseded; "
                "this lock holder stalled past its lock's expiry"
            )
        posting = ledger.transfer(
            request.debit_account_id, request.credit_account_id, request.amount
        )
        now = dt.datetime.now(dt.UTC)
        short = ledger.shortfall(
            posting, {r.id: r.balance for r in rows}, {r.id: r.kind for r in rows}
        )
        if short:
            reason = f"insufficient funds: short by {short} halalas"
            _finish(conn, request_id, status="rejected", reason=reason, updated_at=now)
            return Outcome(request_id, "rejected", "rejected", reason)
        if conn.dialect.name == "postgresql":
            _post_in_one_statement(conn, posting, request.kind, request_id, grant.token, now)
        else:
            write_posting(
                conn, posting, kind=request.kind, request_id=request_id, fence=grant.token
            )
            _finish(conn, request_id, status="posted", updated_at=now, posted_at=now)
        return Outcome(request_id, "posted", "posted")


# PostgreSQL runs the four writes of a posting as one statement (data-modifying CTEs): the
# posting, its two entries, both balance changes and the request's status, in one round trip.
_POST_PG = text(
    """
    WITH p AS (
        INSERT INTO postings (kind, request_id, fence, created_at)
        VALUES (:kind, :request_id, :fence, :now) RETURNING id
    ), e AS (
        INSERT INTO ledger_entries (posting_id, account_id, amount, created_at)
        SELECT p.id, v.account_id, v.amount, :now
        FROM p, (VALUES (CAST(:a1 AS INTEGER), CAST(:m1 AS BIGINT)),
                        (CAST(:a2 AS INTEGER), CAST(:m2 AS BIGINT))) AS v(account_id, amount)
    ), b AS (
        UPDATE accounts
        SET balance = balance + CASE id WHEN :a1 THEN CAST(:m1 AS BIGINT)
                                        WHEN :a2 THEN CAST(:m2 AS BIGINT) END
        WHERE id IN (:a1, :a2)
    ), r AS (
        UPDATE payment_requests SET status = 'posted', updated_at = :now, posted_at = :now
        WHERE id = :request_id
    )
    SELECT id FROM p
    """
)


def _post_in_one_statement(
    conn: Connection,
    posting: ledger.Posting,
    kind: str,
    request_id: int,
    fence: int,
    now: dt.datetime,
) -> int:
    (first, second) = posting.entries
    return int(
        conn.execute(
            _POST_PG,
            {
                "kind": kind,
                "request_id": request_id,
                "fence": fence,
                "now": now,
                "a1": first.account,
                "m1": first.amount,
                "a2": second.account,
                "m2": second.amount,
            },
        ).scalar_one()
    )


def _finish(conn: Connection, request_id: int, **values: object) -> None:
    conn.execute(update(PaymentRequest).where(PaymentRequest.id == request_id).values(**values))


def write_posting(
    conn: Connection,
    posting: ledger.Posting,
    *,
    kind: str,
    request_id: int | None = None,
    settlement_batch_id: int | None = None,
    fence: int = 0,
) -> int:
    """Insert a posting and its entries and apply its deltas to the balances; return its id."""
    now = dt.datetime.now(dt.UTC)
    posting_id = conn.execute(
        insert(Posting)
        .values(
            kind=kind,
            request_id=request_id,
            settlement_batch_id=settlement_batch_id,
            fence=fence,
            created_at=now,
        )
        .returning(Posting.id)
    ).scalar_one()
    conn.execute(
        insert(LedgerEntry),
        [
            {
                "posting_id": posting_id,
                "account_id": e.account,
                "amount": e.amount,
                "created_at": now,
            }
            for e in posting.entries
        ],
    )
    deltas = posting.deltas()
    conn.execute(
        update(Account)
        .where(Account.id.in_(sorted(deltas)))
        .values(
            balance=Account.balance
            + case(*((Account.id == a, d) for a, d in deltas.items()), else_=0)
        )
    )
    return int(posting_id)
