"""The money tasks: thin wrappers that decode ids, call the service layer, retry what is transient.

Task names are the contract with producers (the payment API, the outbox relay, beat):
`wallet.top_up`, `purchase.post`, `settlement.run_daily`, `ledger.reconcile`, `outbox.relay`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from celery import Task
from sqlalchemy.exc import OperationalError

from celery_app import bootstrap
from celery_app.celery import app, enqueue
from celery_app.errors import InvalidRequest, LockError, ServiceUnavailable
from celery_app.money import posting, settlement, submit

TRANSIENT = (LockError, ServiceUnavailable, OperationalError)


def _request_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"request id must be a positive integer, got {value!r}")
    return value


def _wallet(value: Any) -> int | None:
    if value is None:
        return None  # a message sent before the wallet travelled with it
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"wallet must be a positive account id, got {value!r}")
    return value


def _post(task: Task, request_id: Any, wallet: Any) -> dict[str, Any]:
    container = bootstrap.get()
    try:
        outcome = posting.post_request(
            container, _request_id(request_id), posting.locks(container), _wallet(wallet)
        )
    except TRANSIENT as exc:
        raise task.retry(exc=exc, countdown=min(2**task.request.retries, 30) * 0.1) from exc
    return {
        "request_id": outcome.request_id,
        "result": outcome.result,
        "status": outcome.status,
        "batched": outcome.batched,
    }


@app.task(name="wallet.top_up", bind=True, max_retries=8)
def top_up(self: Task, request_id: int, wallet: int | None = None) -> dict[str, Any]:
    """Post a wallet top-up request (`wallet`: its wallet's account id, checked in SQL)."""
    return _post(self, request_id, wallet)


@app.task(name="purchase.post", bind=True, max_retries=8)
def purchase(self: Task, request_id: int, wallet: int | None = None) -> dict[str, Any]:
    """Post a canteen purchase request (`wallet`: its wallet's account id, checked in SQL)."""
    return _post(self, request_id, wallet)


@app.task(name="settlement.run_daily")
def run_daily(business_date: str | None = None) -> dict[str, Any]:
    """Settle merchants for `business_date` (ISO date; default today, UTC)."""
    day = dt.date.fromisoformat(business_date) if business_date else dt.datetime.now(dt.UTC).date()
    result = settlement.run_daily(bootstrap.get(), day)
    return {
        "date": day.isoformat(),
        "created": result.created,
        "merchants": result.merchants,
        "total": result.total,
    }


@app.task(name="ledger.reconcile")
def reconcile() -> dict[str, Any]:
    """Reconcile the ledger and record the run."""
    result = settlement.reconcile(bootstrap.get())
    return {"balanced": result.balanced, "discrepancies": result.discrepancies[:20]}


@app.task(name="outbox.relay")
def relay() -> int:
    """Re-send pending payment requests whose messages may have been lost."""
    return submit.relay(bootstrap.get(), enqueue)
