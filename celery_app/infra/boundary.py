"""Guard the edges of the Redis-backed services: check identifiers, translate Redis errors.

Identifiers (user ids, parent ids, account names) become parts of Redis keys, so they are
checked before any key is built: a bad one raises :class:`InvalidRequest` and nothing is written.
Redis failures become :class:`ServiceUnavailable` with a message that says what to check.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from celery_app.errors import InvalidRequest, ServiceUnavailable
from celery_app.inputs import shown

REDIS_HINT = "check that Redis is up and REDIS_* points at it"  # errors.py rewords it embedded
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def identifier(value: object, what: str) -> str:
    """Return `value` as a key-safe identifier or raise InvalidRequest naming `what`."""
    text = str(value).strip() if isinstance(value, str | int) else ""
    if isinstance(value, bool) or not IDENTIFIER.fullmatch(text):
        raise InvalidRequest(
            f"{what} must be 1-128 letters, digits or _.@+- (starting with a letter or digit), "
            f"got {shown(value)}"
        )
    return text


@contextmanager
def redis_errors(service: str) -> Iterator[None]:
    """Translate redis-py errors raised inside the block into ServiceUnavailable."""
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"{service} (Redis) failed: {type(exc).__name__}: {exc}; {REDIS_HINT}"
        ) from exc
