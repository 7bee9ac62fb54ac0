"""The demo day: real money flowing through a real worker on the configured (or embedded) stack.

Migrate, start a worker, open 200 wallets and 5 merchants, submit a day of top-ups and
purchases (with duplicate submissions and some insufficient funds), wait for every request to
be posted or rejected, settle the merchants and reconcile the ledger through the worker, then
stop what it started.
"""

from __future__ import annotations

import datetime as dt
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import func, select

from celery_app.bootstrap import Container
from celery_app.dev.worker_process import start_worker
from celery_app.errors import MaqsafyError, ServiceUnavailable
from celery_app.infra import migrate
from celery_app.infra.embedded import embedded_running, ensure_embedded_redis, stop_embedded_redis
from celery_app.infra.models import PaymentRequest, ReconciliationRun, SettlementBatch
from celery_app.money import submit

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DaySummary:
    run: str
    wallets: int
    merchants: int
    submitted: int
    duplicates_absorbed: int
    posted: int
    rejected: int
    pending: int
    settlement_date: str
    settlement_created: bool
    settled_merchants: int
    settled_total_halalas: int
    ledger_balanced: bool
    discrepancies: int
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _wait(check: Callable[[], bool], timeout: float, what: str, every: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"demo: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def run_day(
    container: Container,
    enqueue: submit.Enqueue,
    send: Callable[..., object],
    purchases: int = 2000,
    wallets: int = 200,
    merchants: int = 5,
    seed: int | None = None,
    progress: Progress | None = None,
    timeout: float = 600.0,
) -> DaySummary:
    """Submit a day of payments and see it through; the worker must already be running."""
    started = time.monotonic()
    report = progress or (lambda *_: None)
    rng = random.Random(seed)
    run = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S") + f"-{rng.randrange(10**6):06d}"
    submit.open_platform_accounts(container)
    for i in range(wallets):
        submit.open_account(container, f"wallet:S{i:04d}", "wallet", f"Student {i:04d}")
    for i in range(merchants):
        submit.open_account(container, f"merchant:M{i:02d}", "merchant", f"Canteen stall {i}")

    ids: set[int] = set()
    absorbed = 0
    total = wallets + purchases
    # Parents top up 30-150 SAR; students buy 1-12.50 SAR items, so some wallets run dry.
    for i in range(wallets):
        amount = rng.randrange(30, 151) * 100
        sent = submit.submit_top_up(
            container, f"{run}:top:{i}", f"wallet:S{i:04d}", amount, enqueue
        )
        ids.add(sent.request_id)
        report("submit", i + 1, total)
    for n in range(purchases):
        wallet = f"wallet:S{rng.randrange(wallets):04d}"
        merchant = f"merchant:M{rng.randrange(merchants):02d}"
        amount = rng.randrange(1, 13) * 100 + rng.choice((0, 50))
        key = f"{run}:buy:{n}"
        sent = submit.submit_purchase(container, key, wallet, merchant, amount, enqueue)
        ids.add(sent.request_id)
        if rng.random() < 0.05:  # the canteen till retried: same key, same purchase
            again = submit.submit_purchase(container, key, wallet, merchant, amount, enqueue)
            absorbed += int(again.duplicate)
        report("submit", wallets + n + 1, total)

    def counts() -> dict[str, int]:
        with container.uow() as uow:
            rows = uow.session.execute(
                select(PaymentRequest.status, func.count())
                .where(PaymentRequest.id.in_(ids))
                .group_by(PaymentRequest.status)
            ).all()
        return {status: int(n) for status, n in rows}

    last_relay = time.monotonic()

    def settled() -> bool:
        nonlocal last_relay
        now = counts()
        done = now.get("posted", 0) + now.get("rejected", 0)
        report("post", done, len(ids))
        if time.monotonic() - last_relay > 5:
            submit.relay(container, enqueue)
            last_relay = time.monotonic()
        return now.get("pending", 0) == 0

    _wait(settled, timeout, "every request to be posted or rejected")
    final = counts()

    day = dt.datetime.now(dt.UTC).date()
    created = batch_for(container, day) is None  # one settlement per business day
    send("settlement.run_daily", args=[day.isoformat()])

    def batch() -> SettlementBatch | None:
        return batch_for(container, day)

    before_run = _last_reconciliation(container)
    _wait(lambda: batch() is not None, 60, "the settlement batch")
    settled_batch = batch()
    assert settled_batch is not None
    send("ledger.reconcile")
    _wait(lambda: _last_reconciliation(container) > before_run, 60, "the reconciliation")
    with container.uow() as uow:
        recon = uow.session.get(ReconciliationRun, _last_reconciliation(container))
        assert recon is not None
    report("done", 1, 1)
    return DaySummary(
        run=run,
        wallets=wallets,
        merchants=merchants,
        submitted=len(ids) + absorbed,
        duplicates_absorbed=absorbed,
        posted=final.get("posted", 0),
        rejected=final.get("rejected", 0),
        pending=final.get("pending", 0),
        settlement_date=day.isoformat(),
        settlement_created=created,
        settled_merchants=settled_batch.merchants,
        settled_total_halalas=settled_batch.total,
        ledger_balanced=recon.discrepancies == 0,
        discrepancies=recon.discrepancies,
        seconds=round(time.monotonic() - started, 2),
    )


def batch_for(container: Container, day: dt.date) -> SettlementBatch | None:
    with container.uow() as uow:
        return uow.session.scalar(
            select(SettlementBatch).where(SettlementBatch.business_date == day)
        )


def _last_reconciliation(container: Container) -> int:
    with container.uow() as uow:
        return int(uow.session.scalar(select(func.max(ReconciliationRun.id))) or 0)


class Interrupted(MaqsafyError):
    """The demo was stopped by a signal; what it started has been stopped."""


class _Signalled(BaseException):
    """Raised by the signal handler; BaseException so broad handlers cannot swallow it."""


class _Stop:
    """What the signal handler saw, so a raise that Python swallowed is raised again."""

    def __init__(self) -> None:
        self.message: str | None = None

    def check(self) -> None:
        if self.message is not None:
            raise _Signalled(self.message)


@contextmanager
def signals_interrupt() -> Iterator[_Stop]:
    """Turn SIGTERM and SIGINT into Interrupted, so `finally` blocks stop what was started.

    The handler raises at once, but a raise that lands in a garbage-collector callback is
    printed and dropped by Python ("Exception ignored in ..."); the yielded _Stop keeps the
    signal, and the caller's checkpoints (every progress report) raise it again.
    """
    stop = _Stop()

    def handler(signum: int, _frame: object) -> None:
        for sig in previous:  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        stop.message = (
            f"demo interrupted by {signal.Signals(signum).name}: stopped the worker "
            "(and the embedded Redis) it had started; requests it left pending post on the "
            "next run or by the relay"
        )
        stop.check()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(
    container: Container,
    enqueue: submit.Enqueue,
    send: Callable[..., object],
    purchases: int,
    wallets: int,
    merchants: int,
    concurrency: int = 2,
    progress: Progress | None = None,
    log_dir: Path | None = None,
) -> DaySummary:
    """Migrate, start a worker (and the embedded Redis if needed), run the day, stop both.

    SIGTERM or SIGINT stops the day: the worker and the embedded Redis are stopped, and
    Interrupted says so.
    """
    settings = container.settings
    try:
        # Clean-up runs in reverse: the worker stops, then the Redis this call started.
        with signals_interrupt() as stop, ExitStack() as started:

            def checked(stage: str, done: int, total: int) -> None:
                stop.check()
                if progress is not None:
                    progress(stage, done, total)

            if settings.embedded_redis and not embedded_running(settings.var_dir):
                ensure_embedded_redis(settings.var_dir)
                started.callback(stop_embedded_redis, settings.var_dir)
            migrate.upgrade(container.engine)
            worker = start_worker(
                "demo@maqsafy",
                (log_dir or settings.var_dir) / "demo-worker.log",
                concurrency=concurrency,
            )
            started.callback(worker.stop)
            worker.wait_ready()
            stop.check()
            summary = run_day(
                container, enqueue, send, purchases, wallets, merchants, progress=checked
            )
            stop.check()
            return summary
    except _Signalled as stopped:  # everything it started is stopped by now
        raise Interrupted(str(stopped)) from None
