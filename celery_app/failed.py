"""Record a task that finally failed in SQL's `failed_tasks` (Laravel's `failed_jobs`).

Secrets the configuration knows are masked in the stored exception and traceback.
"""

from __future__ import annotations

import json
from typing import Any

from celery_app.bootstrap import Container
from celery_app.models import FailedTask


def mask(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every known secret in `text` with ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


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
    secrets = container.settings.secrets
    shown = f"{type(exception).__name__}: {exception}" if exception is not None else ""
    with container.uow() as uow:
        row = FailedTask(
            task_id=task_id,
            queue=queue,
            task_name=task_name,
            args=mask(json.dumps(list(args), default=str), secrets),
            kwargs=mask(json.dumps(dict(kwargs), default=str), secrets),
            exception=mask(shown, secrets)[:10_000],
            traceback=mask(traceback, secrets)[-20_000:],
        )
        uow.session.add(row)
        uow.commit()
        return row.id
