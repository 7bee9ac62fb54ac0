"""Measure posting purchases end to end against no-op tasks, same worker, same settings.

    python -m benchmarks.payments [--n 3000] [--concurrency 2] [--database-url URL]

On a private redis-server and a fresh PostgreSQL database (default: the local server's
`postgres` database as admin, `MAQSAFY_TEST_PG_URL`), one prefork worker (`-c 2`, acks_late,
prefetch 1) consumes the `payments` queue. Phase 1 sends N `health.noop` tasks and times until
the queue and its unacked set are empty. Phase 2 sends N `purchase.post` messages for N
requests already stored in SQL (as the payment API leaves them) and times until none is
pending. Every invariant is then checked: each request posted once, ledger reconciled. The last
line is ``ratio payments/noop: X.XX`` (target 0.70).
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from celery_app import bootstrap
from celery_app.celery import make_app
from celery_app.dev.worker_process import start_worker
from celery_app.infra import migrate
from celery_app.infra.models import PaymentRequest, Posting
from celery_app.money import posting, settlement, submit
from celery_app.settings import load_settings
from tests.support.services import create_pg_database, start_redis


def wait(check: Callable[[], bool], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit("benchmark: timed out")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="tasks per side (default 3000)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--database-url", help="use this database instead of a fresh one")
    parser.add_argument("--wallets", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = start_redis(work / "redis")
        drop: Callable[[], None] = lambda: None  # noqa: E731
        url = args.database_url
        if url is None:
            url, drop = create_pg_database()
        env = {
            "DATABASE_URL": url,
            "REDIS_URL": server.url,
            "MAQSAFY_VAR_DIR": str(work / "var"),
            "MAQSAFY_ENV_FILE": str(work / "none"),
        }
        settings = load_settings(env)
        container = bootstrap.build(settings)
        worker = None
        try:
            migrate.upgrade(container.engine)
            producer = make_app(settings)
            submit.open_platform_accounts(container)
            locks = posting.locks(container)
            for i in range(args.wallets):
                submit.open_account(container, f"wallet:{i}", "wallet")
                top = submit.submit_top_up(
                    container, f"seed-{i}", f"wallet:{i}", 10_000_000, lambda *_: None
                )
                posting.post_request(container, top.request_id, locks)
            for i in range(5):
                submit.open_account(container, f"merchant:{i}", "merchant")
            rng = random.Random(1)
            started = time.perf_counter()
            ids = [
                submit.submit_purchase(
                    container,
                    f"b-{n}",
                    f"wallet:{rng.randrange(args.wallets)}",
                    f"merchant:{rng.randrange(5)}",
                    rng.randrange(100, 2500),
                    lambda *_: None,
                ).request_id
                for n in range(args.n)
            ]
            submit_rate = args.n / (time.perf_counter() - started)

            worker = start_worker(
                "bench@payments",
                work / "worker.log",
                queues="payments",
                concurrency=args.concurrency,
                env=env,
            )
            worker.wait_ready()
            broker = server.client()

            def drained() -> bool:
                return broker.llen("payments") == 0 and broker.hlen("unacked") == 0

            started = time.perf_counter()
            for _ in range(args.n):
                producer.send_task("health.noop", queue="payments")
            wait(drained)
            print("noop tasks done", flush=True)
            noop_s = time.perf_counter() - started

            def pending() -> int:
                with container.uow() as uow:
                    return int(
                        uow.session.scalar(
                            select(func.count())
                            .select_from(PaymentRequest)
                            .where(PaymentRequest.status == "pending")
                        )
                        or 0
                    )

            started = time.perf_counter()
            for request_id in ids:
                producer.send_task("purchase.post", args=[request_id])
            wait(lambda: pending() == 0)
            pay_s = time.perf_counter() - started

            with container.uow() as uow:
                twice = uow.session.scalar(
                    select(func.count()).select_from(
                        select(Posting.request_id)
                        .group_by(Posting.request_id)
                        .having(func.count() > 1)
                        .subquery()
                    )
                )
            recon = settlement.reconcile(container)
        finally:
            if worker is not None:
                worker.stop()
            container.engine.dispose()
            drop()
            server.stop()

    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, worker -c {args.concurrency} prefork"
    )
    print(f"database: {'PostgreSQL' if 'postgresql' in url else url.split(':')[0]}")
    print(f"submit (SQL + outbox, one producer): {submit_rate:,.0f} requests/s")
    print(f"noop tasks:  {args.n} in {noop_s:.2f}s = {args.n / noop_s:,.0f} tasks/s")
    print(f"payments:    {args.n} in {pay_s:.2f}s = {args.n / pay_s:,.0f} postings/s")
    print(f"invariants:  posted twice = {twice}, ledger balanced = {recon.balanced}")
    if twice or not recon.balanced:
        sys.exit("benchmark: an invariant failed")
    print(f"ratio payments/noop: {noop_s / pay_s:.2f}")


if __name__ == "__main__":
    main()
