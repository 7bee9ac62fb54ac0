"""`maintenance.*`: the jobs beat runs, by hand."""

from __future__ import annotations

from invoke import Collection, Context

from runbooks.cli.apps import celery_module, container, health_app
from runbooks.cli.errors import exit_for, exit_with, operator_errors
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, task, whole
from runbooks.cli.output import emit


@task(help={**ON_REDIS_HELP, **JSON_HELP})
def memory(c: Context, env: str = "", inventory: str = "", json: bool = False) -> None:
    """Check Redis memory, policy, evictions and persistence (beat: every 5 min); exit 0/1/2."""
    from celery_app.ops import maintenance

    report = maintenance.memory_check(health_app(env, inventory))
    emit(
        report.as_dict(),
        json,
        lambda d: print("\n".join(d["problems"]) or "memory, policy and evictions ok"),
    )
    exit_for(report.level)


@task(help={"hours": "delete those older than this many hours (default 168, a week)"})
def prune(c: Context, hours: str = "168") -> None:
    """Delete failed tasks older than a week (beat: hourly)."""
    from celery_app.ops import maintenance
    from celery_app.ops.failed_tasks import MAX_HOURS

    older = whole(hours, "--hours", 0, MAX_HOURS)
    app = container()
    with operator_errors():
        deleted = maintenance.prune_failed(app, older)
    print(f"pruned {deleted} failed tasks older than {older}h")


@task(help=JSON_HELP)
def reconcile(c: Context, json: bool = False) -> None:
    """Reconcile the ledger and record the run (beat: hourly); exit 2 on a discrepancy."""
    from celery_app.money import settlement

    app = container()
    with operator_errors():
        result = settlement.reconcile(app)
    data = {
        "accounts": result.accounts,
        "postings": result.postings,
        "balanced": result.balanced,
        "discrepancies": result.discrepancies[:20],
    }
    emit(
        data,
        json,
        lambda d: print(
            f"{d['accounts']} accounts, {d['postings']} postings: "
            + ("balanced" if d["balanced"] else "\n".join(["NOT BALANCED", *d["discrepancies"]]))
        ),
    )
    exit_with(0 if result.balanced else 2)


@task
def relay(c: Context) -> None:
    """Re-send payment requests still pending after MAQSAFY_RELAY_AFTER s (beat: every 30 s)."""
    from celery_app.money import submit

    app = container()
    with operator_errors():
        module = celery_module()
        sent = submit.relay(app, module.make_enqueue(module.make_app(app.settings), app.settings))
    print(f"re-sent {sent} pending payment request(s)")


@task(help=ON_REDIS_HELP)
def locks(c: Context, env: str = "", inventory: str = "") -> None:
    """Delete lock keys that would never expire (beat: every 10 min)."""
    from celery_app.ops import maintenance

    app = health_app(env, inventory)
    with operator_errors():
        removed = maintenance.sweep_stale_locks(app)
    print(f"swept {removed} lock key(s) without a TTL; live locks untouched")


ns = Collection("maintenance", memory, prune, reconcile, relay, locks)
