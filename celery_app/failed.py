"""Record a task that finally failed in SQL's `failed_tasks` (Laravel's `failed_jobs`).

Secrets are masked in everything stored (arguments, exception, traceback) before the row is
written: the values the configuration knows and every secret pattern
(:mod:`celery_app.redaction`: URL passwords, ``NAME=value`` for secret names, ...). Masking
keeps the stored JSON valid, and keeps an ``idempotency_key``, so a retry posts the same payment.
"""

from __future__ import annotations

import json
from typing import Any

from celery_app.bootstrap import Container
from celery_app.models import FailedTask
from celery_app.redaction import Redactor


def record_failure(
    container: Container,
    *,
    task_id: str,
    task_name: str,
    queue: str,
    args: Any,
    kwargs: Any,
    exception: BaseException | None,
    traceback: str,
) -> int:
    """Insert one failed-task row; return its id."""
    redactor = Redactor(container.settings.secrets)
    mask = redactor.text
    shown = f"{type(exception).__name__}: {exception}" if exception is not None else ""
    with container.uow() as uow:
        row = FailedTask(
            task_id=task_id,
            queue=queue,
            task_name=task_name,
            args=mask(json.dumps(list(args), default=str)),
            kwargs=mask(json.dumps(dict(kwargs), default=str)),
            exception=mask(shown)[:10_000],
            traceback=mask(traceback)[-20_000:],
        )
        uow.session.add(row)
        uow.commit()
        return row.id
