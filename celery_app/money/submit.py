"""The payment API: write the request to SQL first, then enqueue; relay what Redis lost.

`submit_*` stores the request and its outbox row in one transaction, then sends the task. If
the broker is down or later loses the message, the request stays ``pending`` in SQL and
:func:`relay` sends it again; posting is idempotent, so a duplicate message is harmless.

A database restart is not the caller's problem: storing is retried once on a fresh connection
when the first one turns out dead, and once the task is sent the caller is told so even if
the outbox stamp after it fails (the relay then sends it again, and it is still posted once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, UnknownAccount
from celery_app.infra.db import retry_on_disconnect
from celery_app.infra.models import Account, Outbox, PaymentRequest
from celery_app.money import ledger

Enqueue = Callable[[str, int], None]
TASK_FOR_KIND = {"top_up": "wallet.top_up", "purchase": "purchase.post"}
CLEARING = "platform:clearing"
SETTLEMENT = "platform:settlement"
log = logging.getLogger("maqsafy.submit")


@dataclass(frozen=True)
class Submitted:
    """The stored request: new or an earlier one with the same key, and whether it was sent.

    `duplicate` means the key was already stored when this call looked. After a COMMIT whose
    answer was lost (the connection died during it), the retry finds that row and cannot tell
    it from a twin's: it reports it as a duplicate, not sent, and the relay sends it.
    """

    request_id: int
    duplicate: bool
    queued: bool


def open_account(container: Container, code: str, kind: str, name: str = "") -> int:
    """Create the account `code` if missing; return its id."""
    if kind not in ledger.ACCOUNT_KINDS:
        raise InvalidRequest(f"account kind must be one of {', '.join(ledger.ACCOUNT_KINDS)}")
    with container.uow() as uow:
        found = uow.session.scalar(select(Account.id).where(Account.code == code))
        if found is not None:
            return int(found)
        account = Account(code=code, kind=kind, name=name or code, balance=0, fence=0)
        uow.session.add(account)
        uow.session.flush()
        uow.commit()
        return account.id


def open_platform_accounts(container: Container) -> None:
    open_account(container, CLEARING, "clearing", "Payment gateway clearing")
    open_account(container, SETTLEMENT, "settlement", "Merchant settlement payouts")


def _account_id(session: Session, code: object, kind: str) -> int:
    if not isinstance(code, str) or not code:
        raise InvalidRequest(f"{kind} account must be a non-empty code, got {code!r}")
    row = session.execute(select(Account.id, Account.kind).where(Account.code == code)).first()
    if row is None or row.kind != kind:
        raise UnknownAccount(f"no {kind} account {code!r}")
    return int(row.id)


def submit_top_up(
    container: Container,
    key: object,
    wallet: object,
    amount: object,
    enqueue: Enqueue,
    parent: object | None = None,
) -> Submitted:
    """Credit a student's wallet from the platform's clearing account.

    With `parent`, a new top-up counts against that parent's throttle (10 an hour by default)
    and is refused with RateLimited past it; a repeated idempotency key counts nothing.
    """
    throttle = None
    if parent is not None:
        from celery_app.stores.ratelimit import check_top_up

        def throttle() -> None:
            check_top_up(parent, container)

    return _submit(
        container,
        "top_up",
        key,
        (CLEARING, "clearing"),
        (wallet, "wallet"),
        amount,
        enqueue,
        before_new=throttle,
    )


def submit_purchase(
    container: Container,
    key: object,
    wallet: object,
    merchant: object,
    amount: object,
    enqueue: Enqueue,
) -> Submitted:
    """Debit a student's wallet and credit a merchant."""
    return _submit(
        container, "purchase", key, (wallet, "wallet"), (merchant, "merchant"), amount, enqueue
    )


def _submit(
    container: Container,
    kind: str,
    key: object,
    debit: tuple[object, str],
    credit: tuple[object, str],
    amount: object,
    enqueue: Enqueue,
    before_new: Callable[[], None] | None = None,
) -> Submitted:
    idem = ledger.parse_key(key)
    value = ledger.parse_amount(amount)
    once = _once(before_new) if before_new is not None else None
    # Storing is safe to run twice: the unique key makes a second run find the first's row.
    # The throttle still counts this request once, however many runs it takes.
    request_id, duplicate = retry_on_disconnect(
        lambda: _store(container, kind, idem, debit, credit, value, once)
    )
    if duplicate:
        return Submitted(request_id, True, False)
    return Submitted(request_id, False, _send(container, request_id, kind, enqueue))


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            action()
            done = True

    return run


def _store(
    container: Container,
    kind: str,
    idem: str,
    debit: tuple[object, str],
    credit: tuple[object, str],
    value: int,
    before_new: Callable[[], None] | None,
) -> tuple[int, bool]:
    """Write the request and its outbox row in one transaction; return (id, duplicate)."""
    with container.uow() as uow:
        session = uow.session
        debit_id = _account_id(session, *debit)
        credit_id = _account_id(session, *credit)
        existing = session.scalar(
            select(PaymentRequest).where(PaymentRequest.idempotency_key == idem)
        )
        if existing is None:
            if before_new is not None:
                before_new()
            request = PaymentRequest(
                idempotency_key=idem,
                kind=kind,
                debit_account_id=debit_id,
                credit_account_id=credit_id,
                amount=value,
                status="pending",
            )
            session.add(request)
            session.flush()
            session.add(Outbox(request_id=request.id, task_name=TASK_FOR_KIND[kind], attempts=0))
            try:
                uow.commit()
            except IntegrityError:
                session.rollback()
                existing = session.scalar(
                    select(PaymentRequest).where(PaymentRequest.idempotency_key == idem)
                )
                if existing is None:
                    raise
            else:
                return request.id, False
        same = (
            existing.kind,
            existing.debit_account_id,
            existing.credit_account_id,
            existing.amount,
        ) == (kind, debit_id, credit_id, value)
        if not same:
            raise InvalidRequest(
                f"idempotency key {idem!r} was already used for a different request "
                f"(id {existing.id}); use a new key"
            )
        return existing.id, True


def _send(container: Container, request_id: int, kind: str, enqueue: Enqueue) -> bool:
    """Send the task, then stamp the outbox; False only when the send failed (the relay's)."""
    try:
        enqueue(TASK_FOR_KIND[kind], request_id)
    except Exception:
        return False
    try:
        with container.uow() as uow:
            row = uow.session.scalar(select(Outbox).where(Outbox.request_id == request_id))
            if row is not None:
                row.enqueued_at = dt.datetime.now(dt.UTC)
                row.attempts += 1
                uow.commit()
    except SQLAlchemyError as exc:
        # Sent is sent: the caller hears so. The row still reads "never sent", so the next relay
        # run sends the request again; posting is idempotent, so it is posted once either way.
        log.warning(
            "payment request %s was sent but its outbox stamp failed (%s); the relay will "
            "send it again",
            request_id,
            type(exc).__name__,
        )
    return True


def relay(
    container: Container, enqueue: Enqueue, older_than: float | None = None, limit: int = 5000
) -> int:
    """Re-send pending requests whose task was never sent or was sent over `older_than` s ago."""
    age = container.settings.relay_after_seconds if older_than is None else older_than
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    with container.uow() as uow:
        rows = uow.session.execute(
            select(Outbox.request_id, Outbox.task_name)
            .join(PaymentRequest, PaymentRequest.id == Outbox.request_id)
            .where(PaymentRequest.status == "pending")
            .where(or_(Outbox.enqueued_at.is_(None), Outbox.enqueued_at <= cutoff))
            .order_by(Outbox.request_id)
            .limit(limit)
        ).all()
    sent = 0
    for request_id, task_name in rows:
        try:
            enqueue(task_name, request_id)
        except Exception:
            break
        sent += 1
    if sent:
        with container.uow() as uow:
            now = dt.datetime.now(dt.UTC)
            ids = [r[0] for r in rows[:sent]]
            for row in uow.session.scalars(select(Outbox).where(Outbox.request_id.in_(ids))):
                row.enqueued_at = now
                row.attempts += 1
            uow.commit()
    return sent
