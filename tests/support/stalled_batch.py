"""A batch poster that writes its batch, then waits for a line on stdin before committing.

Run as `python -m tests.support.stalled_batch REQUEST_ID...` with the money environment in the
environment. It takes the first request's wallet lock and the others' in one call, runs the
batch's writes inside an open transaction, prints `WRITTEN <result>...` and waits; the test
SIGKILLs it there, mid-batch, before its COMMIT.
"""

from __future__ import annotations

import sys

from celery_app import bootstrap
from celery_app.money import posting, posting_sql


def main() -> int:
    ids = [int(a) for a in sys.argv[1:]]
    container = bootstrap.get()
    wallets = [posting.peek(container, r)[2] for r in ids]
    grant = posting.locks(container).acquire(
        f"account:{wallets[0]}", also=tuple(f"account:{w}" for w in wallets[1:])
    )
    assert len(grant.also) == len(ids) - 1, "a wallet's lock was held by another"
    wanted = list(zip(ids, wallets, strict=True))
    with container.engine.connect() as conn:
        conn.begin()
        if container.engine.dialect.name == "postgresql":
            verdicts = posting_sql.post_batch_pg(conn, wanted, grant.token)
        else:
            verdicts = posting_sql.post_each_sqlite(conn, wanted, grant.token)
        print("WRITTEN", *(verdicts[r].result for r in ids), flush=True)
        sys.stdin.readline()
        conn.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
