"""Mask every secret wherever text leaves the engine: known values and secret patterns.

The known secrets are the values Settings collected (passwords, tokens, credentials inside URLs:
``settings.secrets``) plus the environment values an inventory references from its secret fields.
Secrets only a host knows (a host printing ``REDIS_PASSWORD=...``, a database URL with its
password, ``export API_TOKEN=...``) are masked by pattern. Both live in one place,
:mod:`celery_app.infra.redaction` (its docstring states the patterns and the secret-name
rule), because the app's failed-task rows need them too and the app never imports
``runbooks``. Apply :meth:`Redactor.text` / :meth:`Redactor.value` to console lines, JSON
documents, logs and history rows; :class:`RedactingFilter` does it for logs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from celery_app.infra.redaction import (
    MASK,
    RedactingFilter,
    Redactor,
    mask_patterns,
    secret_name,
)

__all__ = ["MASK", "RedactingFilter", "Redactor", "for_settings", "mask_patterns", "secret_name"]


def for_settings(settings: Any, extra: Iterable[str] = ()) -> Redactor:
    """A redactor for everything `settings` (a celery_app Settings) and `extra` know."""
    return Redactor([*getattr(settings, "secrets", ()), *extra])
