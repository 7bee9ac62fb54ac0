"""`demo` and `stop`: a school day of payments on this machine, and its private Redis."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from invoke import Context, Exit

from runbooks.cli.apps import container
from runbooks.cli.errors import operator_errors, refuse
from runbooks.cli.flags import task, whole
from runbooks.cli.output import emit


@task(
    help={
        "purchases": "purchases to submit, 1 to 1000000 (default 2000)",
        "wallets": "student wallets, 1 to 100000 (default 200)",
        "merchants": "canteen merchants, 1 to 1000 (default 5)",
        "json": "print the summary as one JSON document",
    }
)
def demo(
    c: Context,
    purchases: str = "2000",
    wallets: str = "200",
    merchants: str = "5",
    json: bool = False,
) -> None:
    """Run a school day of payments end to end: migrate, worker, submit, settle, reconcile."""
    from celery_app.dev.demo import run_demo

    counts = (
        whole(purchases, "--purchases", 1, 1_000_000),
        whole(wallets, "--wallets", 1, 100_000),
        whole(merchants, "--merchants", 1, 1_000),
    )
    app = container()
    with operator_errors():
        from celery_app.celery import app as celery
        from celery_app.celery import enqueue

        summary = run_demo(
            app,
            enqueue,
            celery.send_task,
            *counts,
            progress=None if json else demo_progress(),
        )
    emit(summary.as_dict(), json, render_demo)
    if not summary.ledger_balanced or summary.pending:
        raise Exit("demo: the ledger did not balance or requests are still pending", code=1)


def demo_progress() -> Callable[[str, int, int], None]:
    """A one-line progress display on stderr for the demo's phases."""
    last: dict[str, Any] = {"phase": "", "at": 0.0}

    def show(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not sys.stderr.isatty() and done < total:
            return  # in logs and pipes, one line per finished phase
        if phase == last["phase"] and done < total and now - float(last["at"]) < 0.2:
            return
        last.update(phase=phase, at=now)
        label = {"submit": "submitting", "post": "posting", "done": "done"}.get(phase, phase)
        sys.stderr.write(f"\r{label:<10} {done:>6}/{total:<6}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def render_demo(d: dict[str, Any]) -> None:
    sar = d["settled_total_halalas"] / 100
    print(f"demo day {d['run']}: {d['wallets']} wallets, {d['merchants']} merchants")
    print(f"  submitted            {d['submitted']}")
    print(f"  duplicates absorbed  {d['duplicates_absorbed']}")
    print(f"  posted               {d['posted']}")
    print(f"  rejected             {d['rejected']} (insufficient funds)")
    print(f"  still pending        {d['pending']}")
    if d["settlement_created"]:
        print(
            f"  settlement {d['settlement_date']}: {d['settled_merchants']} merchants paid "
            f"{sar:,.2f} SAR"
        )
    else:  # one batch per business day: this run's takings wait for the next day's batch
        print(
            f"  settlement {d['settlement_date']}: already run earlier today "
            f"({d['settled_merchants']} merchants, {sar:,.2f} SAR); this run's purchases "
            "are paid out in the next day's batch"
        )
    print(
        f"  ledger balanced      {'yes' if d['ledger_balanced'] else 'NO'}"
        f" ({d['discrepancies']} discrepancies)"
    )
    print(f"  took                 {d['seconds']:.1f}s")


@task(help={"force": "stop it even while workers started here still use it"})
def stop(c: Context, force: bool = False) -> None:
    """Stop the embedded default's private Redis under ./var (if it runs)."""
    from celery_app.infra.embedded import stop_embedded_redis
    from celery_app.ops.workers import MultiSupervisor

    app = container()
    run_dir = app.settings.var_dir / "run"
    busy = sorted(
        p.stem for p in run_dir.glob("*.pid") if MultiSupervisor(run_dir).pid(p.stem) is not None
    )
    if busy and not force:
        refuse(
            f"workers still use this Redis ({', '.join(busy)}): stop them first "
            "(invoke workers.stop --nodes ...), or pass --force"
        )
    if not stop_embedded_redis(app.settings.var_dir):
        where = "" if app.settings.embedded_redis else " (REDIS_* points elsewhere)"
        print(f"the embedded Redis under {app.settings.var_dir} is not running{where}")
        return
    print(f"stopped the embedded Redis under {app.settings.var_dir}")
