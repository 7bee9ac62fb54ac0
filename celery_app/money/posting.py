"""Post a payment request to the ledger exactly once, under its wallet's fenced lock.

A message starts with one read (:data:`posting_sql.LOOK`): its request's status and wallet and,
while the request is pending, the newest other pending requests. A request no longer pending is
a duplicate and ends there: that is how duplicate deliveries, and the messages of requests an
earlier batch posted, are absorbed without a lock or a write (and without the read for the
requests this process's own batches finalised in the last minute: :class:`Finalised`).
Otherwise one Redis call takes the wallet's lock and the locks of the first
``MAQSAFY_POST_BATCH - 1`` other pending requests' wallets that are free (one request per
wallet), all under one fencing token; one transaction (one statement on PostgreSQL, see
:mod:`celery_app.money.posting_sql`) posts each of them under its own checks, and the release
goes out without waiting for its answer. The database checks,
on rows it holds locked, that each request is still pending, that the wallet is the request's,
that the token is not stale and that the wallet can pay; then it writes a balanced posting
(``posted``) or records the business outcome (``rejected``: insufficient funds). A request that
fails its checks does not stop the others; one fenced out stays pending for its own message.

With ``MAQSAFY_POST_BATCH=1`` a message that carries its wallet skips the read: lock, one
statement, release.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Row, case, func, insert, select, update

from celery_app.bootstrap import Container
from celery_app.errors import InvalidRequest, StaleFence
from celery_app.infra.db import kept_connections
from celery_app.infra.models import Account, LedgerEntry, Posting
from celery_app.money import ledger, posting_sql
from celery_app.money.locks import FencedLocks, Grant

# How many pending requests a message reads per place in its batch: worker processes that look
# at the same moment read nearly the same newest requests, and the one whose Redis call comes
# second takes the next free wallets instead of none.
CANDIDATES = 3


@dataclass(frozen=True)
class Outcome:
    """What posting a request did: posted, rejected, or duplicate (already final)."""

    request_id: int
    result: str
    status: str
    reason: str | None = None
    batched: int = 0  # other requests the same transaction finalised (posted or rejected)


@dataclass(frozen=True)
class Seen:
    """A payment request as a plain read saw it (no lock): its status and wallet."""

    request_id: int
    status: str
    reason: str | None
    wallet: int


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


class Finalised:
    """The requests this process's own transactions finalised lately: their later messages
    end as duplicates without a read.

    ``posted`` and ``rejected`` are final, and an entry is written only after the commit that
    wrote it returned, so it can only disagree with SQL if the database is put back to an
    earlier state (a restore); entries are forgotten after `seconds`, after which the relay's
    message for such a request is judged by SQL again.
    """

    def __init__(self, seconds: float = 60.0, most: int = 20_000) -> None:
        self.seconds, self.most = seconds, most
        self._seen: OrderedDict[int, tuple[float, str, str | None]] = OrderedDict()
        self._guard = threading.Lock()

    def add(self, request_id: int, status: str, reason: str | None) -> None:
        with self._guard:
            self._seen[request_id] = (time.monotonic(), status, reason)
            self._seen.move_to_end(request_id)
            while len(self._seen) > self.most:
                self._seen.popitem(last=False)

    def get(self, request_id: int) -> tuple[str, str | None] | None:
        with self._guard:
            found = self._seen.get(request_id)
            if found is None or time.monotonic() - found[0] > self.seconds:
                return None
            return found[1], found[2]


@functools.lru_cache(maxsize=8)
def finalised(container: Container) -> Finalised:
    """The container's memory of the requests this process finalised (each worker process
    builds its own container after the fork)."""
    return Finalised()


def wallet_of(kind: str, debit: int, credit: int) -> int:
    """The account whose lock serialises a request: the student's wallet."""
    return posting_sql.wallet_of(kind, debit, credit)


def look(container: Container, request_id: int, more: int) -> tuple[Seen, list[Seen]]:
    """Read request `request_id` and, while it is pending, the newest `more` other pending ones.

    One read, no lock; the posting checks every status again under its row locks.
    """
    rows = kept_connections(container.engine).run(_look, request_id, more)
    seen = [
        Seen(r.id, r.status, r.reason, wallet_of(r.kind, r.debit_account_id, r.credit_account_id))
        for r in rows
    ]
    own = next((s for s in seen if s.request_id == request_id), None)
    if own is None:
        raise InvalidRequest(f"no payment request with id {request_id}")
    return own, [s for s in seen if s.request_id != request_id]


def _look(conn: Connection, request_id: int, more: int) -> Sequence[Row[Any]]:
    params = {"id": request_id, "more": more}
    if conn.dialect.name == "postgresql":  # autocommit: a plain read, no transaction
        return conn.execute(posting_sql.LOOK, params).all()
    with conn.begin():
        return conn.execute(posting_sql.LOOK, params).all()


def peek(container: Container, request_id: int) -> tuple[str, str | None, int]:
    """Return the request's status, reason and wallet: one read, no lock."""
    own, _ = look(container, request_id, 0)
    return own.status, own.reason, own.wallet


def post_request(
    container: Container, request_id: int, lock_service: FencedLocks, wallet: int | None = None
) -> Outcome:
    """Post request `request_id` once, with other pending requests; later calls are duplicates.

    `wallet` is the request's wallet as its message carries it. In a batch the read gives the
    wallet; alone (``MAQSAFY_POST_BATCH=1``) the lock is taken on the message's wallet and the
    database verifies it: a wrong one costs a second try on the right one, none costs a read.
    """
    more = container.settings.post_batch - 1
    others: list[Seen] = []
    known = finalised(container).get(request_id) if more else None
    if known is not None:
        return Outcome(request_id, "duplicate", *known)
    if wallet is None or more:
        own, others = look(container, request_id, CANDIDATES * more)
        if own.status != "pending":
            return Outcome(request_id, "duplicate", own.status, own.reason)
        wallet = own.wallet
    if others:
        return _post_batch(container, request_id, wallet, others, more, lock_service)
    for _ in range(2):
        with lock_service.hold(f"account:{wallet}") as grant:
            verdict = _commit(container, request_id, grant, wallet)
        if verdict.result != "wrong_wallet":
            break
        wallet = verdict.wallet
    return _outcome(request_id, verdict, grant)


def _post_batch(
    container: Container,
    request_id: int,
    wallet: int,
    others: list[Seen],
    more: int,
    lock_service: FencedLocks,
) -> Outcome:
    """Post the request and up to `more` of `others` whose wallets' locks were free."""
    along: dict[str, tuple[int, int]] = {}  # lock resource -> (request, wallet): one per wallet
    for other in others:
        resource = f"account:{other.wallet}"
        if other.wallet != wallet and resource not in along:
            along[resource] = (other.request_id, other.wallet)
    with lock_service.hold(f"account:{wallet}", also=tuple(along), most=more) as grant:
        wanted = [(request_id, wallet), *(along[r] for r in grant.also)]
        verdicts = commit_batch(container, wanted, grant)
    memory = finalised(container)
    for r, v in verdicts.items():
        if v.result in ("posted", "rejected"):
            memory.add(r, v.status, v.reason)
    batched = sum(
        1 for r, v in verdicts.items() if r != request_id and v.result in ("posted", "rejected")
    )
    verdict = verdicts[request_id]
    if verdict.result == "raced":  # finalised by another transaction as this one started
        status, reason, _ = peek(container, request_id)
        return Outcome(request_id, "duplicate", status, reason, batched)
    return replace(_outcome(request_id, verdict, grant), batched=batched)


def commit_request(
    container: Container, request_id: int, grant: Grant, wallet: int | None = None
) -> Outcome:
    """Write the request's posting in one transaction if `grant`'s token is still current."""
    if wallet is None:
        wallet = peek(container, request_id)[2]
    return _outcome(request_id, _commit(container, request_id, grant, wallet), grant)


def commit_batch(
    container: Container, wanted: Sequence[tuple[int, int]], grant: Grant
) -> dict[int, posting_sql.Verdict]:
    """Post each (request, wallet) of `wanted` it can in one transaction under `grant`'s token.

    The caller holds the lock of every wallet in `wanted` (one request per wallet).
    """
    post = (
        posting_sql.post_batch_pg
        if container.engine.dialect.name == "postgresql"
        else posting_sql.post_batch_sqlite
    )
    return kept_connections(container.engine).run(post, wanted, grant.token)


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
