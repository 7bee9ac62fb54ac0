"""The project's errors as an HTTP status and one line a person reads (secrets masked)."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError, ProgrammingError

from celery_app.errors import (
    InvalidRequest,
    MaqsafyError,
    RateLimited,
    ServiceUnavailable,
)
from celery_app.errors import NotFound as RecordNotFound
from celery_app.infra.boundary import REDIS_HINT
from celery_app.infra.redaction import mask_patterns
from celery_app.settings import Settings
from runbooks.errors import AccessDenied, ApprovalPending, HistoryError
from runbooks.errors import NotFound as RunNotFound

HANDLED = (MaqsafyError, OperationalError, ProgrammingError)


def status_of(exc: BaseException) -> int:
    """The HTTP status that says what went wrong (errors not handled here are 500s)."""
    if isinstance(exc, ApprovalPending):
        return 202  # nothing ran: a request waits for another approver
    if isinstance(exc, AccessDenied):
        return 403
    if isinstance(exc, RecordNotFound | RunNotFound):
        return 404
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, ServiceUnavailable | HistoryError | OperationalError | ProgrammingError):
        return 503
    if isinstance(exc, InvalidRequest | MaqsafyError):
        return 400
    return 500


def message_of(exc: BaseException, settings: Settings) -> str:
    """One line for people: the error's own message, secret patterns masked. On the embedded
    default no REDIS_* is set, so a Redis failure points at the embedded server instead."""
    if isinstance(exc, OperationalError | ProgrammingError):
        from celery_app.infra.db import describe_error

        return describe_error(exc, settings.database_url)
    line = mask_patterns(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if settings.embedded_redis:
        line = line.replace(REDIS_HINT, embedded_hint(settings))
    return line


def embedded_hint(settings: Settings) -> str:
    return (
        f"the embedded Redis under {settings.var_dir} is not running (was `make stop` run?): "
        "restart the console, which starts it"
    )
