"""Post a payment request to the ledger exactly once, under its wallet's fenced lock.

A posting is three round trips: take the wallet's lock (one Redis call, which also draws the
fencing token), run the posting (one statement on PostgreSQL, see
:mod:`celery_app.money.posting_sql`), release the lock (one Redis call). The database checks,
on rows it holds locked, that the request is still pending, that the wallet is the request's,
that the token is not stale and that the wallet can pay; then it writes a balanced posting
(``posted``) or records the business outcome (``rejected``: insufficient funds). A request
that is no longer pending is a no-op: that is how duplicate deliveries are absorbed.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import Connection, case, func, insert, select, update

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, StaleFence
from celery_app.infra.db import kept_connections
from celery_app.infra.models import Account, LedgerEntry, PaymentRequest, Posting
from celery_app.money import ledger, posting_sql
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
    return posting_sql.wallet_of(kind, debit, credit)


def peek(container: Container, request_id: int) -> tuple[str, str | None, int]:
    """Return the request's status, reason and wallet: one read, no transaction, no lock.

    Only for a message that does not carry its wallet (sent before the wallet travelled with
    it); the posting itself checks the status again under its locks.
    """
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


def post_request(
    container: Container, request_id: int, lock_service: FencedLocks, wallet: int | None = None
) -> Outcome:
    """Post request `request_id` once; later calls return a duplicate outcome.

    `wallet` is the request's wallet as its message carries it: the lock is taken on it and the
    database verifies it. A wrong one costs a second try on the right one; none costs a read.
    """
    if wallet is None:
        status, reason, wallet = peek(container, request_id)
        if status != "pending":
            return Outcome(request_id, "duplicate", status, reason)
    for _ in range(2):
        with lock_service.hold(f"account:{wallet}") as grant:
            verdict = _commit(container, request_id, grant, wallet)
        if verdict.result != "wrong_wallet":
            break
        wallet = verdict.wallet
    return _outcome(request_id, verdict, grant)


def commit_request(
    container: Container, request_id: int, grant: Grant, wallet: int | None = None
) -> Outcome:
    """Write the request's posting in one transaction if `grant`'s token is still current."""
    if wallet is None:
        wallet = peek(container, request_id)[2]
    return _outcome(request_id, _commit(container, request_id, grant, wallet), grant)


def _commit(
    container: Container, request_id: int, grant: Grant, wallet: int
) -> posting_sql.Verdict:
    post = (
        posting_sql.post_pg
        if container.engine.dialect.name == "postgresql"
        else posting_sql.post_sqlite
    )
    return kept_connections(container.engine).run(post, request_id, wallet, grant.token)


def _outcome(request_id: int, verdict: posting_sql.Verdict, grant: Grant) -> Outcome:
    if verdict.result == "missing":
        raise InvalidRequest(f"no payment request with id {request_id}")
    if verdict.result == "stale":
        raise StaleFence(
            f"fencing token {grant.token} on account {verdict.wallet} was superseded; "
            "this lock holder stalled past its lock's expiry"
        )
    if verdict.result == "wrong_wallet":
        raise InvalidRequest(
            f"payment request {request_id} is posted under account {verdict.wallet}'s lock"
        )
    return Outcome(request_id, verdict.result, verdict.status, verdict.reason)


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
