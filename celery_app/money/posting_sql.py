"""The posting's SQL: one statement on PostgreSQL, one short transaction on SQLite.

Everything a posting decides is decided inside the database, on rows it holds locked: the
request is still ``pending``, the message's wallet is the request's, the grant's fencing token
is above the wallet's, the debit side of a wallet or merchant stays non-negative. On
PostgreSQL the checks, the posting, its two entries, both balances, the fence and the request's
status are one statement (data-modifying CTEs) sent on a connection in autocommit mode: a
single statement is its own transaction, atomic without BEGIN/COMMIT round trips, and psycopg
prepares it on the server once per connection. Each thread (each worker process) keeps one
connection for its postings (:class:`celery_app.infra.db.KeptConnections`), so the pool's
checkout and pre-ping are paid once, not per posting.

The PostgreSQL statement obeys two rules of data-modifying CTEs: every sub-statement sees the
same snapshot, so current values come from row locks (``FOR NO KEY UPDATE`` in READ COMMITTED
returns the newest committed version, and the UPDATE re-reads it), and no row is updated twice,
so the fence and the balance of an account change in the same UPDATE.

The locks are ``FOR NO KEY UPDATE``, the strength an UPDATE of non-key columns takes, not
``FOR UPDATE``: a submit's INSERT checks its foreign keys with ``FOR KEY SHARE`` on the wallet,
then the merchant, which conflicts with ``FOR UPDATE``; a posting holding one account and
waiting for the other deadlocked with it (PostgreSQL aborted the submit).

A batch (:func:`post_batch_pg`, :func:`post_batch_sqlite`) is the same decisions for several
requests in one transaction, each request under its own checks: one that is short of funds or
fenced out is recorded or left pending while the others post. :data:`LOOK` is the read a
message starts with: its own request's status and, only while that is pending, the newest other
pending requests to take along.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, DateTime, bindparam, text

from celery_app.money import ledger


@dataclass(frozen=True)
class Verdict:
    """What the database found and did: the request's status before, and what happened.

    `wallet` is the request's wallet (the lock it must be posted under); `result` is
    ``posted``, ``rejected``, ``duplicate`` (not pending: nothing written), ``wrong_wallet``
    (the message named another wallet: nothing written) or ``stale`` (a newer grant already
    committed on the wallet: nothing written), or ``missing`` (no such request); in a batch
    also ``raced`` and ``skipped`` (see :func:`post_batch_pg`).
    """

    result: str
    status: str
    reason: str | None
    wallet: int


_NOW = bindparam("now", type_=DateTime(timezone=True))

# :non_negative is ledger.NON_NEGATIVE_KINDS; a credit never takes an account below zero, so
# the debit side is the only one that can be short (ledger.shortfall says the same in Python).
# The request's new status, reason and times from the checks `v` holds: one text for the
# single and the batch statement (a CTE named `r`, after the writes).
_STATUS = """\
        UPDATE payment_requests pr
        SET status = CASE WHEN v.short > 0 THEN 'rejected' ELSE 'posted' END,
            reason = CASE WHEN v.short > 0 THEN format(:reason, v.short) END,
            updated_at = :now,
            posted_at = CASE WHEN v.short > 0 THEN NULL ELSE :now END
        FROM v WHERE v.fresh AND pr.id = v.id
"""

POST_PG = text(
    f"""
    WITH req AS (
        SELECT id, kind, debit_account_id AS d, credit_account_id AS c, amount, status, reason,
               CASE kind WHEN 'top_up' THEN credit_account_id ELSE debit_account_id END AS wallet
        FROM payment_requests WHERE id = CAST(:request_id AS INTEGER)
        FOR NO KEY UPDATE
    ), acc AS (
        SELECT a.id, a.kind, a.balance, a.fence
        FROM accounts a JOIN req ON a.id IN (req.d, req.c)
        WHERE req.status = 'pending' AND req.wallet = CAST(:wallet AS INTEGER)
        ORDER BY a.id
        FOR NO KEY UPDATE OF a
    ), v AS (
        SELECT req.id, req.kind, req.d, req.c, req.amount,
               w.fence < CAST(:token AS BIGINT) AS fresh,
               CASE WHEN db.kind = ANY(CAST(:non_negative AS TEXT[])) AND db.balance < req.amount
                    THEN req.amount - db.balance ELSE 0 END AS short
        FROM req JOIN acc w ON w.id = req.wallet JOIN acc db ON db.id = req.d
    ), b AS (
        UPDATE accounts a
        SET fence = CASE WHEN a.id = CAST(:wallet AS INTEGER)
                         THEN CAST(:token AS BIGINT) ELSE a.fence END,
            balance = a.balance + CASE WHEN v.short > 0 THEN 0
                                       WHEN a.id = v.d THEN -v.amount ELSE v.amount END
        FROM v WHERE v.fresh AND a.id IN (v.d, v.c)
    ), p AS (
        INSERT INTO postings (kind, request_id, fence, created_at)
        SELECT v.kind, v.id, CAST(:token AS BIGINT), :now FROM v WHERE v.fresh AND v.short = 0
        RETURNING id
    ), e AS (
        INSERT INTO ledger_entries (posting_id, account_id, amount, created_at)
        SELECT p.id, x.account_id, x.amount, :now
        FROM p, v, LATERAL (VALUES (v.d, -v.amount), (v.c, v.amount)) AS x(account_id, amount)
    ), r AS (
{_STATUS}    )
    SELECT req.status, req.reason, req.wallet, v.fresh, v.short
    FROM req LEFT JOIN v ON true
    """
).bindparams(_NOW)


def post_pg(conn: Connection, request_id: int, wallet: int, token: int) -> Verdict:
    """Run the one-statement posting on an autocommit connection."""
    row = conn.execute(
        POST_PG,
        {
            "request_id": request_id,
            "wallet": wallet,
            "token": token,
            "now": dt.datetime.now(dt.UTC),
            "non_negative": list(ledger.NON_NEGATIVE_KINDS),
            "reason": ledger.insufficient("%s"),
        },
    ).first()
    if row is None:
        return Verdict("missing", "", None, 0)
    status, reason, real_wallet, fresh, short = row
    if status != "pending":
        return Verdict("duplicate", status, reason, real_wallet)
    if real_wallet != wallet:
        return Verdict("wrong_wallet", status, reason, real_wallet)
    if not fresh:
        return Verdict("stale", status, reason, real_wallet)
    if short:
        return Verdict("rejected", "rejected", ledger.insufficient(short), real_wallet)
    return Verdict("posted", "posted", None, real_wallet)


# The request's own row, and while it is still pending the newest `more` other pending ones:
# the oldest are the messages at the head of the queue, which other worker processes are
# taking right now (taking their wallets' locks would make those processes wait), while the
# newest have their messages furthest back. No lock and no write: on PostgreSQL a plain read
# on the kept autocommit connection.
LOOK = text(
    """
    SELECT id, kind, debit_account_id, credit_account_id, status, reason
    FROM payment_requests WHERE id = :id
    UNION ALL
    SELECT * FROM (
        SELECT id, kind, debit_account_id, credit_account_id, status, reason
        FROM payment_requests
        WHERE status = 'pending' AND id <> :id
          AND EXISTS (SELECT 1 FROM payment_requests WHERE id = :id AND status = 'pending')
        ORDER BY id DESC
        LIMIT :more
    ) AS others
    """
)


# The batch: the same decisions for several requests in one statement, each request judged on
# its own (its status, its wallet, its wallet's fence against the grant's token, its funds), so
# one that fails its checks leaves the others to post. Only pending rows are locked (a request
# finalised meanwhile drops out when the row lock re-checks it), one request per wallet is taken
# (the funds check reads the wallet's balance once), and each account changes in one UPDATE
# with the sum of its deltas (a merchant credited by several purchases).
POST_BATCH_PG = text(
    f"""
    WITH want AS (
        SELECT w.id, w.wallet
        FROM unnest(CAST(:ids AS INTEGER[]), CAST(:wallets AS INTEGER[])) AS w(id, wallet)
    ), req AS (
        SELECT pr.id, pr.kind, pr.debit_account_id AS d, pr.credit_account_id AS c, pr.amount,
               CASE pr.kind WHEN 'top_up' THEN pr.credit_account_id
                            ELSE pr.debit_account_id END AS wallet,
               want.wallet AS claimed
        FROM payment_requests pr JOIN want ON pr.id = want.id
        WHERE pr.status = 'pending'
        ORDER BY pr.id
        FOR NO KEY UPDATE OF pr
    ), one AS (
        SELECT DISTINCT ON (wallet) * FROM req WHERE wallet = claimed ORDER BY wallet, id
    ), acc AS (
        SELECT a.id, a.kind, a.balance, a.fence
        FROM accounts a
        WHERE a.id IN (SELECT d FROM one UNION SELECT c FROM one)
        ORDER BY a.id
        FOR NO KEY UPDATE OF a
    ), v AS (
        SELECT one.id, one.kind, one.d, one.c, one.amount, one.wallet,
               w.fence < CAST(:token AS BIGINT) AS fresh,
               CASE WHEN db.kind = ANY(CAST(:non_negative AS TEXT[])) AND db.balance < one.amount
                    THEN one.amount - db.balance ELSE 0 END AS short
        FROM one JOIN acc w ON w.id = one.wallet JOIN acc db ON db.id = one.d
    ), ok AS (
        SELECT * FROM v WHERE fresh AND short = 0
    ), chg AS (
        SELECT acc.id,
               acc.id IN (SELECT wallet FROM v WHERE fresh) AS fence_it,
               COALESCE((SELECT sum(CASE WHEN ok.d = acc.id THEN -ok.amount ELSE ok.amount END)
                         FROM ok WHERE acc.id IN (ok.d, ok.c)), 0) AS delta
        FROM acc
    ), b AS (
        UPDATE accounts a
        SET fence = CASE WHEN chg.fence_it THEN CAST(:token AS BIGINT) ELSE a.fence END,
            balance = a.balance + chg.delta
        FROM chg WHERE a.id = chg.id AND (chg.fence_it OR chg.delta <> 0)
    ), p AS (
        INSERT INTO postings (kind, request_id, fence, created_at)
        SELECT ok.kind, ok.id, CAST(:token AS BIGINT), :now FROM ok ORDER BY ok.id
        RETURNING id, request_id
    ), e AS (
        INSERT INTO ledger_entries (posting_id, account_id, amount, created_at)
        SELECT p.id, x.account_id, x.amount, :now
        FROM p JOIN ok ON ok.id = p.request_id,
             LATERAL (VALUES (ok.d, -ok.amount), (ok.c, ok.amount)) AS x(account_id, amount)
    ), r AS (
{_STATUS}    )
    SELECT want.id, pr.status, pr.reason,
           CASE pr.kind WHEN 'top_up' THEN pr.credit_account_id ELSE pr.debit_account_id END,
           req.id IS NOT NULL, v.id IS NOT NULL, v.fresh, v.short
    FROM want
    LEFT JOIN payment_requests pr ON pr.id = want.id
    LEFT JOIN req ON req.id = want.id
    LEFT JOIN v ON v.id = want.id
    """
).bindparams(_NOW)


def post_batch_pg(
    conn: Connection, wanted: Sequence[tuple[int, int]], token: int
) -> dict[int, Verdict]:
    """Post every (request, wallet) of `wanted` it can in one autocommit statement.

    The verdict ``raced`` means the request was pending when the statement began and finalised
    by another transaction before its row lock was granted: nothing written, status unknown.
    ``skipped`` means a request of the same wallet came first in the batch: nothing written.
    """
    rows = conn.execute(
        POST_BATCH_PG,
        {
            "ids": [r for r, _ in wanted],
            "wallets": [w for _, w in wanted],
            "token": token,
            "now": dt.datetime.now(dt.UTC),
            "non_negative": list(ledger.NON_NEGATIVE_KINDS),
            "reason": ledger.insufficient("%s"),
        },
    ).all()
    out: dict[int, Verdict] = {}
    claimed = dict(wanted)
    for request_id, status, reason, wallet, locked, taken, fresh, short in rows:
        if status is None:
            out[request_id] = Verdict("missing", "", None, 0)
        elif status != "pending":
            out[request_id] = Verdict("duplicate", status, reason, wallet)
        elif wallet != claimed[request_id]:
            out[request_id] = Verdict("wrong_wallet", status, reason, wallet)
        elif not locked:
            out[request_id] = Verdict("raced", status, reason, wallet)
        elif not taken:
            out[request_id] = Verdict("skipped", status, reason, wallet)
        elif not fresh:
            out[request_id] = Verdict("stale", status, reason, wallet)
        elif short:
            out[request_id] = Verdict("rejected", "rejected", ledger.insufficient(short), wallet)
        else:
            out[request_id] = Verdict("posted", "posted", None, wallet)
    return out


_REQUEST = text(
    "SELECT kind, debit_account_id, credit_account_id, amount, status, reason"
    " FROM payment_requests WHERE id = :id"
)
_FENCE = text("UPDATE accounts SET fence = :token WHERE id = :wallet AND fence < :token")
_ACCOUNTS = text("SELECT id, kind, balance FROM accounts WHERE id IN (:a, :b)")
_POSTING = text(
    "INSERT INTO postings (kind, request_id, fence, created_at)"
    " VALUES (:kind, :request_id, :token, :now) RETURNING id"
).bindparams(_NOW)
_ENTRY = text(
    "INSERT INTO ledger_entries (posting_id, account_id, amount, created_at)"
    " VALUES (:posting_id, :account_id, :amount, :now)"
).bindparams(_NOW)
_BALANCE = text("UPDATE accounts SET balance = balance + :delta WHERE id = :id")
_FINISH = text(
    "UPDATE payment_requests SET status = :status, reason = :reason, updated_at = :now,"
    " posted_at = :posted_at WHERE id = :id"
).bindparams(_NOW, bindparam("posted_at", type_=DateTime(timezone=True)))


def post_sqlite(conn: Connection, request_id: int, wallet: int, token: int) -> Verdict:
    """The same decisions in one `BEGIN IMMEDIATE` transaction (SQLite has no UPDATE in WITH).

    SQLite runs in-process, so its statements cost no round trip; the write lock taken at
    BEGIN IMMEDIATE serialises every writer, which is what the row locks do on PostgreSQL.
    """
    with conn.begin():
        return _post_sqlite(conn, request_id, wallet, token)


def post_batch_sqlite(
    conn: Connection, wanted: Sequence[tuple[int, int]], token: int
) -> dict[int, Verdict]:
    """Post every (request, wallet) of `wanted` it can, one after another, in one transaction.

    Each request is judged on its own as in :func:`post_sqlite`, on the balances the earlier
    ones left; a second request of a wallet already fenced with this token is refused as stale.
    """
    with conn.begin():
        return post_each_sqlite(conn, wanted, token)


def post_each_sqlite(
    conn: Connection, wanted: Sequence[tuple[int, int]], token: int
) -> dict[int, Verdict]:
    """The batch's work inside the caller's transaction (which commits or rolls back)."""
    return {r: _post_sqlite(conn, r, wallet, token) for r, wallet in wanted}


def _post_sqlite(conn: Connection, request_id: int, wallet: int, token: int) -> Verdict:
    req = conn.execute(_REQUEST, {"id": request_id}).first()
    if req is None:
        return Verdict("missing", "", None, 0)
    kind, debit, credit, amount, status, reason = req
    real_wallet = wallet_of(kind, debit, credit)
    if status != "pending":
        return Verdict("duplicate", status, reason, real_wallet)
    if real_wallet != wallet:
        return Verdict("wrong_wallet", status, reason, real_wallet)
    if conn.execute(_FENCE, {"token": token, "wallet": wallet}).rowcount != 1:
        return Verdict("stale", status, reason, real_wallet)
    rows = conn.execute(_ACCOUNTS, {"a": debit, "b": credit}).all()
    posting = ledger.transfer(debit, credit, amount)
    short = ledger.shortfall(posting, {r.id: r.balance for r in rows}, {r.id: r.kind for r in rows})
    now = dt.datetime.now(dt.UTC)
    if short:
        why = ledger.insufficient(short)
        conn.execute(
            _FINISH,
            {
                "status": "rejected",
                "reason": why,
                "now": now,
                "posted_at": None,
                "id": request_id,
            },
        )
        return Verdict("rejected", "rejected", why, real_wallet)
    posting_id = conn.execute(
        _POSTING, {"kind": kind, "request_id": request_id, "token": token, "now": now}
    ).scalar_one()
    conn.execute(
        _ENTRY,
        [
            {"posting_id": posting_id, "account_id": e.account, "amount": e.amount, "now": now}
            for e in posting.entries
        ],
    )
    conn.execute(_BALANCE, [{"delta": d, "id": a} for a, d in sorted(posting.deltas().items())])
    conn.execute(
        _FINISH,
        {"status": "posted", "reason": None, "now": now, "posted_at": now, "id": request_id},
    )
    return Verdict("posted", "posted", None, real_wallet)


def wallet_of(kind: str, debit: int, credit: int) -> int:
    """The account whose lock serialises a request: the student's wallet."""
    return credit if kind == "top_up" else debit
