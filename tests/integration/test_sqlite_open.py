"""Processes opening one fresh SQLite file at the same moment: none fails "database is locked".

Several commands started together on a new laptop (or a worker and a command) each create or open
the embedded default's database. Opening a WAL database can fail at once, the busy timeout not
consulted, while another process creates it or cleans up as its last connection closes; the
engine retries that open. Without the retry about one process in twenty failed here.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from sqlalchemy import text

from celery_app.infra.db import make_engine

PROCESSES = 6
ROUNDS = 40


def open_and_write(url: str, barrier: mp.synchronize.Barrier, errors: mp.Queue) -> None:
    barrier.wait()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT count(*) FROM sqlite_master"))
    except Exception as exc:  # reported whatever it is
        errors.put(repr(exc).splitlines()[0])
    finally:
        engine.dispose()


def test_a_fresh_database_opened_by_six_processes_at_once(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")
    errors: mp.Queue = ctx.Queue()
    for n in range(ROUNDS):
        url = f"sqlite:///{tmp_path / f'round{n}.db'}"
        barrier = ctx.Barrier(PROCESSES)
        procs = [
            ctx.Process(target=open_and_write, args=(url, barrier, errors))
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == [], f"{len(failures)} of {ROUNDS * PROCESSES} opens failed: {failures[:3]}"
