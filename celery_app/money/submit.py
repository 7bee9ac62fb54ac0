"""The payment API: write the request to SQL first, then enqueue; relay what Redis lost.

`submit_*` stores the request and its outbox row in one transaction (one statement on
PostgreSQL), then sends the task with the request's wallet in it. The outbox row is written
already stamped as sent at that moment, so a successful send costs no second transaction; a
send that fails clears the stamp (the rare path), and a stamp that could not be cleared, like a
message Redis later lost, only waits for the relay's age cutoff (`MAQSAFY_RELAY_AFTER`). So a
request that stays ``pending`` is always sent again by :func:`relay`; posting is idempotent, so
a duplicate message is harmless.

A database restart is not the caller's problem: storing is retried once on a fresh connection
when the first one turns out dead.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, bindparam, or_, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, UnknownAccount
from celery_app.infra.db import kept_connections, retry_on_disconnect
from celery_app.infra.models import Account, Outbox, PaymentRequest
from celery_app.money import ledger
from celery_app.money.posting_sql import wallet_of

Enqueue = Callable[..., None]  # (task_name, request_id, wallet=account id)
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


def _code(code: object, kind: str) -> str:
    if not isinstance(code, str) or not code:
        raise InvalidRequest(f"{kind} account must be a non-empty code, got {code!r}")
    return code


def _account_id(session: Session, code: object, kind: str) -> int:
    code = _code(code, kind)
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
    _code(*debit), _code(*credit)
    stored = None
    if before_new is None:
        stored = _insert(container, kind, idem, debit, credit, value)
    if stored is None:  # a known key, an unknown account, or a throttle to count: look first
        once = _once(before_new) if before_new is not None else None
        # The throttle counts this request once, however many runs it takes.
        request_id, duplicate, wallet = retry_on_disconnect(
            lambda: _store(container, kind, idem, debit, credit, value, once)
        )
        if duplicate:
            return Submitted(request_id, True, False)
    else:
        request_id, wallet = stored
    return Submitted(request_id, False, _send(container, request_id, kind, wallet, enqueue))


_NOW = bindparam("now", type_=DateTime(timezone=True))
_REQUEST = """
    INSERT INTO payment_requests (idempotency_key, kind, debit_account_id, credit_account_id,
                                  amount, status, created_at, updated_at)
    SELECT :key, :kind, d.id, c.id, :amount, 'pending', :now, :now
    FROM accounts d, accounts c
    WHERE d.code = :debit AND d.kind = :debit_kind AND c.code = :credit AND c.kind = :credit_kind
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, debit_account_id, credit_account_id
"""
_OUTBOX = """
    INSERT INTO outbox (request_id, task_name, enqueued_at, attempts, created_at)
    {source} :task, :now, 1, :now
"""
# PostgreSQL: the request and its outbox row in one statement (one round trip).
_INSERT_PG = text(
    f"WITH ins AS ({_REQUEST}), o AS ({_OUTBOX.format(source='SELECT id,')} FROM ins)"
    " SELECT id, debit_account_id, credit_account_id FROM ins"
).bindparams(_NOW)
_INSERT_REQUEST = text(_REQUEST).bindparams(_NOW)
_INSERT_OUTBOX = text(_OUTBOX.format(source="VALUES (:request_id,") + ")").bindparams(_NOW)


def _insert(
    container: Container,
    kind: str,
    idem: str,
    debit: tuple[object, str],
    credit: tuple[object, str],
    value: int,
) -> tuple[int, int] | None:
    """Insert a new request and its outbox row (stamped as sent now) in one transaction.

    Return (id, wallet), or None when nothing was inserted: the key is known or an account is
    not (the caller then looks, and says which). On PostgreSQL it is one statement on the
    thread's kept autocommit connection. Safe to run twice (a dead connection's retry): the
    unique key makes a second run insert nothing, and the look finds the first's row.
    """
    params = {
        "key": idem,
        "kind": kind,
        "amount": value,
        "debit": debit[0],
        "debit_kind": debit[1],
        "credit": credit[0],
        "credit_kind": credit[1],
        "task": TASK_FOR_KIND[kind],
        "now": dt.datetime.now(dt.UTC),
    }
    pg = container.engine.dialect.name == "postgresql"
    row = kept_connections(container.engine).run(_insert_pg if pg else _insert_sqlite, params)
    if row is None:
        return None
    return int(row[0]), wallet_of(kind, int(row[1]), int(row[2]))


def _insert_pg(conn: Connection, params: dict[str, object]) -> Sequence[Any] | None:
    return conn.execute(_INSERT_PG, params).first()


def _insert_sqlite(conn: Connection, params: dict[str, object]) -> Sequence[Any] | None:
    with conn.begin():
        row = conn.execute(_INSERT_REQUEST, params).first()
        if row is not None:
            conn.execute(_INSERT_OUTBOX, {**params, "request_id": row[0]})
    return row


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
) -> tuple[int, bool, int]:
    """Look the key up, else write the request and its outbox row in one transaction.

    Return (id, duplicate, wallet); raise for an unknown account or a key reused for another
    request.
    """
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
            session.add(
                Outbox(
                    request_id=request.id,
                    task_name=TASK_FOR_KIND[kind],
                    enqueued_at=dt.datetime.now(dt.UTC),
                    attempts=1,
                )
            )
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
                return request.id, False, wallet_of(kind, debit_id, credit_id)
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
        return existing.id, True, wallet_of(kind, debit_id, credit_id)


def _send(container: Container, request_id: int, kind: str, wallet: int, enqueue: Enqueue) -> bool:
    """Send the task; False when the send failed, and then the outbox stamp is taken back."""
    try:
        enqueue(TASK_FOR_KIND[kind], request_id, wallet=wallet)
    except Exception:
        try:
            with container.engine.begin() as conn:
                conn.execute(
                    update(Outbox)
                    .where(Outbox.request_id == request_id)
                    .values(enqueued_at=None, attempts=Outbox.attempts - 1)
                )
        except SQLAlchemyError as exc:
            # The row still reads "sent just now": the relay sends it once that is older than
            # MAQSAFY_RELAY_AFTER; posting is idempotent, so it is posted once either way.
            log.warning(
                "payment request %s was not sent and its outbox stamp could not be cleared "
                "(%s); the relay will send it after MAQSAFY_RELAY_AFTER",
                request_id,
                type(exc).__name__,
            )
        return False
    return True


def relay(
    container: Container, enqueue: Enqueue, older_than: float | None = None, limit: int = 5000
) -> int:
    """Re-send pending requests whose task was never sent or was sent over `older_than` s ago."""
    age = container.settings.relay_after_seconds if older_than is None else older_than
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
    with container.uow() as uow:
        rows = uow.session.execute(
            select(
                Outbox.request_id,
                Outbox.task_name,
                PaymentRequest.kind,
                PaymentRequest.debit_account_id,
                PaymentRequest.credit_account_id,
            )
            .join(PaymentRequest, PaymentRequest.id == Outbox.request_id)
            .where(PaymentRequest.status == "pending")
            .where(or_(Outbox.enqueued_at.is_(None), Outbox.enqueued_at <= cutoff))
            .order_by(Outbox.request_id)
            .limit(limit)
        ).all()
    sent = 0
    for request_id, task_name, kind, debit, credit in rows:
        try:
            enqueue(task_name, request_id, wallet=wallet_of(kind, debit, credit))
        except Exception:
            break
        sent += 1
    if sent:
        with container.engine.begin() as conn:
            conn.execute(
                update(Outbox)
                .where(Outbox.request_id.in_([r[0] for r in rows[:sent]]))
                .values(enqueued_at=dt.datetime.now(dt.UTC), attempts=Outbox.attempts + 1)
            )
    return sent
