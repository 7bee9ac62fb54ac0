"""Measure posting purchases end to end against no-op tasks, same worker, same settings.

    python -m benchmarks.payments [--n 3000] [--concurrency 2] [--database postgres|sqlite]
                                  [--database-url URL]

On a private redis-server and a fresh database (PostgreSQL: a new database on the local server,
`MAQSAFY_TEST_PG_URL`; SQLite: a file in a temporary folder), one prefork worker (`-c 2`,
acks_late, prefetch 1) consumes the `payments` queue. Submit: one producer stores N purchases
through the payment API (request + outbox; the send itself is recorded, not made, so this is
the SQL side only). Phase 1 sends N `health.noop` tasks and times until the queue and its
unacked set are empty. Phase 2 sends the N `purchase.post` messages the API would have sent and
times until none is pending and the queue and its unacked set are empty (a batch posts requests
whose messages are still queued; those messages still have to be consumed). Phase 3 submits N/3
more purchases through the API with real sends while the worker runs, offered at half the rate
phase 2 measured, and reports the latency from submit to posted (p50, p99). Every invariant is
then checked: each request posted once, ledger reconciled. The last line is
``ratio payments/noop: X.XX`` (target 0.70).
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
from celery_app.celery import make_app, make_enqueue
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


def percentile(values: list[float], pct: float) -> float:
    """The `pct` percentile of sorted `values` (nearest rank); 0 when there are none."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, round(pct / 100 * len(values)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="tasks per side (default 3000)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--database",
        choices=["postgres", "sqlite"],
        default="postgres",
        help="a fresh PostgreSQL database (default) or a fresh SQLite file",
    )
    parser.add_argument("--database-url", help="use this database instead of a fresh one")
    parser.add_argument("--wallets", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = start_redis(work / "redis")
        drop: Callable[[], None] = lambda: None  # noqa: E731
        url = args.database_url
        if url is None and args.database == "sqlite":
            url = f"sqlite:///{work / 'bench.db'}"
        elif url is None:
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
                    container, f"seed-{i}", f"wallet:{i}", 10_000_000, lambda *_, **__: None
                )
                posting.post_request(container, top.request_id, locks)
            for i in range(5):
                submit.open_account(container, f"merchant:{i}", "merchant")
            rng = random.Random(1)
            messages: list[tuple[str, int, int | None]] = []

            def record(task: str, request_id: int, wallet: int | None = None) -> None:
                messages.append((task, request_id, wallet))

            def purchase(key: str, enqueue: Callable[..., None]) -> None:
                submit.submit_purchase(
                    container,
                    key,
                    f"wallet:{rng.randrange(args.wallets)}",
                    f"merchant:{rng.randrange(5)}",
                    rng.randrange(100, 2500),
                    enqueue,
                )

            started = time.perf_counter()
            for n in range(args.n):
                purchase(f"b-{n}", record)
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
            for task, request_id, wallet in messages:
                kwargs = {} if wallet is None else {"wallet": wallet}
                producer.send_task(task, args=[request_id], kwargs=kwargs)
            wait(lambda: pending() == 0)
            posted_s = time.perf_counter() - started
            # A batch posts requests whose messages are still queued: those end as duplicates.
            # The side is done, like the no-op side, when its queue is empty too.
            wait(drained)
            pay_s = time.perf_counter() - started

            # Phase 3: latency from submit to posted, at half the measured posting rate.
            offered = 0.5 * args.n / pay_s
            enqueue = make_enqueue(producer, settings)
            started = time.perf_counter()
            for n in range(args.n // 3):
                time.sleep(max(0.0, started + n / offered - time.perf_counter()))
                purchase(f"l-{n}", enqueue)
            wait(lambda: pending() == 0)
            with container.engine.connect() as conn:
                rows = conn.execute(
                    select(PaymentRequest.created_at, PaymentRequest.posted_at).where(
                        PaymentRequest.idempotency_key.like("l-%")
                    )
                ).all()
            latencies = sorted(
                (posted - created).total_seconds() * 1000
                for created, posted in rows
                if posted is not None
            )

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
    print(
        f"payments:    {args.n} in {pay_s:.2f}s = {args.n / pay_s:,.0f} postings/s "
        f"(all posted after {posted_s:.2f}s, the queue empty after {pay_s:.2f}s)"
    )
    print(
        f"latency submit->posted at {offered:,.0f}/s offered ({len(latencies)} purchases): "
        f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms"
    )
    print(f"invariants:  posted twice = {twice}, ledger balanced = {recon.balanced}")
    if twice or not recon.balanced:
        sys.exit("benchmark: an invariant failed")
    print(f"ratio payments/noop: {noop_s / pay_s:.2f}")


if __name__ == "__main__":
    main()
