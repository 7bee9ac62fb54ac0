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
from celery_app.infra.redaction import mask_patterns
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


def message_of(exc: BaseException, database_url: str) -> str:
    """One line for people: the error's own message, secret patterns masked."""
    if isinstance(exc, OperationalError | ProgrammingError):
        from celery_app.infra.db import describe_error

        return describe_error(exc, database_url)
    return mask_patterns(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
