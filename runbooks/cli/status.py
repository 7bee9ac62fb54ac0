"""`status`: the platform on one screen."""

from __future__ import annotations

from typing import Any

from invoke import Context

from runbooks.cli.apps import celery_module, health_app
from runbooks.cli.errors import exit_for, operator_errors
from runbooks.cli.flags import JSON_HELP, ON_REDIS_HELP, task
from runbooks.cli.output import emit


@task(help={**ON_REDIS_HELP, **JSON_HELP})
def status(c: Context, env: str = "", inventory: str = "", json: bool = False) -> None:
    """One screen: Redis, database, workers, queues, failures, outbox, ledger; exit 0/1/2."""
    from celery_app.ops import findings
    from celery_app.ops import status as health

    app = health_app(env, inventory)
    with operator_errors():
        celery = celery_module().make_app(app.settings)
    try:
        result = health.collect(app, health.workers_reader(celery, timeout=1.0))
    finally:
        celery.close()

    def render(d: dict[str, Any]) -> None:
        print("\n".join(health.render(d)))
        if result.findings:
            print("\n".join(findings.render_lines(result.findings)))

    emit(result.as_dict(), json, render)
    exit_for(result.level)
