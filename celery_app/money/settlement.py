"""Daily merchant settlement and ledger reconciliation, on SQL as the source of truth."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from celery_app.bootstrap import Container
from celery_app.infra.models import Account, LedgerEntry, ReconciliationRun, SettlementBatch
from celery_app.money import ledger
from celery_app.money.posting import write_posting
from celery_app.money.submit import SETTLEMENT


@dataclass(frozen=True)
class SettlementResult:
    business_date: dt.date
    created: bool
    merchants: int
    total: int


def run_daily(container: Container, business_date: dt.date) -> SettlementResult:
    """Pay out every merchant's balance for `business_date` as one batch, once per date."""
    with container.uow() as uow:
        session = uow.session
        done = session.scalar(
            select(SettlementBatch).where(SettlementBatch.business_date == business_date)
        )
        if done is not None:
            return SettlementResult(business_date, False, done.merchants, done.total)
        settlement_id = session.scalar(select(Account.id).where(Account.code == SETTLEMENT))
        if settlement_id is None:
            raise LookupError(f"settlement account {SETTLEMENT} missing: run the migrations/seed")
        merchants = session.execute(
            select(Account.id, Account.balance)
            .where(Account.kind == "merchant")
            .order_by(Account.id)
            .with_for_update(key_share=True)  # purchases' foreign-key checks go on
        ).all()
        posting, total = ledger.settlement({m.id: m.balance for m in merchants}, settlement_id)
        paid = sum(1 for m in merchants if m.balance > 0)
        batch = SettlementBatch(business_date=business_date, merchants=paid, total=total)
        session.add(batch)
        session.flush()
        if posting is not None:
            write_posting(
                session.connection(), posting, kind="settlement", settlement_batch_id=batch.id
            )
        try:
            uow.commit()
        except IntegrityError:  # another run settled the same date first
            session.rollback()
            return run_daily(container, business_date)
        return SettlementResult(business_date, True, paid, total)


@dataclass(frozen=True)
class Reconciliation:
    accounts: int
    postings: int
    discrepancies: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return not self.discrepancies


def reconcile(container: Container) -> Reconciliation:
    """Check every balance against its entries and every posting sums to zero; record it."""
    with container.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            accounts = conn.execute(select(Account.id, Account.balance, Account.kind)).all()
            sums = conn.execute(
                select(LedgerEntry.account_id, func.sum(LedgerEntry.amount)).group_by(
                    LedgerEntry.account_id
                )
            ).all()
            per_posting = conn.execute(
                select(LedgerEntry.posting_id, func.sum(LedgerEntry.amount))
                .group_by(LedgerEntry.posting_id)
                .having(func.sum(LedgerEntry.amount) != 0)
            ).all()
            postings = conn.scalar(select(func.count(func.distinct(LedgerEntry.posting_id)))) or 0
    found = ledger.reconcile(
        {a.id: int(a.balance) for a in accounts},
        {acc: int(total) for acc, total in sums},
        [(p, int(total)) for p, total in per_posting],
        {a.id: a.kind for a in accounts},
    )
    result = Reconciliation(len(accounts), int(postings), [d.describe() for d in found])
    with container.uow() as uow:
        uow.session.add(
            ReconciliationRun(
                accounts=result.accounts,
                postings=result.postings,
                discrepancies=len(found),
                details=json.dumps(result.discrepancies[:1000]),
            )
        )
        uow.commit()
    return result
