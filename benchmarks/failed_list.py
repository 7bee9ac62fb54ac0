"""Time `failed.list` pages on a 1,000,000-row failed_tasks table (SQLite and PostgreSQL).

    python -m benchmarks.failed_list [--rows N] [--db sqlite|postgres|both] [--repeat N]

Creates a scratch database (a temporary SQLite file; a throw-away PostgreSQL database on the
server MAQSAFY_TEST_PG_URL names), migrates it, fills it in SQL, then times each kind of page the
command serves (first, deep keyset page, filters) through :func:`failed_tasks.list_failed`, the
code the command runs. Prints the median and worst of `--repeat` runs per case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import sessionmaker

from celery_app.infra import migrate
from celery_app.infra.db import UnitOfWork, make_engine
from celery_app.ops import failed_tasks

# One row in 1,000 is a rare task, so its filter has to walk ~50,000 rows for a page.
FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO failed_tasks (task_id, queue, task_name, args, kwargs, exception, traceback, failed_at)
SELECT 't' || i,
       CASE i % 3 WHEN 0 THEN 'payments' WHEN 1 THEN 'maintenance' ELSE 'ops' END,
       CASE WHEN i % 1000 = 0 THEN 'settlement.run_daily' WHEN i % 2 = 0 THEN 'purchase.post'
            ELSE 'runbook.run' END,
       '[' || i || ']', '{}', 'RuntimeError: boom ' || i, 'Traceback ...',
       strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (:rows - i) || ' seconds')
FROM n
"""
FILL_POSTGRES = """
INSERT INTO failed_tasks (task_id, queue, task_name, args, kwargs, exception, traceback, failed_at)
SELECT 't' || i,
       CASE i % 3 WHEN 0 THEN 'payments' WHEN 1 THEN 'maintenance' ELSE 'ops' END,
       CASE WHEN i % 1000 = 0 THEN 'settlement.run_daily' WHEN i % 2 = 0 THEN 'purchase.post'
            ELSE 'runbook.run' END,
       '[' || i || ']', '{}', 'RuntimeError: boom ' || i, 'Traceback ...',
       now() - make_interval(secs => :rows - i)
FROM generate_series(1, :rows) AS i
"""


def fill(engine: Engine, rows: int) -> float:
    started = time.perf_counter()
    sql = FILL_SQLITE if engine.dialect.name == "sqlite" else FILL_POSTGRES
    with engine.begin() as conn:
        conn.execute(text(sql), {"rows": rows})
    with engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def cases(rows: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("first page (50)", {}),
        ("deep page: --before rows/2", {"before": rows // 2}),
        ("last page: --before 100", {"before": 100}),
        ("--queue payments", {"queue": "payments"}),
        ("--queue payments, deep", {"queue": "payments", "before": rows // 2}),
        ("--since 1h", {"since": "1h"}),
        ("--task purchase.post --since 3d", {"task": "purchase.post", "since": "3d"}),
        ("--task settlement.run_daily (1 in 1000)", {"task": "settlement.run_daily"}),
    ]


def time_case(uow: Callable[[], UnitOfWork], kwargs: dict[str, Any], repeat: int) -> list[float]:
    failed_tasks.list_failed(uow, **kwargs)  # warm the cache and the connection
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = failed_tasks.list_failed(uow, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        assert page.rows, kwargs
    return times


def run(name: str, url: str, rows: int, repeat: int) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        seconds = fill(engine, rows)
        print(f"{name}: {rows:,} rows filled in {seconds:.1f} s", flush=True)
        sessions = sessionmaker(engine, expire_on_commit=False)

        def uow() -> UnitOfWork:
            return UnitOfWork(sessions)

        for label, kwargs in cases(rows):
            times = time_case(uow, kwargs, repeat)
            print(
                f"  {label:<42} median {statistics.median(times):7.2f} ms"
                f"   worst {max(times):7.2f} ms",
                flush=True,
            )
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as directory:
            run("SQLite", f"sqlite:///{Path(directory) / 'bench.db'}", args.rows, args.repeat)
    if args.db in ("postgres", "both"):
        from tests.support.services import create_pg_database

        url, drop = create_pg_database()
        try:
            run("PostgreSQL", url, args.rows, args.repeat)
        finally:
            drop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
